package storage

import (
	"path/filepath"
	"testing"

	"github.com/durable-go/durable/internal/durability"
)

// reopener returns a function that opens one database path, in a new
// temporary directory, with a NoSync group: for tests that close and
// reopen it. The caller closes what it opens.
func reopener(t *testing.T) func() *DB {
	t.Helper()
	g := durability.New(durability.Config{Mode: durability.NoSync})
	t.Cleanup(g.Close)
	path := filepath.Join(t.TempDir(), "db")
	return func() *DB {
		t.Helper()
		db, err := Open(path, Options{Durability: g})
		if err != nil {
			t.Fatal(err)
		}
		return db
	}
}
