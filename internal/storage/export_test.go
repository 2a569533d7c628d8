package storage

import (
	"os"
	"path/filepath"
	"strings"
)

// OpenTempFiles counts the process's open SQLite temporary files (their
// names start with etilqs_; SQLite unlinks them when it opens them).
func OpenTempFiles() (int, error) {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range ents {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil && strings.Contains(target, "etilqs_") {
			n++
		}
	}
	return n, nil
}

// UseSQLiteLocks makes Open use SQLite's default VFS and its POSIX locks
// (as outside Linux) until the returned function is called.
func UseSQLiteLocks() (restore func()) {
	old := sqliteLocks
	sqliteLocks = true
	return func() { sqliteLocks = old }
}
