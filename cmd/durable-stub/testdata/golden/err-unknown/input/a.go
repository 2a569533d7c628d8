package unknown

// Counter exists; Missing does not.
type Counter struct{}
