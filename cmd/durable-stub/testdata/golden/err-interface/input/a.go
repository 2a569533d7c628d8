package iface

import "context"

// Counter is an interface.
type Counter interface {
	Add(ctx context.Context, n int) (int, error)
}
