package notests

// Counter is declared only in a test file.
type Counter struct{}
