// Command compile is the program of durable-stub's compile test. The test
// generates stubs for the object types in object.go, adds them to this
// package with a go command overlay, vets the package and runs it: main.go
// calls the objects through the stubs and exits non-zero on a wrong result.
package main

import (
	"context"
	"errors"
	"strings"
	tm "time"

	"github.com/durable-go/durable"
)

// Env is the environment of Counter objects.
type Env struct{ Step int }

// Point is a type of this package used in signatures.
type Point struct{ X, Y int }

// Base is embedded in Counter: its methods are promoted.
type Base struct{ label string }

// Label returns the label set by SetLabel.
func (b *Base) Label(ctx context.Context) (string, error) { return b.label, nil }

// Counter is the object type under test.
type Counter struct {
	Base
	st   *durable.State
	env  Env
	n    int
	seen []Point
}

// NewCounter builds a Counter.
func NewCounter(st *durable.State, env Env) (*Counter, error) {
	return &Counter{st: st, env: env}, nil
}

// Add adds n times the step and returns the count.
func (c *Counter) Add(ctx context.Context, n int) (int, error) {
	c.n += n * c.env.Step
	return c.n, nil
}

// Get returns the count. Its receiver is a value.
func (c Counter) Get(ctx context.Context) (int, error) { return c.n, nil }

// Reset sets the count to zero.
func (c *Counter) Reset(_ context.Context) error {
	c.n = 0
	return nil
}

// Name returns the object's name.
func (c *Counter) Name(ctx context.Context) (string, error) {
	n, _ := c.st.Name()
	return n, nil
}

// Move records points and returns them all.
func (c *Counter) Move(ctx context.Context, p Point, more []Point) ([]Point, error) {
	c.seen = append(c.seen, p)
	c.seen = append(c.seen, more...)
	return c.seen, nil
}

// Later adds d to t.
func (c *Counter) Later(ctx context.Context, t tm.Time, d tm.Duration) (tm.Time, error) {
	return t.Add(d), nil
}

// Fail returns an error with msg.
func (c *Counter) Fail(ctx context.Context, msg string) error { return errors.New(msg) }

// Sum5 takes five arguments, so its wrapper calls Stub.Call.
func (c *Counter) Sum5(ctx context.Context, a, b, cc, d, e int) (int, error) {
	return a + b + cc + d + e, nil
}

// SetLabel takes six arguments and returns only an error.
func (c *Counter) SetLabel(ctx context.Context, s string, a, b, cc, d int, sep string) error {
	c.label = strings.Repeat(s, a+b+cc+d) + sep
	return nil
}

// Maybe returns nil or a string, as an any.
func (c *Counter) Maybe(ctx context.Context, a, b, cc, d int, s string) (any, error) {
	if s == "" {
		return nil, nil
	}
	return s, nil
}

// Origin returns a nil *Point.
func (c *Counter) Origin(ctx context.Context, a, b, cc, d, e int) (*Point, error) {
	return nil, nil
}

// Fetch is a handler name, never an RPC method.
func (c *Counter) Fetch(ctx context.Context) error { return nil }

// bump is unexported.
func (c *Counter) bump(ctx context.Context) error { c.n++; return nil }

// ledger is an unexported object type.
type ledger struct{ entries []string }

// newLedger builds a ledger.
func newLedger(st *durable.State, _ struct{}) (*ledger, error) { return &ledger{}, nil }

// Append appends an entry and returns how many there are.
func (l *ledger) Append(ctx context.Context, entry string) (int, error) {
	l.entries = append(l.entries, entry)
	return len(l.entries), nil
}
