package inspect_test

import (
	"testing"

	"zombiezen.com/go/sqlite"

	"github.com/durable-go/durable/internal/storage"
)

// checkpoint folds a closed database's WAL into its file.
func checkpoint(t testing.TB, path string) {
	t.Helper()
	c, err := storage.OpenConn(path, sqlite.OpenReadWrite)
	if err != nil {
		t.Fatal(err)
	}
	defer storage.CloseConn(c)
	s, _, err := c.PrepareTransient("PRAGMA wal_checkpoint(TRUNCATE)")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Finalize()
	if _, err := s.Step(); err != nil {
		t.Fatal(err)
	}
}
