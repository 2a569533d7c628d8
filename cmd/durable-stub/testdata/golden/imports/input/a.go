// Package imports uses imported types in signatures.
package imports

import (
	"context"
	"html/template"
	mrand "math/rand/v2"
	"net/netip"

	d "github.com/durable-go/durable"
)

// Store is a durable object.
type Store struct{ st *d.State }

// Render uses html/template, which b.go's text/template shares a name with.
func (s *Store) Render(ctx context.Context, t template.HTML) (template.HTML, error) { return t, nil }

// Roll uses an aliased import.
func (s *Store) Roll(ctx context.Context, seed mrand.PCG) (netip.Addr, error) {
	return netip.Addr{}, nil
}

// Lookup uses the durable package, imported as d.
func (s *Store) Lookup(ctx context.Context, id d.ID) (string, error) { return id.String(), nil }
