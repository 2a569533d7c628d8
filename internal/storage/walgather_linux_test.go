package storage

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/durable-go/durable/internal/durability"
	"golang.org/x/sys/unix"
	"modernc.org/libc"
	lib "modernc.org/sqlite/lib"
)

// TestWALGatherWriteFailure: when the gathered WAL write of a commit
// fails, the commit fails (SQLite rolls the transaction back), the file
// refuses every later write instead of retrying the lost bytes, and after
// reopening the database holds exactly the commits that succeeded.
func TestWALGatherWriteFailure(t *testing.T) {
	open := reopener(t)
	put := func(db *DB, k string) error {
		if err := db.Put(k, []byte(k)); err != nil {
			return err
		}
		_, err := db.Commit()
		return err
	}
	db := open()
	if err := put(db, "before"); err != nil {
		t.Fatal(err)
	}

	writes := 0
	walPwrite = func(fd int, b []byte, off int64) (int, error) {
		writes++
		return 0, unix.ENOSPC
	}
	defer func() { walPwrite = unix.Pwrite }()
	err := put(db, "failed")
	if err == nil {
		t.Fatal("commit whose WAL write failed succeeded")
	}
	t.Logf("commit: %v", err)
	var se *SQLError
	var le *LimitError
	if !errors.Is(err, ErrDiskFull) || !errors.As(err, &se) || !strings.Contains(se.Error(), "SQLITE_FULL") || errors.As(err, &le) {
		t.Errorf("commit error %v, want ErrDiskFull and an SQLError for SQLITE_FULL, not the size limit", err)
	}
	walPwrite = unix.Pwrite
	if err := put(db, "after"); err == nil {
		t.Error("a commit on the same connection after a failed WAL write succeeded; want the file to stay failed")
	}
	if writes != 1 {
		t.Errorf("%d WAL writes attempted while failing, want 1 (no retry of lost bytes)", writes)
	}
	db.Close()

	db = open()
	defer db.Close()
	for k, want := range map[string]bool{"before": true, "failed": false, "after": false} {
		_, ok, err := db.Get(k)
		if err != nil || ok != want {
			t.Errorf("after reopening, Get(%q) = %v, %v; want %v", k, ok, err, want)
		}
	}
	if err := put(db, "again"); err != nil {
		t.Errorf("commit after reopening: %v", err)
	}
}

// TestFullPathname: a database is named by the absolute, clean path Open
// was given, without resolving symbolic links in the folders above it (no
// lstat per component), so its WAL is the path durability journals; any
// other path still goes through unix-none's resolution.
func TestFullPathname(t *testing.T) {
	for _, c := range []struct {
		path string
		want bool
	}{
		{"/a", true}, {"/a/b-c.db", true}, {"/a/.b/c", true}, {"/a/b..", true},
		{"", false}, {"/", false}, {"a/b", false}, {"/a/", false}, {"/a//b", false},
		{"/a/./b", false}, {"/a/../b", false}, {"/a/.", false}, {"/..", false},
	} {
		if got := cleanAbs([]byte(c.path)); got != c.want {
			t.Errorf("cleanAbs(%q) = %v, want %v", c.path, got, c.want)
		}
	}

	root := t.TempDir()
	real := filepath.Join(root, "real")
	if err := os.Mkdir(real, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(root, "link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	g := durability.New(durability.Config{Mode: durability.NoSync})
	defer g.Close()
	db, err := Open(filepath.Join(link, "db"), Options{Durability: g})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := db.raw.filename(), filepath.Join(link, "db"); got != want {
		t.Errorf("SQLite names the database %q, want %q as given", got, want)
	}
	if err := db.Put("k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Commit(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(real, "db-wal")); err != nil {
		t.Errorf("WAL beside the database: %v", err)
	}
	db.Close()
	db, err = Open(filepath.Join(real, "db"), Options{Durability: g})
	if err != nil {
		t.Fatal(err)
	}
	if v, ok, err := db.Get("k"); err != nil || !ok || string(v) != "v" {
		t.Errorf("Get through the real folder = %q, %v, %v; want \"v\"", v, ok, err)
	}
	db.Close()

	// A path that is not clean is resolved by unix-none.
	tls := libc.NewTLS()
	defer tls.Close()
	in, err := libc.CString(link + "/../real/db")
	if err != nil {
		t.Fatal(err)
	}
	defer libc.Xfree(tls, in)
	const n = 4096
	out := libc.Xmalloc(tls, n)
	defer libc.Xfree(tls, out)
	if rc := walFullPathname(tls, 0, in, n, out); rc&0xff != lib.SQLITE_OK {
		t.Fatalf("walFullPathname: rc %d", rc)
	}
	if got, want := libc.GoString(out), filepath.Join(real, "db"); got != want {
		t.Errorf("walFullPathname(%q) = %q, want %q", link+"/../real/db", got, want)
	}
}
