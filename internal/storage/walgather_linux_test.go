package storage

import (
	"errors"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
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
