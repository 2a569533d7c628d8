package durability_test

import (
	"context"
	"errors"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/durable-go/durable/internal/durability"
)

// recorder is an Observer that keeps what it is told.
type recorder struct {
	mu      sync.Mutex
	batches []int           // commits of each Synced
	waits   []time.Duration // each Durable
}

func (r *recorder) Synced(elapsed time.Duration, commits int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.batches = append(r.batches, commits)
}

func (r *recorder) Durable(wait time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.waits = append(r.waits, wait)
}

func (r *recorder) get() ([]int, []time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.batches), slices.Clone(r.waits)
}

// Ensure the Observer sees one Synced per fsync with the commits it
// covered, and one Durable per commit with its wait.
func TestGroup_Observer(t *testing.T) {
	entered := make(chan struct{}, 10)
	release := make(chan struct{})
	var first sync.Once
	rec := &recorder{}
	g := durability.New(durability.Config{
		Observer: rec,
		SyncFile: func(f *os.File) error {
			hold := false
			first.Do(func() { hold = true })
			if hold {
				entered <- struct{}{}
				<-release // commits 2 and 3 pile up behind the first sync
			}
			return nil
		},
		SyncDir: func(string) error { return nil },
	})
	defer g.Close()
	f := newFile(t, g, "wal")
	t1 := f.Commit()
	<-entered // the first sync covers commit 1 only
	t2 := f.Commit()
	t3 := f.Commit()
	time.Sleep(2 * time.Millisecond) // so that commit 1 waited measurably
	close(release)
	for _, tk := range []durability.Ticket{t1, t2, t3} {
		if err := tk.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	batches, waits := rec.get()
	if want := []int{1, 2}; !slices.Equal(batches, want) {
		t.Errorf("Synced commits = %v, want %v", batches, want)
	}
	if len(waits) != 3 {
		t.Fatalf("Durable called %d times, want 3", len(waits))
	}
	if waits[0] < 2*time.Millisecond {
		t.Errorf("wait of commit 1 = %v, want at least 2ms", waits[0])
	}
}

// Ensure commits that never become durable, and NoSync commits, are not
// observed.
func TestGroup_ObserverFailureAndNoSync(t *testing.T) {
	rec := &recorder{}
	g := durability.New(durability.Config{
		Observer: rec,
		SyncFile: func(*os.File) error { return errors.New("disk on fire") },
		SyncDir:  func(string) error { return nil },
	})
	defer g.Close()
	f := newFile(t, g, "wal")
	if err := f.Commit().Wait(context.Background()); err == nil {
		t.Fatal("Wait succeeded after a failed sync")
	}
	if batches, waits := rec.get(); len(batches) != 0 || len(waits) != 0 {
		t.Errorf("after a failed sync: Synced %v, Durable %v; want none", batches, waits)
	}

	ns := durability.New(durability.Config{Mode: durability.NoSync, Observer: rec})
	defer ns.Close()
	f2 := newFile(t, ns, "wal2")
	if err := f2.Commit().Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if batches, waits := rec.get(); len(batches) != 0 || len(waits) != 0 {
		t.Errorf("NoSync: Synced %v, Durable %v; want none", batches, waits)
	}
}
