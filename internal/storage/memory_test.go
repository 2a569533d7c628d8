package storage_test

import (
	"bytes"
	"path/filepath"
	"strconv"
	"testing"

	"zombiezen.com/go/sqlite"

	"github.com/durable-go/durable/internal/durability"
	"github.com/durable-go/durable/internal/storage"
)

// TestReleaseMemory_KeepsData releases memory after every turn of a
// workload that fills the WAL past one WAL index block (4096 frames) and
// past autocheckpoints, and checks every row after every release: the WAL
// index pages ReleaseMemory gives back must read back as they were.
func TestReleaseMemory_KeepsData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	opts := storage.Options{Durability: newGroup(t, durability.NoSync)}
	db, err := storage.Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	exec(t, db, "CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB NOT NULL)")
	commit(t, db)
	db.ReleaseMemory()

	val := func(id, round int) []byte {
		return bytes.Repeat([]byte{byte(id), byte(round)}, 100+id%50)
	}
	want := map[int]int{} // id -> round of its last write
	check := func(when string) {
		t.Helper()
		for id, round := range want {
			rows := exec(t, db, "SELECT v FROM t WHERE id = ?", id)
			if len(rows) != 1 || !bytes.Equal(rows[0][0].([]byte), val(id, round)) {
				t.Fatalf("%s: row %d: got %v, want round %d", when, id, rows, round)
			}
		}
		if n := queryInt(t, db, "SELECT count(*) FROM t"); n != int64(len(want)) {
			t.Fatalf("%s: %d rows, want %d", when, n, len(want))
		}
		if v, ok, err := db.Get("round"); err != nil || !ok || len(v) == 0 {
			t.Fatalf("%s: Get = %q, %v, %v", when, v, ok, err)
		}
		commit(t, db)
	}

	// Small turns: a few frames each, over more than one autocheckpoint.
	for round := range 150 {
		for j := range 10 {
			id := (round*7 + j*13) % 300
			exec(t, db, "INSERT OR REPLACE INTO t (id, v) VALUES (?, ?)", id, val(id, round))
			want[id] = round
		}
		if err := db.Put("round", []byte(strconv.Itoa(round))); err != nil {
			t.Fatal(err)
		}
		commit(t, db)
		db.ReleaseMemory()
		if round%10 == 0 {
			check("round " + strconv.Itoa(round))
			db.ReleaseMemory()
		}
	}
	// One turn that writes more than 4096 pages: the WAL index grows a
	// second block.
	big := bytes.Repeat([]byte("x"), 3000)
	for id := 1000; id < 1000+4500; id++ {
		exec(t, db, "INSERT INTO t (id, v) VALUES (?, ?)", id, big)
	}
	exec(t, db, "DELETE FROM t WHERE id >= 1000")
	commit(t, db)
	db.ReleaseMemory()
	check("after the big turn")
	db.ReleaseMemory()
	db.ReleaseMemory() // twice in a row is fine
	check("after releasing twice")

	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	c, err := storage.OpenConn(path, sqlite.OpenReadWrite)
	if err != nil {
		t.Fatal(err)
	}
	defer storage.CloseConn(c)
	s, _, err := c.PrepareTransient("PRAGMA integrity_check")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Finalize()
	if row, err := s.Step(); err != nil || !row || s.ColumnText(0) != "ok" {
		t.Fatalf("integrity_check: %v %v %q", row, err, s.ColumnText(0))
	}
}

// TestReleaseMemory_OpenCursor: statements held by open cursors survive
// ReleaseMemory, and the cursor reads on.
func TestReleaseMemory_OpenCursor(t *testing.T) {
	db := openDB(t, storage.Options{})
	seedRows(t, db, 50)
	cur, err := db.Exec("SELECT id FROM t ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for i := 0; cur.Next(); i++ {
		var id int64
		if err := cur.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
		if i == 10 {
			db.ReleaseMemory()
		}
	}
	if err := cur.Err(); err != nil {
		t.Fatal(err)
	}
	if len(ids) != 50 || ids[49] != 49 {
		t.Fatalf("read %d ids, last %v; want 50, 49", len(ids), ids[len(ids)-1:])
	}
	commit(t, db)
	db.ReleaseMemory()
	if n := queryInt(t, db, "SELECT count(*) FROM t"); n != 50 {
		t.Fatalf("count = %d, want 50", n)
	}
}

// TestReleaseMemory_InTransaction: releasing in the middle of a turn (the
// engine does not, but nothing forbids it) keeps the turn's writes.
func TestReleaseMemory_InTransaction(t *testing.T) {
	db := openDB(t, storage.Options{})
	seedRows(t, db, 5)
	exec(t, db, "INSERT INTO t (id) VALUES (100)")
	db.ReleaseMemory()
	exec(t, db, "INSERT INTO t (id) VALUES (101)")
	if err := db.Rollback(); err != nil {
		t.Fatal(err)
	}
	if n := queryInt(t, db, "SELECT count(*) FROM t"); n != 5 {
		t.Fatalf("count after rollback = %d, want 5", n)
	}
	exec(t, db, "INSERT INTO t (id) VALUES (100)")
	db.ReleaseMemory()
	commit(t, db)
	db.ReleaseMemory()
	if n := queryInt(t, db, "SELECT count(*) FROM t"); n != 6 {
		t.Fatalf("count after commit = %d, want 6", n)
	}
}

func seedRows(tb testing.TB, db *storage.DB, n int) {
	tb.Helper()
	exec(tb, db, "CREATE TABLE t (id INTEGER PRIMARY KEY)")
	for i := range n {
		exec(tb, db, "INSERT INTO t (id) VALUES (?)", i)
	}
	commit(tb, db)
}
