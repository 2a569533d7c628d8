package storage_test

import (
	"flag"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durable-go/durable/internal/durability"
	"github.com/durable-go/durable/internal/storage"
	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"
)

var churnFor = flag.Duration("storage.churn", 2*time.Second, "how long TestOpenClose_Churn runs (e.g. 45s to hunt for rare corruption)")

// Ensure databases opened, written and closed by many goroutines at once
// (what eviction and re-activation do) never corrupt each other or a
// long-lived connection: every statement must parse and every write land.
// This found the driver's SetDefensive memory corruption (about 1 bad
// statement in 20,000 cycles; run with -storage.churn=45s to see a rate
// that low).
func TestOpenClose_Churn(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	g := newGroup(t, durability.NoSync)
	dir := t.TempDir()
	spares, err := storage.NewSpares(storage.SparesConfig{Dir: filepath.Join(dir, ".spares")})
	if err != nil {
		t.Fatal(err)
	}
	defer spares.Close()
	// A side connection doing what the alarm index does.
	side, err := storage.OpenConn(filepath.Join(dir, "side.sqlite"), sqlite.OpenReadWrite|sqlite.OpenCreate)
	if err != nil {
		t.Fatal(err)
	}
	defer storage.CloseConn(side)
	if err := sqlitex.ExecuteTransient(side, "CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)", nil); err != nil {
		t.Fatal(err)
	}
	var cycles atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			err := sqlitex.Execute(side, "INSERT INTO t (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v",
				&sqlitex.ExecOptions{Args: []any{fmt.Sprint("k", i%100), i}})
			if err != nil {
				t.Errorf("side connection: %v", err)
				return
			}
		}
	}()
	for w := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				path := filepath.Join(dir, fmt.Sprint("w", w), fmt.Sprint(i%10, ".sqlite"))
				db, err := storage.Open(path, storage.Options{Durability: g, Spares: spares})
				if err != nil {
					t.Errorf("Open: %v", err)
					return
				}
				if err := db.Put("k", []byte(fmt.Sprint(i))); err != nil {
					t.Errorf("Put: %v", err)
				}
				if i%2 == 0 { // half commit, half roll back at Close
					if _, err := db.Commit(); err != nil {
						t.Errorf("Commit: %v", err)
					}
				}
				if err := db.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
				cycles.Add(1)
			}
		}()
	}
	time.Sleep(*churnFor)
	close(stop)
	wg.Wait()
	t.Logf("%d open/write/close cycles", cycles.Load())
}
