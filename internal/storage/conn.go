package storage

import (
	"sync"
	"sync/atomic"

	"modernc.org/libc"
	lib "modernc.org/sqlite/lib"
	"zombiezen.com/go/sqlite"
)

// Connections open and close in parallel, with one hazard handled here.
//
// zombiezen.com/go/sqlite v1.4.2 frees a connection's sqlite3 handle in
// Conn.Close before it removes the handle's address from its process-wide
// tables (authorizers, busy handlers, connections). A connection opened on
// another goroutine in between could be given the same address, register
// itself, and then lose its entries to the late removal: its authorizer
// callback would then find nothing and the process would crash.
//
// So CloseConn holds the handle's memory while Close runs: SQLite frees
// through storage's allocator wrapper (alloc.go), which keeps the block
// of a handle being closed instead of freeing it, and CloseConn frees the
// block once Close has returned. No connection can be given the address
// while the driver still knows it. (Serialising every open and close on
// one mutex did the same, but made the opens and closes of thousands of
// objects a queue.)
//
// Where the wrapper is not installed (SQLite was initialized by another
// user of the library first) or the driver's layout is not the one
// storage knows, opens and closes fall back to that one mutex, connMu.
var (
	connMu sync.Mutex

	handles struct {
		// size is the allocator's size of a sqlite3 handle's block (set
		// once by verifyLayout); zero means that holding is not
		// possible and connMu serialises instead.
		size atomic.Int32
		n    atomic.Int32 // len(held), read without mu by the allocator

		// set holds the keys of held, for the allocator to look up
		// without mu: every freed block of a handle's size class asks.
		set sync.Map

		mu   sync.Mutex
		held map[uintptr]*hold // handles being closed
		tls  *libc.TLS         // for the deferred free, under mu
	}
)

// hold is the state of a handle being closed.
type hold struct {
	closers int  // CloseConn calls in progress (more than one only for a misused, closed connection)
	freed   bool // SQLite freed the block; the last closer frees it
}

// OpenConn opens a SQLite connection. Every connection of the process must
// be opened with OpenConn and closed with CloseConn.
func OpenConn(path string, flags sqlite.OpenFlags) (*sqlite.Conn, error) {
	if err := checkLayout(); err != nil {
		return nil, err
	}
	if handles.size.Load() == 0 {
		connMu.Lock()
		defer connMu.Unlock()
	}
	return sqlite.OpenConn(path, flags)
}

// OpenPrivate opens the SQLite database at path (creating it if flags has
// sqlite.OpenCreate) for one connection of a process that keeps every
// other connection out by other means (the runtime's lock on its data
// folder): on Linux through SQLite's unix-none VFS, which takes no locks,
// in exclusive locking mode (set before the WAL is opened, so that SQLite
// keeps the WAL index in heap memory: unix-none has no shared memory);
// elsewhere through the default VFS as it is. Another connection reading
// the file meanwhile may see it as it was some commits before. Close it
// with CloseConn.
//
// Use it for every file the process keeps open for long. As long as one
// connection has a file open through the default VFS, SQLite stats the
// file of every later open under its one process-wide mutex, looking for
// a descriptor to reuse: the opens of objects being activated then queue
// there.
func OpenPrivate(path string, flags sqlite.OpenFlags) (*sqlite.Conn, error) {
	name, flags, err := connName(path, flags, false)
	if err != nil {
		return nil, err
	}
	c, err := OpenConn(name, flags)
	if err != nil {
		return nil, err
	}
	if name != path {
		if err := execTransient(c, "PRAGMA locking_mode = EXCLUSIVE"); err != nil {
			CloseConn(c)
			return nil, err
		}
	}
	return c, nil
}

// CloseConn closes a connection opened with OpenConn.
func CloseConn(c *sqlite.Conn) error {
	if handles.size.Load() == 0 {
		connMu.Lock()
		defer connMu.Unlock()
		return c.Close()
	}
	p := rawOf(c).db
	holdHandle(p)
	err := c.Close()
	releaseHandle(p)
	return err
}

// openForCheck opens the connection checkLayout inspects, on connMu: not
// with OpenConn, which waits for the check.
func openForCheck() (*sqlite.Conn, error) {
	connMu.Lock()
	defer connMu.Unlock()
	return sqlite.OpenConn(":memory:", sqlite.OpenReadWrite|sqlite.OpenCreate|sqlite.OpenMemory)
}

// closeForCheck closes the connection of openForCheck, on connMu.
func closeForCheck(c *sqlite.Conn) error {
	connMu.Lock()
	defer connMu.Unlock()
	return c.Close()
}

// holdHandle makes the allocator keep the block of handle p when SQLite
// frees it, until releaseHandle.
func holdHandle(p uintptr) {
	handles.mu.Lock()
	defer handles.mu.Unlock()
	if handles.held == nil {
		handles.held = make(map[uintptr]*hold)
	}
	h := handles.held[p]
	if h == nil {
		h = new(hold)
		handles.held[p] = h
		handles.set.Store(p, struct{}{})
		handles.n.Store(int32(len(handles.held)))
	}
	h.closers++
}

// releaseHandle ends holdHandle. The last closer of a handle frees its
// block if SQLite freed it, and reports whether it did. (A second
// CloseConn of a closed connection holds an address that may by now
// belong to another connection: counting closers keeps that other
// connection's close from being cut short.)
func releaseHandle(p uintptr) (freed bool) {
	handles.mu.Lock()
	defer handles.mu.Unlock()
	h := handles.held[p]
	if h == nil {
		return false
	}
	if h.closers--; h.closers > 0 {
		return false
	}
	delete(handles.held, p)
	handles.set.Delete(p)
	handles.n.Store(int32(len(handles.held)))
	if h.freed {
		blocks.free(handles.tls, p, handles.size.Load())
	}
	return h.freed
}

// keepHandle is called by the allocator for every freed block of a
// handle's size: it reports whether p is a handle being closed, whose
// freeing releaseHandle then does.
func keepHandle(p uintptr) bool {
	if handles.n.Load() == 0 {
		return false
	}
	if _, ok := handles.set.Load(p); !ok {
		return false
	}
	handles.mu.Lock()
	defer handles.mu.Unlock()
	h := handles.held[p]
	if h == nil {
		return false
	}
	h.freed = true
	return true
}

// learnHandleSize records the allocator's block size of handle db, opened
// on tls, if the allocator wrapper is installed: from then on connections
// open and close without connMu.
func learnHandleSize(tls *libc.TLS, db uintptr) {
	if !blocks.installed {
		return
	}
	size := blocks.size(tls, db)
	if size <= 0 {
		return
	}
	handles.mu.Lock()
	handles.tls = libc.NewTLS()
	handles.mu.Unlock()
	handles.size.Store(size)
}

// SetDefensive turns on SQLite's defensive mode for c (no writes to the
// schema or to shadow tables by SQL, and the like). Use it instead of the
// driver's Conn.SetDefensive, which corrupts memory (see DB.setup).
func SetDefensive(c *sqlite.Conn) error {
	return rawOf(c).dbConfig(lib.SQLITE_DBCONFIG_DEFENSIVE, true)
}
