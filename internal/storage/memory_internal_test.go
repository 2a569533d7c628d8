//go:build linux

package storage

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
	"modernc.org/libc"
	lib "modernc.org/sqlite/lib"

	"github.com/durable-go/durable/internal/durability"
)

// resident reports, for each OS page of b (which must start on a page
// boundary), whether it is in the resident set.
func resident(t *testing.T, b []byte) []bool {
	t.Helper()
	ps := os.Getpagesize()
	vec := make([]byte, (len(b)+ps-1)/ps)
	_, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)), uintptr(unsafe.Pointer(unsafe.SliceData(vec))))
	if errno != 0 {
		t.Fatalf("mincore: %v", errno)
	}
	r := make([]bool, len(vec))
	for i, v := range vec {
		r[i] = v&1 != 0
	}
	return r
}

func TestTrimZeroPages(t *testing.T) {
	tls := libc.NewTLS()
	defer tls.Close()
	ps := os.Getpagesize()
	const n = 40 << 10 // served by its own mapping
	p := libc.Xmalloc(tls, n)
	if p == 0 {
		t.Fatal("malloc failed")
	}
	defer libc.Xfree(tls, p)
	b := libc.GoBytes(p, n)
	clear(b)
	// Pages with data: the ones holding the first and last bytes (which
	// are partial, unless b is page aligned) and the third whole page.
	first := (int(p)+ps-1)&^(ps-1) - int(p)
	b[0], b[n-1] = 1, 2
	b[first+2*ps+100] = 3
	want := append([]byte(nil), b...)

	trimZeroPages(b)

	whole := b[first : first+((n-first)/ps)*ps]
	for i, in := range resident(t, whole) {
		if wantIn := i == 2; in != wantIn {
			t.Errorf("whole page %d: resident %v, want %v", i, in, wantIn)
		}
	}
	if string(b) != string(want) {
		t.Fatal("contents changed")
	}
}

// openInternal opens a new database with a NoSync group, closed at the
// end of the test.
func openInternal(t *testing.T) *DB {
	t.Helper()
	g := durability.New(durability.Config{Mode: durability.NoSync})
	t.Cleanup(g.Close)
	db, err := Open(filepath.Join(t.TempDir(), "db"), Options{Durability: g})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestReleaseMemory_Internals(t *testing.T) {
	db := openInternal(t)
	if err := db.Put("k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Commit(); err != nil {
		t.Fatal(err)
	}

	// The path to the WAL index must work with this build of SQLite, or
	// trimWALIndex would silently do nothing.
	blocks := db.raw.walIndexBlocks()
	if len(blocks) != 1 {
		t.Fatalf("WAL index blocks: %d, want 1", len(blocks))
	}
	oldTLS := db.raw.tls
	db.ReleaseMemory()

	if db.raw.tls == oldTLS || rawOf(db.conn) != (rawConn{tls: db.raw.tls, db: db.raw.db}) {
		t.Error("ReleaseMemory did not renew the connection's TLS")
	}
	if len(db.internal) != 0 || len(db.cache.m) != 0 {
		t.Errorf("statements left: %d internal, %d cached", len(db.internal), len(db.cache.m))
	}
	if !db.noLookaside {
		t.Error("lookaside arena not released")
	}
	checkResident := func(when string) {
		t.Helper()
		ps := os.Getpagesize()
		block := libc.GoBytes(blocks[0], walIndexBlockSize)
		first := (int(blocks[0])+ps-1)&^(ps-1) - int(blocks[0])
		whole := block[first : first+((len(block)-first)/ps)*ps]
		in := 0
		for _, r := range resident(t, whole) {
			if r {
				in++
			}
		}
		// A few commits set a few hash slots, on one or two pages.
		if in > 2 {
			t.Errorf("%s: %d of %d whole pages of the WAL index resident, want at most 2", when, in, len(whole)/ps)
		}
	}
	checkResident("after ReleaseMemory")

	if v, ok, err := db.Get("k"); err != nil || !ok || string(v) != "v" {
		t.Fatalf("Get after ReleaseMemory = %q, %v, %v", v, ok, err)
	}
	if db.noLookaside {
		t.Error("lookaside arena not restored by the next turn")
	}
	if _, err := db.Commit(); err != nil {
		t.Fatal(err)
	}
	// A write after a release: SQLite clears the index when it restarts
	// the WAL after a checkpoint, which makes its pages resident again.
	for i := range 1100 { // past wal_autocheckpoint (1000 frames)
		if err := db.Put("k"+strconv.Itoa(i%10), []byte("v")); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	db.ReleaseMemory()
	if b := db.raw.walIndexBlocks(); len(b) != 1 || b[0] != blocks[0] {
		t.Fatalf("WAL index blocks moved: %x, was %x", b, blocks)
	}
	checkResident("after writes and a second ReleaseMemory")
}

// TestCloseSpilledStmtJournal: with exclusive locking a statement journal
// that spilled to a file keeps it after the transaction; closing it leaves
// the next transactions working, and journalInMemory closes it for a small
// database.
func TestCloseSpilledStmtJournal(t *testing.T) {
	db := openInternal(t)
	run := func(q string) {
		t.Helper()
		if err := execTransient(db.conn, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	files := func() int {
		t.Helper()
		n, err := OpenTempFiles()
		if err != nil {
			t.Skipf("cannot count open files: %v", err)
		}
		return n
	}
	base := files()
	run("CREATE TABLE t (x INTEGER NOT NULL CHECK (x < 100000), pad TEXT NOT NULL)")
	run("WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 1999) INSERT INTO t SELECT i % 100, printf('%200s', '') FROM n")
	spill := func() {
		t.Helper()
		cAt[lib.Tsqlite3](db.raw.db).Ftemp_store = 0 // journals spill past stmtJournalSpill
		run("BEGIN")
		run("UPDATE t SET x = x + 1")
		run("COMMIT")
		if got := files() - base; got != 1 {
			t.Fatalf("after a spilling transaction: %d temporary files, want 1", got)
		}
	}
	spill()
	if !db.raw.closeSpilledStmtJournal() || files() != base {
		t.Fatal("closeSpilledStmtJournal did not close the spilled journal")
	}
	if db.raw.closeSpilledStmtJournal() {
		t.Fatal("closeSpilledStmtJournal closed something twice")
	}
	spill()
	if !db.raw.journalInMemory() || files() != base {
		t.Fatal("journalInMemory of a small database left the spilled journal open")
	}
	var sum int64
	s, _, err := db.conn.PrepareTransient("SELECT sum(x) FROM t")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Finalize()
	if ok, err := s.Step(); !ok || err != nil {
		t.Fatalf("Step = %v, %v", ok, err)
	}
	if sum = s.ColumnInt64(0); sum != 20*4950+2*2000 {
		t.Fatalf("sum(x) = %d, want %d", sum, 20*4950+2*2000)
	}
}
