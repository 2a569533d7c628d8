package storage

import (
	"fmt"
	"reflect"
	"sync/atomic"
	"unsafe" // and go:linkname

	"modernc.org/libc"
	lib "modernc.org/sqlite/lib"
	"zombiezen.com/go/sqlite"
)

// SQLite registers its built-in extensions on every connection it opens,
// in sqlite3_open: FTS5 (two virtual table modules, four functions, four
// tokenizers) and R-Tree (two modules and a dozen geopoly functions) cost
// about 20 µs of an open's 60-70, with dozens of small allocations, and an
// object whose storage is KV, its alarm and the SQL of its own tables
// never uses them.
//
// So storage defers them on the connections of the databases it opens
// (those through the WAL VFS; deferredVFS): the first statement of user
// SQL on such a connection, and DeleteAll (which drops virtual tables),
// register them first (DB.loadExtensions). Until then the schema may hold
// FTS5 or R-Tree tables: SQLite reads a schema without looking up the
// modules of its virtual tables, and storage's own statements touch only
// _durable_kv. Every other connection in the process, whoever opens it,
// gets the extensions at open as usual.
//
// The list of built-in extensions is an array in the transpiled SQLite
// (sqlite3BuiltinExtensions, linked by name); init replaces its FTS5 and
// R-Tree entries with wrappers that skip the registration on a deferring
// connection and run it otherwise.

//go:linkname builtinExtensions modernc.org/sqlite/lib._sqlite3BuiltinExtensions
var builtinExtensions [5]uintptr

//go:linkname fts5Init modernc.org/sqlite/lib._sqlite3Fts5Init
func fts5Init(tls *libc.TLS, db uintptr) int32

//go:linkname rtreeInit modernc.org/sqlite/lib._sqlite3RtreeInit
func rtreeInit(tls *libc.TLS, db uintptr) int32

// deferredExtensions are the init functions of the built-in extensions
// storage defers, FTS5 and R-Tree (the first two entries of
// builtinExtensions at the pinned modernc.org/sqlite version), once
// deferExtensions has put its wrappers in their place; zero otherwise.
var deferredExtensions [2]uintptr

// deferredVFS is the address of the VFS whose connections defer the
// extensions (0: none do).
var deferredVFS atomic.Uintptr

// initFunc is the signature of an extension's init function.
type initFunc = func(tls *libc.TLS, db uintptr) int32

func callInit(f uintptr, tls *libc.TLS, db uintptr) int32 {
	return (*(*initFunc)(unsafe.Pointer(&f)))(tls, db)
}

// deferring reports whether the connection db defers the extensions.
func deferring(db uintptr) bool {
	v := deferredVFS.Load()
	return v != 0 && deferredExtensions[0] != 0 && cAt[lib.Tsqlite3](db).FpVfs == v
}

func initExtension0(tls *libc.TLS, db uintptr) int32 {
	if deferring(db) {
		return lib.SQLITE_OK
	}
	return callInit(deferredExtensions[0], tls, db)
}

func initExtension1(tls *libc.TLS, db uintptr) int32 {
	if deferring(db) {
		return lib.SQLITE_OK
	}
	return callInit(deferredExtensions[1], tls, db)
}

// deferExtensions installs the wrappers; it runs in init, before any
// connection opens. If the array does not start with FTS5 and R-Tree (a
// different modernc.org/sqlite), nothing is deferred.
func deferExtensions() {
	// An entry is the address of a func value; compare the functions'
	// code.
	code := func(f uintptr) uintptr { return reflect.ValueOf(*(*initFunc)(unsafe.Pointer(&f))).Pointer() }
	if code(builtinExtensions[0]) != reflect.ValueOf(fts5Init).Pointer() || code(builtinExtensions[1]) != reflect.ValueOf(rtreeInit).Pointer() {
		return
	}
	deferredExtensions = [2]uintptr{builtinExtensions[0], builtinExtensions[1]}
	builtinExtensions[0] = funcPointer(initExtension0)
	builtinExtensions[1] = funcPointer(initExtension1)
}

// loadExtensions registers the deferred extensions on the connection, once.
func (db *DB) loadExtensions() error {
	if db.extensions || !deferring(db.raw.db) {
		db.extensions = true
		return nil
	}
	for _, f := range deferredExtensions {
		if rc := callInit(f, db.raw.tls, db.raw.db); rc != lib.SQLITE_OK {
			return fmt.Errorf("storage: register SQLite extensions: %s", sqlite.ResultCode(rc))
		}
	}
	db.extensions = true
	return nil
}
