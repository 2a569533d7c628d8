// Package hook lends package durable's unexported powers to its companion
// packages in this module (durabletest, the admin API) without widening
// durable's public API. Package durable sets every variable in its init, so
// they are non-nil in any program that imports durable.
//
// rt arguments are *durable.Runtime values; objects are named by their
// namespace and their ID: a durable.ID, or its 64 hexadecimal digits (an
// ID made from a name carries the name; its string does not).
package hook

import "context"

var (
	// RunIn runs fn as one turn of an object, constructing the object if
	// it is not live. inst is the object (*T) and state its
	// *durable.State. The turn commits like any other: fn's writes are
	// durable when RunIn returns nil; if fn fails they are rolled back and
	// its error is returned as it is.
	RunIn func(ctx context.Context, rt any, ns string, id any, fn func(ctx context.Context, inst, state any) error) error

	// FireAlarm runs an object's stored alarm now, whatever its time, as
	// the scheduler would (the alarm is deleted if the handler succeeds).
	// It reports whether a handler ran: false if no alarm is stored.
	FireAlarm func(ctx context.Context, rt any, ns string, id any) (ran bool, err error)

	// Evict evicts an object if it is live and not in use. Its WebSockets
	// hibernate, or are closed with code 1001 if closeSockets. It reports
	// whether the object was live and evicted.
	Evict func(rt any, ns string, id any, closeSockets bool) (bool, error)

	// EvictAll evicts every object not in use, like Evict, and returns
	// how many were live.
	EvictAll func(rt any, closeSockets bool) int

	// StoredIDs lists, in hex order, the IDs of namespace ns that have a
	// database on disk.
	StoredIDs func(rt any, ns string) ([]string, error)

	// Namespaces lists the registered namespace names, sorted.
	Namespaces func(rt any) []string
)
