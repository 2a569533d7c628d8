package durability_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/durable-go/durable/internal/durability"
)

func newFile(t *testing.T, g *durability.Group, name string) *durability.File {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := g.File(path, dir)
	t.Cleanup(func() { f.Close() })
	return f
}

func TestGroup_GroupCommit(t *testing.T) {
	release := make(chan struct{})
	var syncs atomic.Int64
	g := durability.New(durability.Config{SyncFile: func(f *os.File) error {
		if syncs.Add(1) == 1 {
			<-release // hold the first sync so commits pile up behind it
		}
		return f.Sync()
	}})
	defer g.Close()
	f := newFile(t, g, "wal")
	first := f.Commit()
	var tickets []durability.Ticket
	for range 50 {
		tickets = append(tickets, f.Commit())
	}
	if first.Durable() {
		t.Fatal("durable before its sync finished")
	}
	close(release)
	for _, tk := range append(tickets, first) {
		if err := tk.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if got := syncs.Load(); got > 2 {
		t.Fatalf("syncs = %d for 51 commits, want at most 2 (one in flight, one for the rest)", got)
	}
	if st := g.Stats(); st.Commits != 51 {
		t.Fatalf("Stats.Commits = %d", st.Commits)
	}
}

func TestGroup_FailurePoisons(t *testing.T) {
	boom := errors.New("EIO")
	g := durability.New(durability.Config{SyncFile: func(*os.File) error { return boom }})
	defer g.Close()
	f := newFile(t, g, "wal")
	if err := f.Commit().Wait(context.Background()); !errors.Is(err, boom) {
		t.Fatalf("Wait = %v, want the sync error", err)
	}
	// Every later commit fails too: the file must be reopened.
	if err := f.Commit().Wait(context.Background()); !errors.Is(err, boom) {
		t.Fatalf("later Wait = %v, want the sync error", err)
	}
	if !errors.Is(f.Err(), boom) {
		t.Fatalf("Err = %v", f.Err())
	}
}

// Ensure a sync that fails because the file system is full (as fsync does
// when delayed allocation finds no space) is reported as ErrDiskFull, and
// that other failures are not.
func TestGroup_DiskFull(t *testing.T) {
	for _, c := range []struct {
		err  error
		full bool
	}{
		{&os.PathError{Op: "fsync", Path: "wal", Err: syscall.ENOSPC}, true},
		{&os.PathError{Op: "fsync", Path: "wal", Err: syscall.EDQUOT}, true},
		{&os.PathError{Op: "fsync", Path: "wal", Err: syscall.EIO}, false},
	} {
		g := durability.New(durability.Config{SyncFile: func(*os.File) error { return c.err }})
		f := newFile(t, g, "wal")
		err := f.Commit().Wait(context.Background())
		if !errors.Is(err, c.err) || errors.Is(err, durability.ErrDiskFull) != c.full {
			t.Errorf("sync error %v: Wait = %v, want it wrapped, ErrDiskFull %v", c.err, err, c.full)
		}
		f.Close()
		g.Close()
	}
}

func TestGroup_NoSync(t *testing.T) {
	g := durability.New(durability.Config{Mode: durability.NoSync, SyncFile: func(*os.File) error {
		t.Error("NoSync called SyncFile")
		return nil
	}})
	defer g.Close()
	f := newFile(t, g, "wal")
	if tk := f.Commit(); !tk.Durable() {
		t.Fatal("NoSync ticket not released at once")
	}
}

func TestGroup_Batch(t *testing.T) {
	var mu sync.Mutex
	var batchSizes []int
	hold := make(chan struct{})
	inside := make(chan struct{})
	var once sync.Once
	g := durability.New(durability.Config{
		Workers:        1,
		BatchThreshold: 3,
		SyncFile: func(f *os.File) error {
			once.Do(func() { close(inside); <-hold }) // keep the only worker busy
			return f.Sync()
		},
		SyncFS: func(files []*os.File) error {
			mu.Lock()
			batchSizes = append(batchSizes, len(files))
			mu.Unlock()
			for _, f := range files {
				if err := f.Sync(); err != nil {
					return err
				}
			}
			return nil
		},
	})
	defer g.Close()
	busy := newFile(t, g, "busy")
	first := busy.Commit()
	<-inside
	var tickets []durability.Ticket
	for i := range 5 {
		f := newFile(t, g, "wal"+string(rune('a'+i)))
		tickets = append(tickets, f.Commit())
	}
	close(hold)
	for _, tk := range append(tickets, first) {
		if err := tk.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(batchSizes) != 1 || batchSizes[0] != 5 {
		t.Fatalf("batches = %v, want one of 5 files", batchSizes)
	}
}

func TestGroup_WaitCancelled(t *testing.T) {
	block := make(chan struct{})
	g := durability.New(durability.Config{SyncFile: func(f *os.File) error { <-block; return nil }})
	f := newFile(t, g, "wal")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := f.Commit().Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait = %v, want Canceled", err)
	}
	close(block)
	g.Close()
}

// TestGroup_DirectorySyncedOncePerFile: a file's directory is fsynced
// before its first commit is durable; a File opened again later for the
// same file (an object re-activated) skips it, and a new file at the same
// path (another inode) does not.
func TestGroup_DirectorySyncedOncePerFile(t *testing.T) {
	var dirSyncs atomic.Int64
	g := durability.New(durability.Config{SyncDir: func(dir string) error {
		dirSyncs.Add(1)
		return durability.SyncDir(dir)
	}})
	defer g.Close()
	dir := t.TempDir()
	path := filepath.Join(dir, "wal")
	if err := os.WriteFile(path, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	commit := func() {
		t.Helper()
		f := g.File(path, dir)
		for range 3 {
			if err := f.Commit().Wait(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	commit()
	if n := dirSyncs.Load(); n != 1 {
		t.Fatalf("directory synced %d times for a new file, want 1", n)
	}
	commit()
	if n := dirSyncs.Load(); n != 1 {
		t.Fatalf("directory synced %d times after reopening the same file, want still 1", n)
	}
	// Replace the file: a new directory entry, which must be synced.
	tmp := filepath.Join(dir, "tmp")
	if err := os.WriteFile(tmp, []byte("y"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	commit()
	if n := dirSyncs.Load(); n != 2 {
		t.Fatalf("directory synced %d times after the file was replaced, want 2", n)
	}
}
