package durable_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durable-go/durable"
	"github.com/durable-go/durable/internal/clock"
)

// Keeper stores one number in its KV storage.
type Keeper struct{ st *durable.State }

func newKeeper(st *durable.State, _ struct{}) (*Keeper, error) { return &Keeper{st: st}, nil }

func (k *Keeper) Put(ctx context.Context, v int) error { return k.st.Storage().Put("v", v) }

func (k *Keeper) Get(ctx context.Context) (int, error) {
	v, _, err := durable.Get[int](k.st.Storage(), "v")
	return v, err
}

// Ensure Options.MaxLiveObjects bounds the objects in memory (and so the
// open databases and their file descriptors): 1,000 objects touched one
// after another with a bound of 100 and no idle eviction leave at most 100
// live, keep every value, and hold descriptors for about 100 databases.
func TestMaxLiveObjects(t *testing.T) {
	const bound, objects = 100, 1000
	rt := openRuntime(t, durable.Options{Durability: durable.NoSync, MaxLiveObjects: bound, IdleTimeout: time.Hour})
	ns := durable.MustRegister(rt, "Keeper", newKeeper, struct{}{})
	fds := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Skip("no /proc/self/fd")
		}
		return len(ents)
	}
	base := fds()
	ctx := context.Background()
	peak := 0
	for i := range objects {
		if err := durable.Do1(ctx, ns.GetByName(fmt.Sprint("k", i)), (*Keeper).Put, i); err != nil {
			t.Fatal(err)
		}
		peak = max(peak, int(rt.Stats().Live))
	}
	waitFor(t, "trimmed objects to close", func() bool { return rt.Stats().Live <= bound })
	if peak > bound+1 {
		t.Errorf("peak live objects %d, want at most %d (+1 while a trim starts)", peak, bound)
	}
	// Two descriptors per open database without fsync (three with); allow slack for
	// the test's own and the runtime's.
	if got := fds() - base; got > 3*(bound+1)+20 {
		t.Errorf("%d more descriptors than before, want about %d", got, 3*bound)
	}
	if st := rt.Stats(); st.Evictions < objects-bound-1 {
		t.Errorf("Stats = %+v, want at least %d evictions", st, objects-bound-1)
	}
	for i := range objects {
		v, err := durable.Call0(ctx, ns.GetByName(fmt.Sprint("k", i)), (*Keeper).Get)
		if err != nil || v != i {
			t.Fatalf("object %d: Get = %d, %v", i, v, err)
		}
	}
}

// Ensure the default bound follows the open-file limit.
func TestDefaultMaxLiveObjects(t *testing.T) {
	if n := durable.DefaultMaxLiveObjects(); n < 256 {
		t.Fatalf("DefaultMaxLiveObjects() = %d, want at least 256", n)
	}
}

// Ensure evicted objects still closing count against MaxLiveObjects: with
// slow fsyncs (a close waits for the object's last one), 64 callers
// activating 1,000 objects must not run ahead of the closes and pile up
// open databases.
func TestMaxLiveObjects_SlowCloses(t *testing.T) {
	const bound, objects, callers = 50, 1000, 64
	// One P makes the pile-up without the wait plainer (130-250 open at
	// once, against 80-126 with it, -race included); with two it is
	// smaller. The larger check is BenchmarkAlarm_Fire with 10,000
	// evicted objects, which ran out of descriptors without the wait.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	slow := func(f *os.File) error {
		time.Sleep(5 * time.Millisecond)
		return f.Sync()
	}
	slowFS := func(fs []*os.File) error {
		time.Sleep(5 * time.Millisecond)
		return fs[0].Sync()
	}
	rt, err := durable.OpenWithSyncHooks(durable.Options{Dir: t.TempDir(), MaxLiveObjects: bound, IdleTimeout: time.Hour}, slow, slowFS, 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	ns := durable.MustRegister(rt, "Keeper", newKeeper, struct{}{})
	openDBs := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Skip("no /proc/self/fd")
		}
		n := 0
		for _, e := range ents {
			if p, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasSuffix(p, ".sqlite") {
				n++
			}
		}
		return n
	}
	stop := make(chan struct{})
	peak := make(chan int)
	go func() {
		m := 0
		for {
			select {
			case <-stop:
				peak <- m
				return
			default:
			}
			m = max(m, openDBs())
			time.Sleep(time.Millisecond)
		}
	}()
	var wg sync.WaitGroup
	var next atomic.Int64
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < objects; i = int(next.Add(1)) - 1 {
				if err := durable.Do1(context.Background(), ns.GetByName(fmt.Sprint("k", i)), (*Keeper).Put, i); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	// Each object holds its database file open once; allow for the
	// objects in their turns (one per caller) past the bound, and some
	// slack for the sampling under load.
	p := <-peak
	t.Logf("peak %d databases open", p)
	if p > bound+callers+32 {
		t.Fatalf("peak %d databases open, want at most %d (bound %d + %d callers + 32 slack)", p, bound+callers+32, bound, callers)
	}
}

// Counted counts its activations, by name, in its env.
type Counted struct{}

type countedEnv struct {
	mu  sync.Mutex
	act map[string]int
}

func newCounted(st *durable.State, env *countedEnv) (*Counted, error) {
	name, _ := st.ID().Name()
	env.mu.Lock()
	env.act[name]++
	env.mu.Unlock()
	return &Counted{}, nil
}

func (*Counted) Touch(ctx context.Context) error { return nil }

// Ensure that past MaxLiveObjects the least recently used objects are
// evicted, in the order of their last use even when the clock does not
// move between uses (a fake clock here; a coarse or stepped one in
// production), and that objects used since stay in memory.
func TestMaxLiveObjects_EvictsLeastRecentlyUsed(t *testing.T) {
	const bound = 100 // a trim leaves 90 live
	fc := clock.NewFake(t0)
	rt := openRuntime(t, durable.Options{Durability: durable.NoSync, Clock: fc, MaxLiveObjects: bound, IdleTimeout: noEviction})
	env := &countedEnv{act: map[string]int{}}
	ns := durable.MustRegister(rt, "Counted", newCounted, env)
	touch := func(i int) {
		t.Helper()
		if err := durable.Do0(t.Context(), ns.GetByName(fmt.Sprint("c", i)), (*Counted).Touch); err != nil {
			t.Fatal(err)
		}
	}
	for i := range bound {
		touch(i)
	}
	for i := range bound / 2 { // 0-49 are now the most recently used
		touch(i)
	}
	touch(bound) // one past the bound: a trim evicts 10 of 50-99 first
	if st := rt.Stats(); st.Evictions != 10 || st.Live != bound*9/10+1 {
		t.Fatalf("Stats = %+v, want 10 evictions and %d live", st, bound*9/10+1)
	}
	for i := range bound / 2 {
		touch(i)
	}
	touch(bound)
	env.mu.Lock()
	defer env.mu.Unlock()
	for i := range bound / 2 {
		if n := env.act[fmt.Sprint("c", i)]; n != 1 {
			t.Errorf("object c%d, used recently, was activated %d times, want once", i, n)
		}
	}
	if n := env.act[fmt.Sprint("c", bound)]; n != 1 {
		t.Errorf("object c%d, the newest, was activated %d times, want once", bound, n)
	}
}
