package durable_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/durable-go/durable"
	"github.com/durable-go/durable/internal/clock"
)

// TestShrink_IdleObjectsGiveBackMemory: an object idle for a couple of
// seconds (but not long enough to be evicted) has its database shrunk once,
// and again only after it was used; its data and later writes are intact.
func TestShrink_IdleObjectsGiveBackMemory(t *testing.T) {
	fc := clock.NewFake(time.Unix(1000, 0))
	rt := openRuntime(t, durable.Options{Durability: durable.NoSync, Clock: fc, IdleTimeout: time.Hour})
	ns := durable.MustRegister(rt, "Journal", newJournal, struct{}{})
	ctx := context.Background()
	stub := ns.GetByName("j")
	for i := range 10 {
		if err := durable.Do1(ctx, stub, (*Journal).Append, int64(i)); err != nil {
			t.Fatal(err)
		}
	}
	fc.Advance(time.Second)
	if n := rt.Stats().Shrinks; n != 0 {
		t.Fatalf("shrunk after 1 s idle (%d), want only after %v", n, 2*time.Second)
	}
	fc.Advance(2 * time.Second)
	if n := rt.Stats().Shrinks; n != 1 {
		t.Fatalf("shrinks after 3 s idle = %d, want 1", n)
	}
	fc.Advance(5 * time.Second)
	if n := rt.Stats().Shrinks; n != 1 {
		t.Fatalf("shrinks = %d after more idle time, want still 1 (nothing to give back)", n)
	}
	if st := rt.Stats(); st.Live != 1 || st.Evictions != 0 {
		t.Fatalf("%+v: a shrunk object must stay live", st)
	}
	// The shrunk object reads and writes as before.
	if err := durable.Do1(ctx, stub, (*Journal).Append, 10); err != nil {
		t.Fatal(err)
	}
	got, err := durable.Call0(ctx, stub, (*Journal).All)
	if err != nil || fmt.Sprint(got) != "[0 1 2 3 4 5 6 7 8 9 10]" {
		t.Fatalf("All = %v, %v", got, err)
	}
	fc.Advance(3 * time.Second)
	if n := rt.Stats().Shrinks; n != 2 {
		t.Fatalf("shrinks after another idle pause = %d, want 2", n)
	}
}

// BenchmarkIdleObjectMemory: resident memory per live object with an open
// database (one KV entry) once the sweep has shrunk it. Run with
// -benchtime 2000x (objects).
//
// Staggered: each object goes idle and is shrunk in turn, as when
// objects are used at different times; memory freed by one is reused by
// the next. Burst: all are activated together, measured (live), then all
// shrunk at once; the C allocator keeps most of the freed memory mapped,
// because freed and live blocks of different objects share its pages.
func BenchmarkIdleObjectMemory(b *testing.B) {
	b.Run("Staggered", func(b *testing.B) { benchIdleObjectMemory(b, true) })
	b.Run("Burst", func(b *testing.B) { benchIdleObjectMemory(b, false) })
}

func benchIdleObjectMemory(b *testing.B, staggered bool) {
	n := max(b.N, 100)
	fc := clock.NewFake(time.Unix(1000, 0))
	rt := openRuntime(b, durable.Options{Durability: durable.NoSync, Clock: fc, IdleTimeout: 1000 * time.Hour, MaxLiveObjects: -1})
	ns := durable.MustRegister(rt, "Counter", newCounterKV, struct{}{})
	ctx := context.Background()
	// Create the databases first, so that creating files does not count.
	for i := range n {
		if err := durable.Do0(ctx, ns.GetByName(fmt.Sprint("o", i)), (*CounterKV).Inc); err != nil {
			b.Fatal(err)
		}
	}
	rt.EvictIdle()
	runtime.GC()
	before := rss(b)
	for i := range n {
		if err := durable.Do0(ctx, ns.GetByName(fmt.Sprint("o", i)), (*CounterKV).Inc); err != nil {
			b.Fatal(err)
		}
		if staggered {
			fc.Advance(3 * time.Second)
		}
	}
	if !staggered {
		runtime.GC()
		b.ReportMetric(float64(rss(b)-before)/float64(n), "rss-B/live-object")
		fc.Advance(3 * time.Second)
	}
	runtime.GC()
	shrunk := rss(b)
	if st := rt.Stats(); st.Shrinks < uint64(n) || st.Live != int64(n) {
		b.Fatalf("%+v: want %d live objects, all shrunk", st, n)
	}
	b.ReportMetric(float64(shrunk-before)/float64(n), "rss-B/idle-object")
}

// CounterKV keeps one count in KV storage.
type CounterKV struct{ st *durable.State }

func newCounterKV(st *durable.State, _ struct{}) (*CounterKV, error) { return &CounterKV{st: st}, nil }

func (c *CounterKV) Inc(ctx context.Context) error {
	n, _, err := durable.Get[int](c.st.Storage(), "n")
	if err != nil {
		return err
	}
	return c.st.Storage().Put("n", n+1)
}

// rss returns the process's resident set size in bytes.
func rss(b testing.TB) int64 {
	data, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		b.Skip("no /proc/self/statm")
	}
	var size, res int64
	fmt.Sscan(string(data), &size, &res)
	return res * int64(os.Getpagesize())
}
