package storage_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/durable-go/durable/internal/storage"
	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"
)

// TestOpenPrivate: a file opened with OpenPrivate is a WAL database whose
// WAL index stays in the connection's memory (no -shm file: unix-none in
// exclusive locking mode, not the default VFS), and what it commits is
// there when it is opened again.
func TestOpenPrivate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "private.sqlite")
	c, err := storage.OpenPrivate(path, sqlite.OpenReadWrite|sqlite.OpenCreate)
	if err != nil {
		t.Fatal(err)
	}
	if err := sqlitex.ExecuteTransient(c, "PRAGMA journal_mode = WAL", nil); err != nil {
		t.Fatal(err)
	}
	if err := sqlitex.ExecuteScript(c, "CREATE TABLE t (x); INSERT INTO t VALUES (42);", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + "-wal"); err != nil {
		t.Errorf("no WAL: %v", err)
	}
	if _, err := os.Stat(path + "-shm"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("-shm file: %v; want none (WAL index in memory)", err)
	}
	if err := storage.CloseConn(c); err != nil {
		t.Fatal(err)
	}

	c, err = storage.OpenPrivate(path, sqlite.OpenReadWrite)
	if err != nil {
		t.Fatal(err)
	}
	defer storage.CloseConn(c)
	if got, err := connInt(t, c, "SELECT x FROM t"); err != nil || got != 42 {
		t.Errorf("after reopening: x = %d, %v; want 42", got, err)
	}
}
