// Package renames declares names that the generated file's imports and
// parameters must avoid.
package renames

import (
	stdctx "context"
	"time"

	dur "github.com/durable-go/durable"
)

// Clock is a durable object.
type Clock struct{}

var (
	fmt     = "not the fmt package"
	durable = "not the durable package"
	context = "not the context package"
)

// Later has more than four arguments, one named like the package of the
// result type: Stub.Call.
func (c *Clock) Later(ctx stdctx.Context, time time.Duration, a, b, c2 int, Clock string) (time.Time, error) {
	return timeNow(), nil
}

// ID uses the durable package under another name.
func (c *Clock) ID(ctx stdctx.Context, fmt string, id dur.ID) (dur.ID, error) { return id, nil }

func timeNow() time.Time { return time.Time{} }
