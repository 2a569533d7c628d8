package storage

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/durable-go/durable/internal/durability"
	lib "modernc.org/sqlite/lib"
)

// TestAuthorizerSlots: each open database holds a slot of the authorizer
// table, a closed one gives it back for the next open to reuse, and the
// authorizer of a database in a reused slot is that database's: user SQL
// is refused internal tables, storage's own statements are not.
func TestAuthorizerSlots(t *testing.T) {
	g := durability.New(durability.Config{Mode: durability.NoSync})
	defer g.Close()
	dir := t.TempDir()
	open := func(name string) *DB {
		t.Helper()
		db, err := Open(filepath.Join(dir, name), Options{Durability: g})
		if err != nil {
			t.Fatal(err)
		}
		if db.authSlot == 0 {
			t.Fatalf("%s holds no authorizer slot", name)
		}
		return db
	}
	a, b := open("a"), open("b")
	if a.authSlot == b.authSlot {
		t.Fatalf("two open databases share slot %d", a.authSlot)
	}
	slot := a.authSlot
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if a.authSlot != 0 {
		t.Errorf("closed database still holds slot %d", a.authSlot)
	}
	c := open("c")
	defer c.Close()
	defer b.Close()
	if c.authSlot != slot {
		t.Errorf("new database took slot %d, want the freed %d", c.authSlot, slot)
	}
	for _, db := range []*DB{b, c} {
		var fe *ForbiddenError
		if _, err := db.Exec("SELECT * FROM _durable_kv"); !errors.As(err, &fe) {
			t.Errorf("user read of an internal table: got %v, want *ForbiddenError", err)
		}
		if err := db.Put("k", []byte("v")); err != nil {
			t.Errorf("Put: %v", err)
		}
		if _, err := db.Exec("CREATE TABLE t (x)"); err != nil {
			t.Errorf("CREATE TABLE: %v", err)
		}
	}
	// A slot with no database refuses everything.
	authSlots.mu.Lock()
	free := append([]uintptr(nil), authSlots.free...)
	authSlots.mu.Unlock()
	if len(free) > 0 {
		if rc := authCallback(nil, free[0], int32(lib.SQLITE_READ), 0, 0, 0, 0); rc != lib.SQLITE_DENY {
			t.Errorf("callback for a free slot = %d, want SQLITE_DENY", rc)
		}
	}
}

// TestAuthorizerSlots_Concurrent: databases opened and closed on many
// goroutines at once each keep their own authorizer (run with -race).
func TestAuthorizerSlots_Concurrent(t *testing.T) {
	g := durability.New(durability.Config{Mode: durability.NoSync})
	defer g.Close()
	dir := t.TempDir()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 30 {
				db, err := Open(filepath.Join(dir, string(rune('a'+w))), Options{Durability: g})
				if err != nil {
					errs <- err
					return
				}
				var fe *ForbiddenError
				_, err = db.Exec("SELECT * FROM _durable_kv")
				if !errors.As(err, &fe) {
					err = fmt.Errorf("internal table readable: %v", err)
				} else {
					_, err = db.Exec("SELECT ?", i)
				}
				db.Rollback()
				db.Close()
				if err != nil {
					errs <- err // one each at most: errs never blocks
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
