// Package multi writes stubs for several types into one file.
package multi

import "context"

// Room is exported.
type Room struct{ users []string }

// Join adds a user.
func (r *Room) Join(ctx context.Context, name string) (int, error) {
	r.users = append(r.users, name)
	return len(r.users), nil
}

// user is unexported: so are its stub's names.
type user struct{ name string }

// Rename sets the name.
func (u *user) Rename(ctx context.Context, name string) error { u.name = name; return nil }

// Empty has no RPC methods.
type Empty struct{}

// Fetch is a handler, not an RPC method.
func (e *Empty) Fetch() {}
