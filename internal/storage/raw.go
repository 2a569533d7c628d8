package storage

// This file is the one place that reaches below zombiezen.com/go/sqlite to
// the transpiled SQLite C API (modernc.org/sqlite/lib). The driver does not
// expose a few calls storage needs:
//
//   - sqlite3_file_control(SQLITE_FCNTL_PERSIST_WAL), so that a checkpoint
//     that empties the WAL truncates the file instead of deleting it and the
//     next write does not have to create one: creating a file costs ~0.7 ms
//     on the reference machine, more than everything else an Open does;
//   - sqlite3_db_config(SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE), so that closing
//     a database (eviction) does not checkpoint it with two fsyncs;
//   - sqlite3_txn_state, to learn whether a turn wrote anything;
//   - sqlite3_total_changes64 and sqlite3_stmt_status, for row metering;
//   - sqlite3_errmsg and sqlite3_extended_errcode, to build typed errors
//     without parsing the driver's strings;
//   - sqlite3_stmt_readonly and sqlite3_column_name (the driver's column
//     names are captured at prepare time and go stale);
//   - sqlite3_db_status and sqlite3_db_release_memory, for memory;
//   - sqlite3_config before initialization, to size per-connection memory.
//
// zombiezen keeps the handles in unexported fields, so handles() reads them
// through a mirror of the first fields of sqlite.Conn and sqlite.Stmt at the
// version pinned in go.mod (v1.4.2). checkLayout verifies the mirror against
// SQLite itself once per process; if a driver upgrade moves the fields, Open
// fails with a clear error instead of misbehaving.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"unsafe"

	"modernc.org/libc"
	lib "modernc.org/sqlite/lib"
	"zombiezen.com/go/sqlite"
)

// connLayout mirrors the leading fields of sqlite.Conn (v1.4.2).
type connLayout struct {
	tls  *libc.TLS
	conn uintptr
}

// stmtLayout mirrors the leading fields of sqlite.Stmt (v1.4.2).
type stmtLayout struct {
	conn *sqlite.Conn
	stmt uintptr
}

// rawConn holds a connection's C handles.
type rawConn struct {
	tls *libc.TLS
	db  uintptr
}

func rawOf(c *sqlite.Conn) rawConn {
	l := (*connLayout)(unsafe.Pointer(c))
	return rawConn{tls: l.tls, db: l.conn}
}

func rawStmt(s *sqlite.Stmt) uintptr {
	return (*stmtLayout)(unsafe.Pointer(s)).stmt
}

// Memory configuration applied to SQLite before it is initialized. Lookaside
// is SQLite's per-connection arena for small allocations; the default (40
// slots of 1200 bytes, 48 KB) would be most of an idle connection's memory.
// The page cache's initial bulk allocation (20 pages, touched at once) is
// turned off so that an idle database holds only the pages it has read.
//
// A statement journal (the undo log of one statement inside a transaction)
// is kept in memory in chunks of stmtJournalSpill bytes and spills to a
// temporary file past that. The default, 64 KiB, makes every journaled
// statement map and unmap a 64 KiB chunk (the libc allocator serves
// blocks above 16 KiB with mmap), which costs ~20 µs here; a chunk that
// fits the allocator's largest slab class costs nothing.
const (
	lookasideSlotSize  = 128
	lookasideSlotCount = 64
	stmtJournalSpill   = 16<<10 - 64
)

var configErr error

func init() {
	tls := libc.NewTLS()
	defer tls.Close()
	config := func(op int32, args ...any) {
		va := libc.NewVaList(args...)
		if va == 0 {
			configErr = errors.New("storage: sqlite config: cannot allocate memory")
			return
		}
		defer libc.Xfree(tls, va)
		// SQLITE_MISUSE means SQLite was initialized already (by another
		// user of the library in this process); the defaults then stay.
		if rc := lib.Xsqlite3_config(tls, op, va); rc != lib.SQLITE_OK && rc != lib.SQLITE_MISUSE {
			configErr = fmt.Errorf("storage: sqlite config %d: %s", op, sqlite.ResultCode(rc))
		}
	}
	config(lib.SQLITE_CONFIG_PAGECACHE, uintptr(0), int32(0), int32(0))
	config(lib.SQLITE_CONFIG_LOOKASIDE, int32(lookasideSlotSize), int32(lookasideSlotCount))
	config(lib.SQLITE_CONFIG_STMTJRNL_SPILL, int32(stmtJournalSpill))
}

var (
	layoutOnce sync.Once
	layoutErr  error
)

// checkLayout verifies once that rawOf and rawStmt read real handles.
func checkLayout() error {
	layoutOnce.Do(func() {
		layoutErr = verifyLayout()
		if layoutErr == nil {
			layoutErr = configErr
		}
	})
	return layoutErr
}

func verifyLayout() error {
	c, err := OpenConn(":memory:", sqlite.OpenReadWrite|sqlite.OpenCreate|sqlite.OpenMemory)
	if err != nil {
		return fmt.Errorf("storage: verify driver: %w", err)
	}
	defer CloseConn(c)
	const query = "SELECT 1 /* storage layout check */"
	s, _, err := c.PrepareTransient(query)
	if err != nil {
		return fmt.Errorf("storage: verify driver: %w", err)
	}
	defer s.Finalize()
	r := rawOf(c)
	if r.tls == nil || r.db == 0 {
		return errors.New("storage: unsupported zombiezen.com/go/sqlite version (connection layout)")
	}
	st := rawStmt(s)
	if st == 0 || lib.Xsqlite3_db_handle(r.tls, st) != r.db || libc.GoString(lib.Xsqlite3_sql(r.tls, st)) != query {
		return errors.New("storage: unsupported zombiezen.com/go/sqlite version (statement layout)")
	}
	return nil
}

// persistWAL makes closing the connection truncate the WAL file instead of
// deleting it.
func (r rawConn) persistWAL() error {
	p := libc.Xmalloc(r.tls, 4)
	if p == 0 {
		return errors.New("storage: cannot allocate memory")
	}
	defer libc.Xfree(r.tls, p)
	binary.NativeEndian.PutUint32(libc.GoBytes(p, 4), 1)
	if rc := lib.Xsqlite3_file_control(r.tls, r.db, 0, lib.SQLITE_FCNTL_PERSIST_WAL, p); rc != lib.SQLITE_OK {
		return fmt.Errorf("storage: persist wal: %s", sqlite.ResultCode(rc))
	}
	return nil
}

// dbConfig sets a boolean sqlite3_db_config option.
func (r rawConn) dbConfig(op int32, on bool) error {
	v := int32(0)
	if on {
		v = 1
	}
	va := libc.NewVaList(v, uintptr(0))
	if va == 0 {
		return errors.New("storage: cannot allocate memory")
	}
	defer libc.Xfree(r.tls, va)
	if rc := lib.Xsqlite3_db_config(r.tls, r.db, op, va); rc != lib.SQLITE_OK {
		return fmt.Errorf("storage: db config %d: %s", op, sqlite.ResultCode(rc))
	}
	return nil
}

// filename returns the path of the main database file.
func (r rawConn) filename() string {
	return libc.GoString(lib.Xsqlite3_db_filename(r.tls, r.db, 0))
}

// writing reports whether a write transaction is open.
func (r rawConn) writing() bool {
	return lib.Xsqlite3_txn_state(r.tls, r.db, 0) == lib.SQLITE_TXN_WRITE
}

func (r rawConn) totalChanges() int64 {
	return lib.Xsqlite3_total_changes64(r.tls, r.db)
}

// errInfo returns the extended code and message of the last failed call.
func (r rawConn) errInfo() (sqlite.ResultCode, string) {
	code := sqlite.ResultCode(lib.Xsqlite3_extended_errcode(r.tls, r.db))
	return code, libc.GoString(lib.Xsqlite3_errmsg(r.tls, r.db))
}

// fullScanSteps returns and resets the statement's full-scan step counter.
func (r rawConn) fullScanSteps(s *sqlite.Stmt) int64 {
	return int64(lib.Xsqlite3_stmt_status(r.tls, rawStmt(s), lib.SQLITE_STMTSTATUS_FULLSCAN_STEP, 1))
}

// memoryUsed returns the bytes of heap the connection holds for its page
// cache, schema and prepared statements (sqlite3_db_status).
func (r rawConn) memoryUsed() int64 {
	p := libc.Xmalloc(r.tls, 8)
	if p == 0 {
		return 0
	}
	defer libc.Xfree(r.tls, p)
	mem := libc.GoBytes(p, 8)
	var total int64
	for _, op := range []int32{lib.SQLITE_DBSTATUS_CACHE_USED, lib.SQLITE_DBSTATUS_SCHEMA_USED, lib.SQLITE_DBSTATUS_STMT_USED} {
		clear(mem)
		if lib.Xsqlite3_db_status(r.tls, r.db, op, p, p+4, 0) == lib.SQLITE_OK {
			total += int64(int32(binary.NativeEndian.Uint32(mem)))
		}
	}
	return total
}

// columnName returns the name of result column i. (The driver's ColumnName
// answers from names captured at prepare time, which go stale when SQLite
// re-prepares after a schema change, and loses duplicate names.)
func (r rawConn) columnName(s *sqlite.Stmt, i int) string {
	return libc.GoString(lib.Xsqlite3_column_name(r.tls, rawStmt(s), int32(i)))
}

// readonly reports whether the statement makes no direct changes to the
// database (sqlite3_stmt_readonly).
func (r rawConn) readonly(s *sqlite.Stmt) bool {
	return lib.Xsqlite3_stmt_readonly(r.tls, rawStmt(s)) != 0
}

// releaseMemory frees what the connection's caches can give back
// (sqlite3_db_release_memory).
func (r rawConn) releaseMemory() {
	lib.Xsqlite3_db_release_memory(r.tls, r.db)
}
