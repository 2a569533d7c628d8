// Package storage keeps the state of one Durable Object in one SQLite
// database: the user's SQL tables, a KV table, the alarm and a little
// runtime metadata, all changed inside one implicit transaction per turn
// and made durable through the durability package.
//
// # Usage
//
// The engine opens a DB when it activates an object and closes it when the
// object is evicted or hibernates:
//
//	db, err := storage.Open(path, storage.Options{Durability: group})
//	...
//	// during a turn, any number of calls:
//	cur, err := db.Exec("INSERT INTO t (a) VALUES (?) RETURNING id", 1)
//	err = db.Put("k", []byte("v"))
//	// at the end of the turn:
//	ticket, err := db.Commit() // or db.Rollback()
//	// hold the turn's output until ticket.Wait(ctx) returns nil
//
// The caller's duties:
//
//  1. Drive a DB from one turn at a time. A DB is not safe for concurrent
//     use by design (its transaction belongs to the running turn); a mutex
//     only keeps misuse from corrupting memory.
//  2. End every turn with Commit or Rollback. The first storage call of a
//     turn opens the transaction (BEGIN); Commit or Rollback ends it and
//     closes the turn's open cursors.
//  3. Release nothing a turn produced before its Commit ticket is durable
//     (the output gate). A read-only turn gets the ticket of the last
//     earlier commit, so it too waits for the writes it may have observed.
//  4. After a *TxAbortedError (SQLite rolled the transaction back by itself,
//     e.g. on an I/O error) end the turn with Rollback; after a failed
//     durability Ticket, close the DB and open it again.
//  5. Open a path at most once at a time. The connection holds an exclusive
//     lock; a second Open of the same path fails.
//
// # SQL
//
// Exec follows Cloudflare's sql.exec: several statements per call, the
// bindings and the returned Cursor belong to the last one. User SQL runs
// under an authorizer: transaction control (BEGIN, COMMIT, SAVEPOINT ...),
// ATTACH, temporary schema objects, any name starting with "_durable_",
// SQLite's internal tables (except reading sqlite_schema, sqlite_sequence
// and sqlite_stat*) and every PRAGMA outside a short allowlist fail with a
// *ForbiddenError. The connection runs in defensive mode with
// trusted_schema off, no extension loading and foreign keys enforced; the
// SQL limits are the Max* constants. Past a limit the caller gets a
// *LimitError, the statement has no effect and the turn can go on.
//
// # KV
//
// The KV methods store []byte values under non-empty string keys in a
// hidden table of the same database, ordered by the keys' UTF-8 bytes.
// They join the same transaction as SQL, so a turn's KV and SQL writes
// commit together.
//
// # Files
//
// A database is the file at the path Open is given, plus path+"-wal". The
// WAL file is never deleted (it is truncated when the database closes) and
// no -shm file is used: the connection runs with locking_mode=EXCLUSIVE, so
// the WAL index lives in memory. New databases are copied from a template
// image, or moved into place from Spares, which avoids the file creations
// that dominate the cost of a new database.
//
// # Memory
//
// An open database that has just run a turn costs about 115 KB of resident
// memory with this driver: a 32 KiB WAL index (36 KiB with the C
// allocator's header), the page cache (each 4 KiB page takes an 8 KiB
// block of the C allocator), prepared statements, an 8 KiB lookaside
// arena, two 4 KiB scratch buffers (8 KiB blocks too), the C stack the
// turn grew, and some 20 KB of connection, schema and built-in function
// tables. ReleaseMemory, for an idle object, frees the page cache, the
// statements, the lookaside arena and the C stack and gives back the WAL
// index pages that hold nothing: about 47 KB stays resident for a small
// database, plus 4 KiB for each further page of the WAL index that a
// longer WAL fills.
// Hibernation (Close) frees everything.
package storage
