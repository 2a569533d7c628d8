package storage

import (
	"os"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// TestWALScan: reopening a database whose WAL holds many commits reads
// the WAL for the index rebuild in a few large reads, not one per frame;
// the data read back is the data committed, also after more commits on
// top, after the WAL ends in a torn frame, and when the large reads fail
// (the scan falls back to SQLite's reads).
func TestWALScan(t *testing.T) {
	const commits = 300 // 1.2 MB of frames: five reads of walReadAhead and one at the end
	open := reopener(t)
	db := open()
	path := db.Path()
	put := func(db *DB, from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			if err := db.Put("k"+strconv.Itoa(i), []byte(strconv.Itoa(i))); err != nil {
				t.Fatal(err)
			}
			if _, err := db.Commit(); err != nil {
				t.Fatal(err)
			}
		}
	}
	check := func(db *DB, n int) {
		t.Helper()
		for i := range n {
			v, ok, err := db.Get("k" + strconv.Itoa(i))
			if err != nil || !ok || string(v) != strconv.Itoa(i) {
				t.Fatalf("Get(k%d) = %q, %v, %v", i, v, ok, err)
			}
		}
		if got, err := db.List(ListOptions{}); err != nil || len(got) != n {
			t.Fatalf("List: %d entries, %v; want %d", len(got), err, n)
		}
	}
	put(db, 0, commits)
	db.Close()
	if fi, err := os.Stat(path + "-wal"); err != nil || fi.Size() < commits*4096 {
		t.Fatalf("WAL: %v, %v; want %d frames at least", fi, err, commits)
	}

	reads := 0
	walPread = func(fd int, b []byte, off int64) (int, error) {
		reads++
		return unix.Pread(fd, b, off)
	}
	defer func() { walPread = unix.Pread }()
	db = open()
	check(db, commits)
	if want := commits*4120/walReadAhead + 2; reads < 1 || reads > want { // +1: the read that finds the end
		t.Errorf("opening read the WAL with %d large reads, want 1 to %d", reads, want)
	}

	// More commits on top of the scanned WAL, then a crash that tears
	// the last frame.
	put(db, commits, commits+2)
	db.Close()
	fi, err := os.Stat(path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path+"-wal", fi.Size()-100); err != nil {
		t.Fatal(err)
	}
	db = open()
	check(db, commits+1)
	if _, ok, _ := db.Get("k" + strconv.Itoa(commits+1)); ok {
		t.Error("the commit in the torn frame survived")
	}
	db.Close()

	// Large reads that fail leave SQLite's own reads to do the work.
	walPread = func(fd int, b []byte, off int64) (int, error) { return 0, unix.EIO }
	db = open()
	defer db.Close()
	check(db, commits+1)
}
