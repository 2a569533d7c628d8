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
//   - sqlite3_config before initialization, to size per-connection memory;
//   - the connection's libc TLS, replaced to drop the C stack it grew
//     (renewTLS), and SQLite's in-memory WAL index, whose empty pages are
//     given back to the OS (trimWALIndex).
//
// zombiezen keeps the handles in unexported fields, so rawOf and rawStmt read
// them (and renewTLS replaces the TLS) through a mirror of the first fields
// of sqlite.Conn and sqlite.Stmt at the version pinned in go.mod (v1.4.2).
// checkLayout verifies the mirror against SQLite itself once per process;
// if a driver upgrade moves the fields, Open fails with a clear error
// instead of misbehaving.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
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
	// pg is the main database's Pager, which does not change once the
	// connection has opened it: found once (see withPager), it spares a
	// walk through four structs, each a cache miss when many databases
	// are open, at every use.
	pg *lib.TPager
}

// withPager returns r with its Pager found.
func (r rawConn) withPager() rawConn {
	r.pg = r.findPager()
	return r
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
// SQLite allocates the arena as one block of slot size × count bytes plus
// an 8-byte size header, and the libc allocator rounds blocks up to a
// power of two: 63 slots (8,072 bytes) take an 8 KiB block where 64 would
// take 16 KiB.
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
	lookasideSlotCount = 63
	stmtJournalSpill   = 16<<10 - 64
)

var configErr error

func init() {
	tls := libc.NewTLS()
	defer tls.Close()
	config := func(op int32, args ...any) bool {
		va := libc.NewVaList(args...)
		if va == 0 {
			configErr = errors.New("storage: sqlite config: cannot allocate memory")
			return false
		}
		defer libc.Xfree(tls, va)
		// SQLITE_MISUSE means SQLite was initialized already (by another
		// user of the library in this process); the defaults then stay.
		rc := lib.Xsqlite3_config(tls, op, va)
		if rc != lib.SQLITE_OK && rc != lib.SQLITE_MISUSE {
			configErr = fmt.Errorf("storage: sqlite config %d: %s", op, sqlite.ResultCode(rc))
		}
		return rc == lib.SQLITE_OK
	}
	installBlockCache(tls, config)
	deferExtensions()
	config(lib.SQLITE_CONFIG_PAGECACHE, uintptr(0), int32(0), int32(0))
	config(lib.SQLITE_CONFIG_LOOKASIDE, int32(lookasideSlotSize), int32(lookasideSlotCount))
	config(lib.SQLITE_CONFIG_STMTJRNL_SPILL, int32(stmtJournalSpill))
	// The libc allocator serves blocks of 8-16 KiB from 64 KiB pages of
	// three and unmaps a page as soon as its last block is freed. A
	// statement journal chunk is such a block, allocated and freed by
	// every statement that needs a journal (an INSERT OR REPLACE, a Put):
	// with no other block of its size alive in the process, each one costs
	// an mmap and an munmap, which tripled the time of a KV turn. (A
	// connection's lookaside arena used to be such a block, so this
	// depended on the arena's size and on how many databases were open.)
	// One block allocated here and never freed keeps one page mapped,
	// with room for two chunks.
	libc.Xmalloc(tls, stmtJournalSpill)
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
	c, err := openForCheck()
	if err != nil {
		return fmt.Errorf("storage: verify driver: %w", err)
	}
	defer closeForCheck(c)
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
	learnHandleSize(r.tls, r.db)
	return nil
}

// persistWAL makes closing the connection truncate the WAL file instead of
// deleting it.
func (r rawConn) persistWAL() error {
	p := r.tls.Alloc(8) // see vaList
	defer r.tls.Free(8)
	binary.NativeEndian.PutUint32(libc.GoBytes(p, 4), 1)
	if rc := lib.Xsqlite3_file_control(r.tls, r.db, 0, lib.SQLITE_FCNTL_PERSIST_WAL, p); rc != lib.SQLITE_OK {
		return fmt.Errorf("storage: persist wal: %s", sqlite.ResultCode(rc))
	}
	return nil
}

// vaList builds a C va_list of args on the connection's C stack (the
// memory transpiled code keeps its locals in, per goroutine and without a
// lock), not with libc.NewVaList, whose malloc and free take the libc
// allocator's process-wide mutex: opening a database configures it
// several times, and under load those waits added up. free must run
// before anything else is allocated on the stack that outlives it.
func (r rawConn) vaList(args ...any) (va uintptr, free func()) {
	n := 8 * len(args)
	return libc.VaList(r.tls.Alloc(n), args...), func() { r.tls.Free(n) }
}

// exec runs the statements of script through one sqlite3_exec, its text on
// the connection's C stack (see vaList).
func (r rawConn) exec(script string) error {
	n := len(script) + 1
	p := r.tls.Alloc(n)
	defer r.tls.Free(n)
	b := libc.GoBytes(p, n)
	copy(b, script)
	b[n-1] = 0
	if rc := lib.Xsqlite3_exec(r.tls, r.db, p, 0, 0, 0); rc != lib.SQLITE_OK {
		code := sqlite.ResultCode(lib.Xsqlite3_extended_errcode(r.tls, r.db))
		return sqlError(code, libc.GoString(lib.Xsqlite3_errmsg(r.tls, r.db)))
	}
	return nil
}

// dbConfig sets a boolean sqlite3_db_config option.
func (r rawConn) dbConfig(op int32, on bool) error {
	v := int32(0)
	if on {
		v = 1
	}
	va, free := r.vaList(v, uintptr(0))
	defer free()
	if rc := lib.Xsqlite3_db_config(r.tls, r.db, op, va); rc != lib.SQLITE_OK {
		return fmt.Errorf("storage: db config %d: %s", op, sqlite.ResultCode(rc))
	}
	return nil
}

// setLookaside gives the connection a lookaside arena of count slots of
// size bytes, or none if count is 0 (SQLITE_DBCONFIG_LOOKASIDE). It fails
// with SQLITE_BUSY while memory of the current arena is in use, which is
// harmless: the arena stays as it was.
func (r rawConn) setLookaside(size, count int) error {
	va, free := r.vaList(uintptr(0), int32(size), int32(count))
	defer free()
	if rc := lib.Xsqlite3_db_config(r.tls, r.db, lib.SQLITE_DBCONFIG_LOOKASIDE, va); rc != lib.SQLITE_OK {
		return fmt.Errorf("storage: db config lookaside: %s", sqlite.ResultCode(rc))
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

// renewTLS replaces c's libc TLS with a new one, closes the old one and
// returns c's handles. Call it only between calls into c.
//
// The transpiled C code keeps the locals whose address it takes on a stack
// of blocks owned by the TLS, one block per call depth, each grown to the
// largest frame seen at its depth and freed only when the TLS is closed.
// Opening a database leaves 25-30 KB there (path buffers of 4 KiB and more
// for resolving the file name, nested parser frames for reading the
// schema), kept for as long as the connection is open although a turn
// needs a fraction of it. A fresh TLS starts with an empty stack and grows
// only what later calls need. Between calls the TLS holds nothing else a
// connection depends on: SQLite's mutexes are released, errno is read
// right after the call that set it, and C code never sees the TLS.
func renewTLS(c *sqlite.Conn) rawConn {
	l := (*connLayout)(unsafe.Pointer(c))
	old := l.tls
	l.tls = libc.NewTLS()
	old.Close()
	return rawConn{tls: l.tls, db: l.conn}
}

// walIndexBlockSize is the size of one block of the WAL index (wal.c's
// WALINDEX_PGSZ): the page numbers of 4096 frames and their hash table.
const walIndexBlockSize = lib.HASHTABLE_NPAGE*4 + lib.HASHTABLE_NSLOT*2

// trimWALIndex gives back to the OS the pages of the in-memory WAL index
// that hold only zeros. Call it only between calls into the connection.
//
// With locking_mode=EXCLUSIVE the WAL index is a 32 KiB block per 4096 WAL
// frames on the C heap, zeroed when allocated, so that all of it is
// resident, though a WAL of a few frames sets only the header, a few page
// numbers and a few hash slots: for an idle database this block is the
// largest part of its memory. madvise(MADV_DONTNEED) on a page of private
// anonymous memory that is all zeros changes nothing a reader can see (the
// page reads back as zeros) but drops it from the resident set until it is
// written again.
//
// *last is the index header as of the previous call. If the header has
// not changed since, no transaction wrote to the index and there is
// nothing new to trim; reading the pages given back then would only map
// them again.
func (r rawConn) trimWALIndex(last *lib.TWalIndexHdr) {
	blocks := r.walIndexBlocks()
	if len(blocks) == 0 {
		return
	}
	hdr := *cAt[lib.TWalIndexHdr](blocks[0])
	if hdr == *last {
		return
	}
	for _, block := range blocks {
		trimZeroPages(libc.GoBytes(block, walIndexBlockSize))
	}
	*last = hdr
}

// walIndexBlocks returns the addresses of the blocks of the main
// database's WAL index if the WAL is open and its index is on the heap.
func (r rawConn) walIndexBlocks() []uintptr {
	wal := r.wal()
	if wal == nil || wal.FexclusiveMode != lib.WAL_HEAPMEMORY_MODE || wal.FnWiData < 1 || wal.FapWiData == 0 {
		return nil
	}
	blocks := make([]uintptr, 0, wal.FnWiData)
	for i := range uintptr(wal.FnWiData) {
		if b := *cAt[uintptr](wal.FapWiData + i*unsafe.Sizeof(uintptr(0))); b != 0 {
			blocks = append(blocks, b)
		}
	}
	// Block 0 starts with the index header, whose first field is the
	// format version: a cheap check that this is what we think it is.
	if len(blocks) == 0 || *cAt[uint32](blocks[0]) != lib.WALINDEX_MAX_VERSION {
		return nil
	}
	return blocks
}

// walState describes the main database's WAL as this connection last saw
// it: after a commit, where that commit's frames end. ok is false if the
// WAL is not open (no transaction has run yet).
func (r rawConn) walState() (s walState, ok bool) {
	wal := r.wal()
	if wal == nil || wal.FszPage == 0 {
		return walState{}, false
	}
	return walState{
		mxFrame:  wal.Fhdr.FmxFrame,
		salt:     wal.Fhdr.FaSalt,
		ckpt:     wal.FnCkpt,
		pageSize: wal.FszPage,
	}, true
}

// walState is the part of SQLite's WAL state a durability journal needs.
type walState struct {
	mxFrame  uint32    // frames in the WAL, up to the last commit
	salt     [2]uint32 // of the current WAL header: a new pair on each restart
	ckpt     uint32    // checkpoint sequence of the current WAL header
	pageSize uint32
}

// pager returns the main database's Pager, or nil if it is not open.
func (r rawConn) pager() *lib.TPager {
	if r.pg != nil {
		return r.pg
	}
	return r.findPager()
}

// findPager follows sqlite3.aDb[0].pBt->pBt->pPager with the struct types
// of the transpiled SQLite, which are the ones its own code uses.
func (r rawConn) findPager() *lib.TPager {
	db := cAt[lib.Tsqlite3](r.db)
	if db.FnDb < 1 || db.FaDb == 0 {
		return nil
	}
	btree := cAt[lib.TDb](db.FaDb).FpBt
	if btree == 0 {
		return nil
	}
	shared := cAt[lib.TBtree](btree).FpBt
	if shared == 0 {
		return nil
	}
	pager := cAt[lib.TBtShared](shared).FpPager
	if pager == 0 {
		return nil
	}
	return cAt[lib.TPager](pager)
}

// inMemoryJournalMaxDB is the largest database whose statement journals
// are kept in memory, however large they grow (see journalInMemory).
const inMemoryJournalMaxDB = 16 << 20

// journalInMemory decides, before a transaction begins, where its
// statement journals go, and reports whether they stay in memory.
//
// A statement journal (the undo log of one statement, or of a savepoint,
// inside a transaction) holds the old contents of the pages the statement
// changes. SQLite keeps it in memory until it outgrows stmtJournalSpill (a
// B-tree split that rewrites four pages is enough), then moves it to a
// temporary file. With exclusive locking (see setup) SQLite keeps that
// file for the rest of the connection's life, and every later statement
// journal, however small, is written to it with two system calls per page:
// 7 µs of every single-row commit, measured here; closing the file after
// each such transaction instead costs a file creation at the next spill,
// which is no cheaper. So for a database of at most inMemoryJournalMaxDB
// the journals stay in memory (SQLite's temp_store=MEMORY, which a
// transaction reads when it begins): one holds at most one copy of each
// page per savepoint level, so memory stays bounded by the database's
// size. A larger database spills to a file as before, and a file left
// from when it was large is closed.
func (r rawConn) journalInMemory() bool {
	p := r.pager()
	db := cAt[lib.Tsqlite3](r.db)
	small := p != nil && int64(p.FdbSize)*int64(p.FpageSize) <= inMemoryJournalMaxDB
	switch {
	case small && db.Ftemp_store != 2:
		// Journals were allowed to spill until now: one may have.
		db.Ftemp_store = 2
		r.closeSpilledStmtJournal()
	case !small:
		db.Ftemp_store = 0
	}
	return small
}

// closeSpilledStmtJournal closes the main database's statement journal if
// it spilled to a temporary file, and reports whether it did. Call it only
// between transactions.
func (r rawConn) closeSpilledStmtJournal() bool {
	p := r.pager()
	if p == nil || p.FnSavepoint != 0 || p.Fsjfd == 0 {
		return false
	}
	f := cAt[lib.Tsqlite3_file](p.Fsjfd)
	if f.FpMethods == 0 {
		return false
	}
	// The in-memory journal's methods are version 1; a file's are version
	// 3 (they include shared memory).
	m := cAt[lib.Tsqlite3_io_methods1](f.FpMethods)
	if m.FiVersion < 2 {
		return false
	}
	xClose := *(*func(*libc.TLS, uintptr) int32)(unsafe.Pointer(&struct{ uintptr }{m.FxClose}))
	xClose(r.tls, p.Fsjfd)
	f.FpMethods = 0
	return true
}

// wal returns the main database's Wal object, or nil if it is not open.
func (r rawConn) wal() *lib.TWal {
	p := r.pager()
	if p == nil || p.FpWal == 0 {
		return nil
	}
	return cAt[lib.TWal](p.FpWal)
}

// cAt returns the T at address p of C memory.
// (Sizeof of a dereferenced nil pointer evaluates nothing: a zero T on
// the stack would be cleared at each call, and some of these structs are
// kilobytes.)
func cAt[T any](p uintptr) *T {
	return (*T)(unsafe.Pointer(unsafe.SliceData(libc.GoBytes(p, int(unsafe.Sizeof(*(*T)(nil)))))))
}

// trimZeroPages drops from the resident set the whole OS pages inside b
// that hold only zeros (see trimWALIndex). b must be private anonymous
// memory (the C heap is) that nothing else uses during the call.
func trimZeroPages(b []byte) {
	ps := uintptr(os.Getpagesize())
	base := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	first := (base + ps - 1) &^ (ps - 1)
	end := (base + uintptr(len(b))) &^ (ps - 1)
	run := uintptr(0) // start of the current run of zero pages, or 0
	flush := func(to uintptr) {
		if run != 0 {
			// An error (none is expected for heap memory) just leaves the
			// pages resident.
			_ = unix.Madvise(b[run-base:to-base], unix.MADV_DONTNEED)
			run = 0
		}
	}
	for p := first; p < end; p += ps {
		if !isZero(b[p-base : p-base+ps]) {
			flush(p)
		} else if run == 0 {
			run = p
		}
	}
	flush(end)
}

// isZero reports whether b, whose length is a multiple of 8, holds only
// zeros.
func isZero(b []byte) bool {
	words := unsafe.Slice((*uint64)(unsafe.Pointer(unsafe.SliceData(b))), len(b)/8)
	for _, w := range words {
		if w != 0 {
			return false
		}
	}
	return true
}

// diskFull reports whether the last write that failed on the database or
// its WAL failed for lack of space (ENOSPC, EDQUOT): SQLite reports that
// and the database's size limit alike, as SQLITE_FULL.
func (r rawConn) diskFull() bool {
	full := func(errno int32) bool {
		return errno == int32(unix.ENOSPC) || errno == int32(unix.EDQUOT)
	}
	if p := r.pager(); p != nil && p.Ffd != 0 && cAt[lib.Tsqlite3_file](p.Ffd).FpMethods != 0 {
		if full(cAt[lib.TunixFile](p.Ffd).FlastErrno) {
			return true
		}
	}
	if w := r.wal(); w != nil && w.FpWalFd != 0 && cAt[lib.Tsqlite3_file](w.FpWalFd).FpMethods != 0 {
		if full(cAt[lib.TunixFile](w.FpWalFd).FlastErrno) {
			return true
		}
	}
	return r.walDiskFull()
}
