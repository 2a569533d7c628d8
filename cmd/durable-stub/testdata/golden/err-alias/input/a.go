package alias

// Counter is an alias.
type Counter = counter

type counter struct{}
