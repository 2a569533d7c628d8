// Package rerun holds the output of an earlier run, which the generator
// must skip.
package rerun

import "context"

// Counter is a durable object.
type Counter struct{ n int }

// Add adds n.
func (c *Counter) Add(ctx context.Context, n int) (int, error) { c.n += n; return c.n, nil }
