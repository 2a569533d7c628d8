// Package basic has an object type with every kind of method.
package basic

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/durable-go/durable"
)

// Counter is a durable object.
type Counter struct {
	st *durable.State
	n  int
}

// NewCounter builds a Counter.
func NewCounter(st *durable.State, _ struct{}) (*Counter, error) { return &Counter{st: st}, nil }

// Add has one argument and a result: Call1.
func (c *Counter) Add(ctx context.Context, n int) (int, error) { c.n += n; return c.n, nil }

// Get has no argument: Call0. Its receiver is a value.
func (c Counter) Get(ctx context.Context) (int, error) { return c.n, nil }

// Reset returns only an error: Do0.
func (c *Counter) Reset(_ context.Context) error { c.n = 0; return nil }

// Set has a named result list and grouped parameters.
func (c *Counter) Set(ctx context.Context, hi, lo int) (n int, err error) { return hi - lo, nil }

// Unnamed has unnamed parameters.
func (c *Counter) Unnamed(context.Context, string, []byte) error { return nil }

// Shadow has parameters that would shadow names the wrapper uses.
func (c *Counter) Shadow(ctx context.Context, s string, _ int, durable bool, a1 int) error {
	return nil
}

// Wait takes an imported type.
func (c *Counter) Wait(ctx context.Context, d time.Duration) (time.Time, error) {
	return time.Time{}, nil
}

// Five takes five arguments: Stub.Call.
func (c *Counter) Five(ctx context.Context, a, b, cc, d, e int) (int, error) {
	return a + b + cc + d + e, nil
}

// Six takes six arguments and returns only an error: Stub.Call.
func (c *Counter) Six(ctx context.Context, a, b, cc, d, e int, s string) error { return nil }

// Any returns an interface, nil or not.
func (c *Counter) Any(ctx context.Context, a, b, cc, d, e int) (any, error) { return nil, nil }

// Fetch is a reserved handler name.
func (c *Counter) Fetch(w http.ResponseWriter, r *http.Request) {}

// Alarm is a reserved handler name, even with an RPC shape.
func (c *Counter) Alarm(ctx context.Context) error { return nil }

// Sum is variadic.
func (c *Counter) Sum(ctx context.Context, ns ...int) (int, error) { return 0, nil }

// NoCtx does not take a context first.
func (c *Counter) NoCtx(n int) (int, error) { return n, nil }

// CtxLater takes its context second.
func (c *Counter) CtxLater(n int, ctx context.Context) error { return nil }

// Pair returns two values and an error.
func (c *Counter) Pair(ctx context.Context) (int, int, error) { return 0, 0, nil }

// NoError returns no error.
func (c *Counter) NoError(ctx context.Context) int { return 0 }

// Stub would clash with the stub's embedded field.
func (c *Counter) Stub(ctx context.Context) error { return nil }

func (c *Counter) inc(ctx context.Context) error { return errors.New("unexported") }

// Other is another type; its methods are not Counter's.
type Other struct{}

// Add belongs to Other.
func (o *Other) Add(ctx context.Context, n int) (int, error) { return n, nil }
