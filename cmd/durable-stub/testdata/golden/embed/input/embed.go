// Package embed has promoted methods.
package embed

import (
	"context"
	"sync"
	"time"
)

// Counter embeds other types; some of their methods are promoted.
type Counter struct {
	Base
	Left
	*Right
	Greeter
	sync.Mutex
	Hidden int
}

// Name is declared on Counter and wins over Base's.
func (c *Counter) Name(ctx context.Context) (string, error) { return "counter", nil }

// Base is embedded in Counter.
type Base struct {
	*Inner
	n int
}

// Ping is promoted from Base.
func (b *Base) Ping(ctx context.Context, msg string) (string, error) { return msg, nil }

// Name is hidden by Counter's own Name.
func (b *Base) Name(ctx context.Context) (string, error) { return "base", nil }

// Hidden is hidden by Counter's field of the same name.
func (b Base) Hidden(ctx context.Context) error { return nil }

// Inner is embedded in Base.
type Inner struct{}

// Deep is promoted from Inner, through Base.
func (*Inner) Deep(ctx context.Context, d time.Duration) error { return nil }

// Left and Right both have Both, so neither is promoted.
type Left struct{}

// Both is ambiguous.
func (Left) Both(ctx context.Context) error { return nil }

// Right is embedded by pointer.
type Right struct{}

// Both is ambiguous.
func (*Right) Both(ctx context.Context) error { return nil }

// Only is promoted from Right.
func (*Right) Only(ctx context.Context) (int, error) { return 1, nil }

// Greeter is an embedded interface.
type Greeter interface {
	// Greet is promoted from the interface.
	Greet(ctx context.Context, who string) (string, error)
	fmtStringer
}

// fmtStringer is embedded in Greeter.
type fmtStringer interface{ String() string }
