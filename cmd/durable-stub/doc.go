// Command durable-stub writes typed client stubs for durable object types.
//
// For an object type Counter whose RPC methods include
//
//	func (c *Counter) Add(ctx context.Context, n int) (int, error)
//
// it writes
//
//	type CounterStub struct{ *durable.Stub[Counter] }
//
//	func NewCounterStub(s *durable.Stub[Counter]) CounterStub
//	func CounterByName(ns *durable.Namespace[Counter], name string) CounterStub
//	func CounterByID(ns *durable.Namespace[Counter], id durable.ID) CounterStub
//
//	func (s CounterStub) Add(ctx context.Context, n int) (int, error)
//
// so that a call reads like a local one:
//
//	counter := CounterByName(counters, "visits")
//	n, err := counter.Add(ctx, 1)
//
// # Usage
//
// Put a go:generate line in the package that declares the type and run go
// generate:
//
//	//go:generate go run github.com/durable-go/durable/cmd/durable-stub -type Counter
//
// The command reads the package in the current directory (or the directory
// given as its one argument): its non-test .go files that match the build
// context, skipping files that durable-stub wrote. It writes one file,
// which go/format has formatted, in the same package.
//
// The flags are:
//
//	-type T[,T...]
//		the object types to write stubs for (required); all go in one file
//	-output file
//		the file to write; default <dir>/<first type, lowercased>_stub.go.
//		A relative path is relative to the current directory. An existing
//		file is replaced only if durable-stub wrote it.
//
// # What it writes
//
// For each type T: the stub type TStub embedding *durable.Stub[T] (so its
// ID and Call methods stay at hand); NewTStub, which wraps a
// *durable.Stub[T]; TByName and TByID, which get a stub from a
// *durable.Namespace[T] by object name or by ID; and one method per RPC
// method of T. For an unexported type t the names are tStub, newTStub,
// tByName and tByID.
//
// The RPC methods are the exported methods in the method set of *T (value
// receivers included, and methods promoted from embedded fields of types
// of the same package) shaped
//
//	func (t *T) M(ctx context.Context, args...) (R, error)
//	func (t *T) M(ctx context.Context, args...) error
//
// except the reserved handler names (Fetch, ServeHTTP, Alarm,
// WebSocketMessage, WebSocketClose, WebSocketError, Hibernatable) and
// variadic methods: the set durable.Register uses. A method named Stub is
// skipped too, since the stub's embedded field has that name. A comment in
// the output lists every skipped method and the reason.
//
// A wrapper with up to four arguments after ctx calls durable.Call0 …
// Call4 (or Do0 … Do4 when the method returns only an error) with the
// method expression, so the compiler checks that the stub still matches
// the object. A wrapper with more arguments calls Stub.Call by name and
// checks the type of the result (a mismatch gives an error wrapping
// durable.ErrBadArgument); a package-level assignment of the method
// expression keeps its signature checked at compile time too.
//
// Wrappers keep the source's parameter names. Unnamed and blank
// parameters, and those that would shadow a name the wrapper's body uses
// (s, ctx, the object type, the durable package), are named a1, a2… by
// position. The types in the signatures are printed as written, and the
// output imports what they use under the names the declaring file gives
// them, renamed (template2, durable2…) only where two files disagree or
// the package declares the name.
//
// # Limits and errors
//
// Generic object types, type aliases and interface types are refused.
// Methods promoted from embedded types of other packages cannot be seen
// from source; the output's comment names those fields, and the methods
// left out as ambiguous. A type with no
// RPC methods still gets its stub (with the helpers but no methods) and a
// warning on stderr.
//
// On bad input the command prints one line, prefixed "durable-stub:", to
// stderr and exits with status 1 (2 for a bad command line), writing
// nothing. It fails when a generated name is already declared in the
// package.
package main
