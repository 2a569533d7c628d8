package storage

import (
	"runtime"
	"testing"

	"zombiezen.com/go/sqlite"
)

// extensionModules counts the modules of FTS5 and R-Tree registered on the
// connection.
func extensionModules(t *testing.T, c *sqlite.Conn) int64 {
	t.Helper()
	s, _, err := c.PrepareTransient("SELECT count(*) FROM pragma_module_list WHERE name IN ('fts5', 'fts5vocab', 'rtree', 'geopoly')")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Finalize()
	if row, err := s.Step(); err != nil || !row {
		t.Fatal(row, err)
	}
	return s.ColumnInt64(0)
}

func (db *DB) modules(t *testing.T) int64 {
	t.Helper()
	db.mu.Lock()
	defer db.mu.Unlock()
	return extensionModules(t, db.conn)
}

func userExec(t *testing.T, db *DB, query string) [][]any {
	t.Helper()
	c, err := db.Exec(query)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	rows, err := c.Raw()
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return rows
}

// TestExtensions_Deferred: a database storage opens registers FTS5 and
// R-Tree only when user SQL first runs (or DeleteAll), reads and writes KV
// entries without them while its schema holds their tables, and then uses
// those tables as usual; other connections get them at open.
func TestExtensions_Deferred(t *testing.T) {
	c, err := OpenConn(":memory:", sqlite.OpenReadWrite|sqlite.OpenCreate|sqlite.OpenMemory)
	if err != nil {
		t.Fatal(err)
	}
	if n := extensionModules(t, c); n != 4 {
		t.Errorf("a connection of another VFS has %d of the 4 modules at open", n)
	}
	CloseConn(c)

	open := reopener(t)
	db := open()
	deferred := deferring(db.raw.db)
	if !deferred && runtime.GOOS == "linux" {
		t.Fatal("a database on the WAL VFS registered the extensions at open")
	}
	want := func(when string, n int64) {
		t.Helper()
		if !deferred {
			n = 4
		}
		if got := db.modules(t); got != n {
			t.Errorf("%s: %d of the 4 modules registered, want %d", when, got, n)
		}
	}
	want("after Open", 0)
	if err := db.Put("k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	want("after Put", 0)
	userExec(t, db, "CREATE TABLE plain (a)")
	want("after user SQL", 4)
	userExec(t, db, "CREATE VIRTUAL TABLE docs USING fts5(body)")
	userExec(t, db, "INSERT INTO docs (body) VALUES ('the quick brown fox'), ('a lazy dog')")
	userExec(t, db, "CREATE VIRTUAL TABLE boxes USING rtree(id, x0, x1)")
	userExec(t, db, "INSERT INTO boxes VALUES (1, 0, 10), (2, 20, 30)")
	if _, err := db.Commit(); err != nil {
		t.Fatal(err)
	}
	db.Close()

	// Reopened: KV first, with the virtual tables in the schema.
	db = open()
	if v, ok, err := db.Get("k"); err != nil || !ok || string(v) != "v" {
		t.Fatalf("Get = %q, %v, %v", v, ok, err)
	}
	want("after reopening and Get", 0)
	if rows := userExec(t, db, "SELECT rowid FROM docs WHERE docs MATCH 'fox'"); len(rows) != 1 || rows[0][0] != int64(1) {
		t.Errorf("fts5 match after reopening: %v", rows)
	}
	if rows := userExec(t, db, "SELECT id FROM boxes WHERE x1 >= 25 AND x0 <= 25"); len(rows) != 1 || rows[0][0] != int64(2) {
		t.Errorf("rtree query after reopening: %v", rows)
	}
	db.Close()

	// Reopened: DeleteAll first drops the virtual tables.
	db = open()
	if err := db.DeleteAll(); err != nil {
		t.Fatal(err)
	}
	want("after DeleteAll", 4)
	if _, err := db.Commit(); err != nil {
		t.Fatal(err)
	}
	if rows := userExec(t, db, "SELECT name FROM sqlite_schema WHERE name NOT LIKE '\\_durable%' ESCAPE '\\'"); len(rows) != 0 {
		t.Errorf("after DeleteAll the schema holds %v", rows)
	}
	db.Close()
}
