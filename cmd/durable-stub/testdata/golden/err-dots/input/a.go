package dots

import (
	"context"
	. "net/netip"
	. "net/url"
)

// Counter is a durable object.
type Counter struct{}

// Parse uses a type from one of two dot imports.
func (c *Counter) Parse(ctx context.Context, u *URL) (Addr, error) { return Addr{}, nil }
