package generic

// Box is generic.
type Box[T any] struct{ v T }
