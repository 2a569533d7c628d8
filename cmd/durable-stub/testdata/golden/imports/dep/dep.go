// Package depname lives in a directory named dep, so its import path does
// not tell its name.
package depname

// Thing is a type to import.
type Thing struct{ N int }
