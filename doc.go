// Package durable is Durable Objects for Go: named, single-threaded,
// stateful objects, each with its own SQLite database, durable alarms,
// hibernating WebSockets and RPC, embedded in one Go program.
//
// # Usage
//
// An object is a Go type with a constructor. Its exported methods shaped
// func(ctx context.Context, args...) (R, error) are its RPC surface:
//
//	type Counter struct{ st *durable.State }
//
//	func NewCounter(st *durable.State, _ struct{}) (*Counter, error) {
//		return &Counter{st: st}, nil
//	}
//
//	func (c *Counter) Add(ctx context.Context, n int) (int, error) { ... }
//
// A Runtime hosts namespaces of objects; a Namespace makes IDs and stubs;
// a Stub calls the object:
//
//	rt, err := durable.Open(durable.Options{Dir: "data"})
//	counters, err := durable.Register(rt, "Counter", NewCounter, struct{}{})
//	n, err := durable.Call1(ctx, counters.GetByName("visits"), (*Counter).Add, 1)
//
// # Guarantees
//
//   - One live instance per ID: every call for an ID reaches the same
//     instance, constructed once, on the first call.
//   - One turn at a time: an object's handlers never run concurrently.
//     While a handler waits on another object (a call made with the
//     handler's ctx), other events may run in between; inside
//     State.BlockConcurrencyWhile they may not.
//   - E-order: calls made through one stub arrive in the order made.
//   - Copy semantics: arguments and results are copied through one codec,
//     as if they had crossed the network.
//   - Reset on failure: a panic, Abort, or failed BlockConcurrencyWhile
//     drops the object's memory; the next call constructs it again.
//   - Eviction: an idle object leaves memory after Options.IdleTimeout,
//     leaving no goroutine, file or timer behind.
//
// # HTTP and WebSockets
//
// An object that implements http.Handler handles HTTP: ServeHTTP runs as
// one of its turns, and its buffered response reaches the client only once
// the turn's writes are durable. A Stub is an http.Handler that forwards
// to the object; Route serves /{name}/... from the objects of a namespace,
// and NewServer is an http.Server with hardened limits:
//
//	rooms := durable.MustRegister(rt, "Room", NewRoom, env)
//	srv := durable.NewServer(":8080", durable.Route(rooms))
//
// From ServeHTTP an object accepts WebSockets with State.AcceptWebSocket.
// The runtime owns them: their messages arrive as turns of the optional
// handlers WebSocketMessage, WebSocketClose and WebSocketError, and they
// stay connected while the object is evicted (hibernation): the next
// message constructs it again. See examples/chat.
//
// # Config and migrations
//
// An optional durable.jsonc (see LoadConfig, or build a Config in Go)
// declares bindings, found with Lookup, and migrations that create,
// rename, delete or transfer classes (namespaces) in the data folder,
// keeping objects' data, alarms and IDs across renames. Open applies them
// once, in order, atomically. Without migrations nothing changes. See
// docs/config.md.
//
// # Errors
//
// An error returned by an object's method reaches the caller as a
// *RemoteError carrying its message. Infrastructure errors wrap the
// sentinels of this package: ErrOverloaded (the object's queue is full:
// do not retry at once), ErrObjectReset and ErrDurability (retryable, see
// IsRetryable), ErrClosed.
package durable
