package storage

import (
	"errors"
	"fmt"
	"unsafe"

	"modernc.org/libc"
	lib "modernc.org/sqlite/lib"
	"zombiezen.com/go/sqlite"
)

// Text and blob parameters are bound here, not with the driver's
// Stmt.BindText and BindBytes. Those copy the value byte by byte into a
// block from libc's malloc and hand SQLite libc's free to release it:
// two trips through the allocator's one process-wide mutex for every
// key and value bound, which is where goroutines queued most once
// connections opened and closed in parallel (an execution trace of the
// alarm benchmark: 289 s blocked in malloc and free per 4 s run, 85% of
// the frees SQLite's release of bound values). The value is copied into
// a block from SQLite's own allocator (storage's cache of blocks) and
// SQLite frees it there.
//
// A value of up to bindCopyMax bytes is copied onto the connection's C
// stack instead, and SQLite told to copy it (SQLITE_TRANSIENT): SQLite
// then copies it into memory of the statement's connection, from its
// lookaside arena when it fits, which takes no lock and no trip through
// the allocator, and the stack space is given back at once.

// sqliteFree is sqlite3_free as a C function pointer: the destructor of
// the values bound here.
var sqliteFree = funcPointer(lib.Xsqlite3_free)

// bindCopyMax is the largest value bound by copy (see above): keys and
// small values, which fit a lookaside slot or a small allocation.
const bindCopyMax = 512

// sqliteTransient is SQLITE_TRANSIENT, the destructor that tells SQLite
// to copy the value before the bind call returns.
const sqliteTransient = ^uintptr(0)

// emptyValue is a C byte for binding empty values (SQLite needs a
// non-NULL pointer for an empty string or blob).
var emptyValue = func() uintptr {
	tls := libc.NewTLS()
	defer tls.Close()
	return libc.Xcalloc(tls, 1, 1)
}()

// bindText binds v to parameter p of s.
func bindText(s *sqlite.Stmt, p int, v string) error {
	return bindValue(s, p, unsafe.Slice(unsafe.StringData(v), len(v)), true)
}

// bindBytes binds v to parameter p of s as a blob.
func bindBytes(s *sqlite.Stmt, p int, v []byte) error {
	return bindValue(s, p, v, false)
}

// bindRowKey binds key to parameter p of s as a blob: the key of one of
// the runtime's own rows in _durable_kv (see schemaVersion).
func bindRowKey(s *sqlite.Stmt, p int, key string) error {
	return bindValue(s, p, unsafe.Slice(unsafe.StringData(key), len(key)), false)
}

func bindValue(s *sqlite.Stmt, p int, v []byte, text bool) error {
	l := (*stmtLayout)(unsafe.Pointer(s))
	if l.stmt == 0 {
		return errors.New("storage: bind on a finalized statement")
	}
	tls := rawOf(l.conn).tls
	ptr, del := emptyValue, uintptr(0) // SQLITE_STATIC
	switch {
	case len(v) == 0:
	case len(v) <= bindCopyMax:
		ptr, del = tls.Alloc(len(v)), sqliteTransient
		defer tls.Free(len(v))
		copy(libc.GoBytes(ptr, len(v)), v)
	default:
		ptr = lib.Xsqlite3_malloc64(tls, uint64(len(v)))
		if ptr == 0 {
			return sqlError(sqlite.ResultNoMem, "bind: out of memory")
		}
		copy(libc.GoBytes(ptr, len(v)), v)
		del = sqliteFree
	}
	var rc int32
	if text {
		rc = lib.Xsqlite3_bind_text64(tls, l.stmt, int32(p), ptr, uint64(len(v)), del, lib.SQLITE_UTF8)
	} else {
		rc = lib.Xsqlite3_bind_blob64(tls, l.stmt, int32(p), ptr, uint64(len(v)), del)
	}
	if rc != lib.SQLITE_OK {
		// SQLite has called the destructor already.
		return sqlError(sqlite.ResultCode(rc), fmt.Sprintf("bind parameter %d: %s", p, libc.GoString(lib.Xsqlite3_errstr(tls, rc))))
	}
	return nil
}
