package storage

import (
	"sync"

	lib "modernc.org/sqlite/lib"
	"zombiezen.com/go/sqlite"
)

// connMu serialises opening and closing SQLite connections in the process.
//
// zombiezen.com/go/sqlite v1.4.2 frees a connection's sqlite3 handle in
// Conn.Close before it removes the handle's address from its process-wide
// tables (authorizers, busy handlers, connections). A connection opened on
// another goroutine in between can be given the same address, register
// itself, and then lose its entries to the late removal: its authorizer
// callback then finds nothing and the process crashes. Holding connMu
// across OpenConn and across Close closes that window.
var connMu sync.Mutex

// OpenConn opens a SQLite connection. Every connection of the process must
// be opened with OpenConn and closed with CloseConn (see connMu).
func OpenConn(path string, flags sqlite.OpenFlags) (*sqlite.Conn, error) {
	connMu.Lock()
	defer connMu.Unlock()
	return sqlite.OpenConn(path, flags)
}

// CloseConn closes a connection opened with OpenConn.
func CloseConn(c *sqlite.Conn) error {
	connMu.Lock()
	defer connMu.Unlock()
	return c.Close()
}

// SetDefensive turns on SQLite's defensive mode for c (no writes to the
// schema or to shadow tables by SQL, and the like). Use it instead of the
// driver's Conn.SetDefensive, which corrupts memory (see DB.setup).
func SetDefensive(c *sqlite.Conn) error {
	return rawOf(c).dbConfig(lib.SQLITE_DBCONFIG_DEFENSIVE, true)
}
