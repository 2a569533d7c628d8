package storage

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
	lib "modernc.org/sqlite/lib"
	"zombiezen.com/go/sqlite"
)

// On Linux an object's database is opened through SQLite's "unix-none"
// VFS, which takes no locks of its own, and Open locks the file itself
// with one open file description lock (lockMain).
//
// SQLite's default "unix" VFS keeps every file it has open in one
// process-wide linked list (its inode table, which works around POSIX
// locks being dropped when any descriptor of a file is closed), and walks
// that list twice or more for every file it opens. With thousands of
// objects live that walk cost more than the rest of opening a database:
// 200 µs per activation with 4,000 objects open, growing with their
// number. An open file description lock has none of the POSIX problem (it
// belongs to SQLite's descriptor and goes when that one closes), so no
// table is needed.
//
// The lock covers the bytes SQLite's own locks use (from PENDING_BYTE, 1
// GiB, for 512 bytes), exclusively, so it conflicts with SQLite's locks
// in another process (the sqlite3 shell, say) as well as with a second
// Open of the same file in this one, which SQLite's "unix" VFS lets
// through within a process.

const (
	lockFirstByte = 0x40000000 // SQLite's PENDING_BYTE
	lockBytes     = 512        // PENDING, RESERVED and the SHARED range
)

// sqliteLocks makes Open use SQLite's default VFS and its locks instead,
// as outside Linux: for benchmarks measuring the difference.
var sqliteLocks = false

// osPragmas are run on every connection after the common ones: none on
// Linux, where fsync reaches stable storage.
var osPragmas []string

// uriEscaper escapes a path for a URI filename: '%' starts an escape, '?'
// the query and '#' the fragment; nothing else in a path needs escaping.
var uriEscaper = strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23")

// connName returns the name and flags with which Open hands path to
// SQLite: a URI selecting unix-none or, with gatherWAL, the "durable" VFS
// (unix-none gathering WAL writes, walbuf_linux.go) if it registered.
func connName(path string, flags sqlite.OpenFlags, gatherWAL bool) (string, sqlite.OpenFlags, error) {
	if sqliteLocks {
		return path, flags, nil
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", 0, err
	}
	esc := abs
	if strings.ContainsAny(abs, "%?#") {
		esc = uriEscaper.Replace(abs)
	}
	vfs := "unix-none"
	if gatherWAL && registerWALVFS() == nil {
		vfs = walVFSName
	}
	return "file:" + esc + "?vfs=" + vfs, flags | sqlite.OpenURI, nil
}

// lockMain takes the database's lock (see above) on the descriptor SQLite
// opened for the main database file. It fails with ErrInUse if any other
// open file description holds a conflicting lock.
func (r rawConn) lockMain() error {
	if sqliteLocks {
		return nil
	}
	p := r.pager()
	if p == nil || p.Ffd == 0 || cAt[lib.Tsqlite3_file](p.Ffd).FpMethods == 0 {
		return errors.New("storage: unsupported modernc.org/sqlite version (no main database file)")
	}
	fd := cAt[lib.TunixFile](p.Ffd).Fh
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: lockFirstByte, Len: lockBytes}
	switch err := unix.FcntlFlock(uintptr(fd), unix.F_OFD_SETLK, &lk); {
	case err == nil:
		return nil
	case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EACCES):
		return ErrInUse
	default:
		return fmt.Errorf("storage: lock the database file: %w", err)
	}
}

// renameNoReplace renames oldpath to newpath unless newpath exists.
func renameNoReplace(oldpath, newpath string) error {
	return unix.Renameat2(unix.AT_FDCWD, oldpath, unix.AT_FDCWD, newpath, unix.RENAME_NOREPLACE)
}
