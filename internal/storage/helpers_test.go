package storage_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/durable-go/durable/internal/durability"
	"github.com/durable-go/durable/internal/storage"
	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"
)

// newGroup returns a durability Group in mode, closed at the end of the test.
func newGroup(tb testing.TB, mode durability.Mode) *durability.Group {
	tb.Helper()
	g := durability.New(durability.Config{Mode: mode})
	tb.Cleanup(g.Close)
	return g
}

// openDB opens a new database in a temporary directory with a NoSync
// group unless opts sets one. It is closed at the end of the test.
func openDB(tb testing.TB, opts storage.Options) *storage.DB {
	tb.Helper()
	return openAt(tb, filepath.Join(tb.TempDir(), "objects", "db.sqlite"), opts)
}

func openAt(tb testing.TB, path string, opts storage.Options) *storage.DB {
	tb.Helper()
	if opts.Durability == nil {
		opts.Durability = newGroup(tb, durability.NoSync)
	}
	db, err := storage.Open(path, opts)
	if err != nil {
		tb.Fatalf("Open(%q): %v", path, err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

// exec runs query and reads its whole result.
func exec(tb testing.TB, db *storage.DB, query string, args ...any) [][]any {
	tb.Helper()
	cur, err := db.Exec(query, args...)
	if err != nil {
		tb.Fatalf("Exec(%q): %v", query, err)
	}
	rows, err := cur.Raw()
	if err != nil {
		tb.Fatalf("Exec(%q): Raw: %v", query, err)
	}
	return rows
}

// commit commits and waits until the commit is durable.
func commit(tb testing.TB, db *storage.DB) {
	tb.Helper()
	t, err := db.Commit()
	if err != nil {
		tb.Fatalf("Commit: %v", err)
	}
	if err := t.Wait(tb.Context()); err != nil {
		tb.Fatalf("Commit: Wait: %v", err)
	}
}

// queryInt returns the single integer a query returns.
func queryInt(tb testing.TB, db *storage.DB, query string, args ...any) int64 {
	tb.Helper()
	cur, err := db.Exec(query, args...)
	if err != nil {
		tb.Fatalf("Exec(%q): %v", query, err)
	}
	var n int64
	if err := cur.One(&n); err != nil {
		tb.Fatalf("Exec(%q): One: %v", query, err)
	}
	return n
}

// connInt returns the integer in the first column of query's first row,
// run on a connection of its own.
func connInt(tb testing.TB, c *sqlite.Conn, query string) (int64, error) {
	tb.Helper()
	var n int64
	err := sqlitex.ExecuteTransient(c, query, &sqlitex.ExecOptions{
		ResultFunc: func(s *sqlite.Stmt) error { n = s.ColumnInt64(0); return nil },
	})
	return n, err
}

func timeAt(sec int64) time.Time { return time.Unix(sec, 0).UTC() }
