package storage_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/durable-go/durable/internal/durability"
	"github.com/durable-go/durable/internal/storage"
	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"
)

// TestWALGather: the WAL that Open's VFS gathers and writes in one piece
// per commit holds what SQLite wrote, also for the transactions that take
// SQLite's less common paths: one larger than the page cache, which
// writes frames before its commit and then overwrites frames of pages it
// changes again (rewriting checksums from the first such frame on), one
// that restarts a checkpointed WAL, and many small ones. The node journal
// (which copies the gathered bytes instead of reading them back) is on.
// After reopening, every row reads back and integrity_check is ok.
func TestWALGather(t *testing.T) {
	dir := t.TempDir()
	g := durability.New(durability.Config{Mode: durability.Fsync, Journal: filepath.Join(dir, "journal"), Root: dir})
	defer g.Close()
	path := filepath.Join(dir, "db")
	opts := storage.Options{Durability: g, CacheSize: 64 << 10} // 16 pages
	db := openAt(t, path, opts)
	exec(t, db, "CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
	commit(t, db)
	want := map[int][]byte{}
	put := func(id int, fill byte, n int) {
		v := bytes.Repeat([]byte{fill}, n)
		exec(t, db, "INSERT OR REPLACE INTO t VALUES (?, ?)", id, v)
		want[id] = v
	}
	// About 100 pages in one transaction: it spills past the cache.
	for i := range 400 {
		put(i, byte(i), 1000)
	}
	// Change rows whose pages were spilled already.
	for i := 0; i < 400; i += 7 {
		put(i, byte(i+1), 1000)
	}
	commit(t, db)
	// Small commits, past SQLite's automatic checkpoint (1,000 pages),
	// after which the WAL restarts from its beginning.
	// 1,500 commits of two pages or more: SQLite's WAL would hold 3,000
	// frames without one.
	for i := range 1500 {
		put(1000+i, byte(i), 3000)
		commit(t, db)
	}
	if fi, err := os.Stat(path + "-wal"); err != nil || fi.Size() > 1100*(4096+24) {
		t.Fatalf("WAL: %v, %v; want a WAL restarted after a checkpoint", fi.Size(), err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db = openAt(t, path, opts)
	rows := exec(t, db, "SELECT id, v FROM t")
	if len(rows) != len(want) {
		t.Fatalf("%d rows after reopening, want %d", len(rows), len(want))
	}
	for _, r := range rows {
		id := int(r[0].(int64))
		if !bytes.Equal(r[1].([]byte), want[id]) {
			t.Errorf("row %d differs after reopening", id)
		}
	}
	db.Close()
	c, err := storage.OpenConn(path, sqlite.OpenReadOnly)
	if err != nil {
		t.Fatal(err)
	}
	defer storage.CloseConn(c)
	var res []string
	err = sqlitex.ExecuteTransient(c, "PRAGMA integrity_check", &sqlitex.ExecOptions{
		ResultFunc: func(s *sqlite.Stmt) error { res = append(res, s.ColumnText(0)); return nil },
	})
	if err != nil || fmt.Sprint(res) != "[ok]" {
		t.Fatalf("integrity_check: %v %v", res, err)
	}
}
