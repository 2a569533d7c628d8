package durable_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durable-go/durable"
)

// latencies collects per-operation durations and reports percentiles.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

func (l *latencies) report(b *testing.B) {
	if len(l.d) == 0 {
		return
	}
	slices.Sort(l.d)
	p := func(q float64) float64 { return float64(l.d[int(q*float64(len(l.d)-1))].Microseconds()) }
	b.ReportMetric(p(0.50), "p50-µs")
	b.ReportMetric(p(0.99), "p99-µs")
	b.ReportMetric(float64(len(l.d))/b.Elapsed().Seconds(), "ops/s")
}

// BenchmarkRawFsync is the baseline: append 128 bytes to a file and fsync,
// serially, on the same file system as the data folder.
func BenchmarkRawFsync(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "raw"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 128)
	var l latencies
	for b.Loop() {
		start := time.Now()
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		l.add(time.Since(start))
	}
	l.report(b)
}

func journalRuntime(b *testing.B, mode durable.Durability) *durable.Namespace[Journal] {
	rt, err := durable.Open(durable.Options{Dir: b.TempDir(), Durability: mode, IdleTimeout: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { rt.Close() })
	return durable.MustRegister(rt, "Journal", newJournal, struct{}{})
}

// BenchmarkDurableWrite_Serial: one caller, one object, one row per call,
// acknowledged after fsync. Compare p50 with BenchmarkRawFsync.
func BenchmarkDurableWrite_Serial(b *testing.B) {
	ns := journalRuntime(b, durable.Fsync)
	stub := ns.GetByName("one")
	ctx := context.Background()
	var n int64
	var l latencies
	for b.Loop() {
		n++
		start := time.Now()
		if err := durable.Do1(ctx, stub, (*Journal).Append, n); err != nil {
			b.Fatal(err)
		}
		l.add(time.Since(start))
	}
	l.report(b)
}

func benchConcurrentWrites(b *testing.B, mode durable.Durability, objects, callers int) {
	ns := journalRuntime(b, mode)
	stubs := make([]*durable.Stub[Journal], objects)
	ctx := context.Background()
	for i := range stubs {
		stubs[i] = ns.GetByName(fmt.Sprint("o", i))
		if err := durable.Do1(ctx, stubs[i], (*Journal).Append, int64(1_000_000_000+i)); err != nil {
			b.Fatal(err)
		}
	}
	var next atomic.Int64
	var l latencies
	b.SetParallelism((callers + 1) / 2)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n := next.Add(1)
			start := time.Now()
			if err := durable.Do1(ctx, stubs[n%int64(objects)], (*Journal).Append, n); err != nil {
				b.Fatal(err)
			}
			l.add(time.Since(start))
		}
	})
	l.report(b)
}

// BenchmarkDurableWrite_OneObject16: 16 concurrent callers on one object;
// group commit lets one fsync acknowledge many turns.
func BenchmarkDurableWrite_OneObject16(b *testing.B) {
	benchConcurrentWrites(b, durable.Fsync, 1, 16)
}

// BenchmarkDurableWrite_1000Objects64: 64 callers spread over 1,000 objects.
func BenchmarkDurableWrite_1000Objects64(b *testing.B) {
	benchConcurrentWrites(b, durable.Fsync, 1000, 64)
}

// BenchmarkNoSyncWrite_OneObject16 is the same load without fsync.
func BenchmarkNoSyncWrite_OneObject16(b *testing.B) {
	benchConcurrentWrites(b, durable.NoSync, 1, 16)
}

// BenchmarkActivationWithStorage: first call to a new object whose
// constructor creates a table (database file created, fsync durability).
func BenchmarkActivationWithStorage(b *testing.B) {
	ns := journalRuntime(b, durable.Fsync)
	ctx := context.Background()
	i := 0
	var l latencies
	for b.Loop() {
		i++
		start := time.Now()
		if _, err := durable.Call0(ctx, ns.GetByName(fmt.Sprint("new-", i)), (*Journal).All); err != nil {
			b.Fatal(err)
		}
		l.add(time.Since(start))
	}
	l.report(b)
}

// BenchmarkKV_PutGet: one KV put and one get per call, inside one object.
func BenchmarkKV_PutGet(b *testing.B) {
	rt, err := durable.Open(durable.Options{Dir: b.TempDir(), Durability: durable.NoSync})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { rt.Close() })
	ns := durable.MustRegister(rt, "Named", newNamed, struct{}{})
	stub := ns.GetByName("kv")
	ctx := context.Background()
	for b.Loop() {
		if _, err := durable.Call0(ctx, stub, (*Named).Touch); err != nil {
			b.Fatal(err)
		}
	}
}
