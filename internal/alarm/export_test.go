package alarm

// WarmBurst exports warmBurst to the tests.
const WarmBurst = warmBurst
