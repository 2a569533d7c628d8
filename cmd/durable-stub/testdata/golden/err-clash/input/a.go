package clash

// Counter is a durable object.
type Counter struct{}

// CounterByName is already declared.
func CounterByName() {}
