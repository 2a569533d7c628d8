//go:build !linux

package storage

import (
	"github.com/durable-go/durable/internal/durability"
	"golang.org/x/sys/unix"
	"zombiezen.com/go/sqlite"
)

// sqliteLocks is always on outside Linux: the default VFS and its locks.
var sqliteLocks = true

// osPragmas are run on every connection after the common ones. Outside
// Linux durability fsyncs each WAL itself, but SQLite syncs the WAL and
// the database around a checkpoint: on macOS, fullfsync makes those
// syncs F_FULLFSYNC, like durability's (elsewhere SQLite ignores it).
var osPragmas = []string{"PRAGMA fullfsync = ON"}

// connName returns the name and flags with which Open hands path to
// SQLite. Outside Linux it is the path itself, with SQLite's default VFS
// and its POSIX locks (see os_linux.go for Linux).
func connName(path string, flags sqlite.OpenFlags, gatherWAL bool) (string, sqlite.OpenFlags, error) {
	return path, flags, nil
}

// lockMain does nothing outside Linux: SQLite's own locks, taken at the
// first read under EXCLUSIVE locking mode, keep other connections out.
func (r rawConn) lockMain() error { return nil }

// walData returns nothing outside Linux, where SQLite writes the WAL
// itself: the journal reads the bytes back from the file.
func (r rawConn) walData(durability.WALRange) ([]byte, error) { return nil, nil }

// releaseWAL does nothing outside Linux.
func (r rawConn) releaseWAL() {}

// renameNoReplace reports ENOSYS: the caller claims the name with a hard
// link instead.
func renameNoReplace(string, string) error { return unix.ENOSYS }

// walDiskFull reports false: outside Linux SQLite writes the WAL itself
// and keeps its errno (see diskFull).
func (r rawConn) walDiskFull() bool { return false }
