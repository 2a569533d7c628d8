// Package inspect reads and repairs a durable data folder from outside the
// objects: it lists namespaces, objects and alarms, runs SQL, reads KV
// entries, exports and imports objects, checks their integrity and backs
// the whole folder up. The durable CLI (cmd/durable) uses it on a folder no
// program has open; package durable's admin API uses it inside a running
// app; both expose the same operations through the API interface, so the
// CLI prints the same thing either way.
//
// # Usage
//
// Offline, open the folder (which takes its lock, so no app can open it
// meanwhile) and call the operations:
//
//	f, err := inspect.OpenFolder(inspect.Config{Dir: "durable-data", Resolve: resolve})
//	if errors.Is(err, inspect.ErrLocked) { /* an app has it open: use its admin API */ }
//	defer f.Close()
//	objs, err := f.Objects(ctx, "Room")
//	res, err := f.Query(ctx, "Room", "lobby", inspect.Query{SQL: "SELECT count(*) FROM messages"})
//
// Inside a running app, package durable builds a Folder with NewFolder and
// a Gate that takes each object's turn, and serves it with NewHandler;
// Client is the same API over HTTP.
//
// The caller's duties:
//
//  1. Make sure nothing else opens the folder's object databases: hold the
//     folder lock (OpenFolder does) or pass a Gate.
//  2. Resolve object references with the runtime's ID rules (Config.Resolve):
//     this package never derives IDs itself.
//  3. Close the Folder: it releases the lock and the write machinery.
//
// # Reads and writes
//
// Reads open an object's database with a separate read-only SQLite
// connection (SQLITE_OPEN_READONLY): a statement that would write fails
// with ErrReadOnly whatever its text, and the folder is left unchanged (a
// backup on read-only media can be inspected). Writes (Query with Write,
// Import) go through internal/storage, the layer the runtime itself uses:
// the same SQL restrictions, the same durable commit, and the object's
// alarm announced to the node's alarm index before the commit, as a turn
// of the object would.
//
// # Formats
//
// Export writes either a consistent copy of the object's SQLite file (the
// SQLite backup API, in WAL mode like the runtime's files) or a JSON Dump.
// Import takes either and replaces the object's content: its tables, rows,
// KV entries, metadata and alarm. Round trips keep every value exactly:
// SQL values keep their SQLite type (see Value) and KV values their
// encoded bytes.
package inspect
