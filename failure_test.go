package durable_test

import (
	"context"
	"errors"
	"os"
	"sync/atomic"
	"testing"

	"github.com/durable-go/durable"
)

// Faulty is an object whose writes fail at commit or cannot be made
// durable, to check that the caller gets a typed error and the object is
// reset (DESIGN §1.5).
type Faulty struct {
	st  *durable.State
	gen int64
}

type faultyEnv struct{ built atomic.Int64 }

func newFaulty(st *durable.State, e *faultyEnv) (*Faulty, error) {
	_, err := st.Storage().SQL().Exec(`
		CREATE TABLE IF NOT EXISTS parent (id INTEGER PRIMARY KEY);
		CREATE TABLE IF NOT EXISTS child (id INTEGER PRIMARY KEY,
			parent INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED);
		CREATE TABLE IF NOT EXISTS uniq (k TEXT PRIMARY KEY)`)
	return &Faulty{st: st, gen: e.built.Add(1)}, err
}

func (f *Faulty) Gen(ctx context.Context) (int64, error) { return f.gen, nil }

// Write inserts a row into uniq.
func (f *Faulty) Write(ctx context.Context, k string) error {
	_, err := f.st.Storage().SQL().Exec("INSERT INTO uniq VALUES (?)", k)
	return err
}

// Count returns the rows of uniq and child.
func (f *Faulty) Count(ctx context.Context) (int64, error) {
	var n int64
	cur, err := f.st.Storage().SQL().Exec("SELECT (SELECT count(*) FROM uniq) + (SELECT count(*) FROM child)")
	if err != nil {
		return 0, err
	}
	return n, cur.One(&n)
}

// Orphan inserts a child whose parent does not exist: the deferred
// foreign key fails at COMMIT, after the handler returned nil.
func (f *Faulty) Orphan(ctx context.Context) error {
	_, err := f.st.Storage().SQL().Exec("INSERT INTO child VALUES (1, 42)")
	return err
}

// SwallowAbort writes a row, then makes a statement abort the whole
// transaction (INSERT OR ROLLBACK on a duplicate key), ignores the error
// and returns nil.
func (f *Faulty) SwallowAbort(ctx context.Context) error {
	s := f.st.Storage().SQL()
	if _, err := s.Exec("INSERT INTO uniq VALUES ('a')"); err != nil {
		return err
	}
	_, err := s.Exec("INSERT OR ROLLBACK INTO uniq VALUES ('a')")
	var aborted *durable.TxAbortedError
	if !errors.As(err, &aborted) {
		return errors.New("want a TxAbortedError, got " + errString(err))
	}
	return nil
}

// WriteAndSync writes a row, calls Sync and returns what Sync returned as
// a string (the handler itself succeeds).
func (f *Faulty) WriteAndSync(ctx context.Context, k string) (string, error) {
	if _, err := f.st.Storage().SQL().Exec("INSERT INTO uniq VALUES (?)", k); err != nil {
		return "", err
	}
	err := f.st.Storage().Sync(ctx)
	switch {
	case err == nil:
		return "nil", nil
	case errors.Is(err, durable.ErrDurability):
		return "ErrDurability", nil
	}
	return err.Error(), nil
}

// faultyObject opens a runtime whose fsyncs fail while *failing is set and
// returns a Faulty object in it, with the generation of its instance.
func faultyObject(t *testing.T, failing *atomic.Bool) (*durable.Stub[Faulty], int64) {
	t.Helper()
	errInjected := errors.New("injected fsync failure")
	syncFile := func(f *os.File) error {
		if failing.Load() {
			return errInjected
		}
		return f.Sync()
	}
	rt, err := durable.OpenWithSyncHooks(durable.Options{Dir: t.TempDir(), Durability: durable.Fsync}, syncFile, nil, 1000)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	stub := durable.MustRegister(rt, "Faulty", newFaulty, &faultyEnv{}).GetByName("f")
	gen, err := durable.Call0(t.Context(), stub, (*Faulty).Gen)
	if err != nil {
		t.Fatal(err)
	}
	return stub, gen
}

func TestFailedFsync_ErrorAndReset(t *testing.T) {
	var failing atomic.Bool
	stub, gen := faultyObject(t, &failing)
	failing.Store(true)
	err := durable.Do1(t.Context(), stub, (*Faulty).Write, "lost")
	if !errors.Is(err, durable.ErrDurability) || !durable.IsRetryable(err) {
		t.Fatalf("Write with a failing fsync: %v, want a retryable ErrDurability", err)
	}
	failing.Store(false)
	// The object is reset before its next event, which then works.
	if g, err := durable.Call0(t.Context(), stub, (*Faulty).Gen); err != nil || g != gen+1 {
		t.Fatalf("after a failed fsync: instance %d, %v; want a new instance %d", g, err, gen+1)
	}
	if err := durable.Do1(t.Context(), stub, (*Faulty).Write, "kept"); err != nil {
		t.Fatalf("Write after the reset: %v", err)
	}
}

func TestFailedFsync_InSync(t *testing.T) {
	var failing atomic.Bool
	stub, gen := faultyObject(t, &failing)
	failing.Store(true)
	// The handler returns nil after Sync failed, but its turn's writes
	// are gone: the call fails with the reset and its cause.
	_, err := durable.Call1(t.Context(), stub, (*Faulty).WriteAndSync, "x")
	failing.Store(false)
	if !errors.Is(err, durable.ErrObjectReset) || !errors.Is(err, durable.ErrDurability) {
		t.Fatalf("the call: %v, want ErrObjectReset caused by ErrDurability", err)
	}
	if g, err := durable.Call0(t.Context(), stub, (*Faulty).Gen); err != nil || g != gen+1 {
		t.Fatalf("after a failed Sync: instance %d, %v; want a new instance %d", g, err, gen+1)
	}
}

func TestFailedCommit_DeferredConstraint(t *testing.T) {
	stub, gen := faultyObject(t, new(atomic.Bool))
	err := durable.Do0(t.Context(), stub, (*Faulty).Orphan)
	var sqlErr *durable.SQLError
	if !errors.Is(err, durable.ErrCommit) || !errors.As(err, &sqlErr) || !sqlErr.IsConstraint() {
		t.Fatalf("Orphan: %v, want ErrCommit wrapping a constraint SQLError", err)
	}
	if durable.IsRetryable(err) || errors.Is(err, durable.ErrDurability) {
		t.Fatalf("Orphan: %v is an error of the object's writes, not retryable nor ErrDurability", err)
	}
	if g, _ := durable.Call0(t.Context(), stub, (*Faulty).Gen); g != gen+1 {
		t.Fatalf("instance %d after a failed commit, want %d (reset)", g, gen+1)
	}
	if n, err := durable.Call0(t.Context(), stub, (*Faulty).Count); err != nil || n != 0 {
		t.Fatalf("rows = %d, %v; want 0", n, err)
	}
}

func TestFailedCommit_SwallowedAbort(t *testing.T) {
	stub, gen := faultyObject(t, new(atomic.Bool))
	err := durable.Do0(t.Context(), stub, (*Faulty).SwallowAbort)
	var aborted *durable.TxAbortedError
	if !errors.Is(err, durable.ErrCommit) || !errors.As(err, &aborted) {
		t.Fatalf("SwallowAbort: %v, want ErrCommit wrapping a TxAbortedError", err)
	}
	if g, _ := durable.Call0(t.Context(), stub, (*Faulty).Gen); g != gen+1 {
		t.Fatalf("instance %d, want %d (reset)", g, gen+1)
	}
	if n, _ := durable.Call0(t.Context(), stub, (*Faulty).Count); n != 0 {
		t.Fatalf("rows = %d, want 0", n)
	}
}

func TestOptions_MaxDatabaseSizeMinimum(t *testing.T) {
	_, err := durable.Open(durable.Options{Dir: t.TempDir(), MaxDatabaseSize: durable.MinDatabaseSize - 1})
	if err == nil {
		t.Fatal("Open with MaxDatabaseSize one below the minimum succeeded")
	}
	rt, err := durable.Open(durable.Options{Dir: t.TempDir(), MaxDatabaseSize: durable.MinDatabaseSize})
	if err != nil {
		t.Fatalf("Open with MaxDatabaseSize at the minimum: %v", err)
	}
	rt.Close()
}
