package durable_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/durable-go/durable"
	"github.com/durable-go/durable/internal/durability"
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
	w0 := writtenBytes()
	c0 := cpuTime()
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
	b.StopTimer()
	if w0 >= 0 {
		b.ReportMetric(float64(writtenBytes()-w0)/float64(b.N), "written-B/op")
	}
	b.ReportMetric(float64((cpuTime()-c0).Microseconds())/float64(b.N), "cpu-µs/op")
	l.report(b)
}

// cpuTime returns the user and system CPU time this process has used.
func cpuTime() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// writtenBytes returns the bytes this process has passed to write calls
// (wchar in /proc/self/io), or -1 where that is not available.
func writtenBytes() int64 {
	data, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return -1
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, "wchar: "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err == nil {
				return n
			}
		}
	}
	return -1
}

// createFiles creates n empty files in dir, closed at the end of b.
func createFiles(b *testing.B, dir string, n int) []*os.File {
	files := make([]*os.File, n)
	for i := range files {
		f, err := os.Create(filepath.Join(dir, strconv.Itoa(i)))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { f.Close() })
		files[i] = f
	}
	return files
}

// BenchmarkRawSpread_1000Files64 is the disk's ceiling for commits spread
// over many files when each file is synced, without SQLite or the runtime:
// each op appends 5 KiB (about what one durable single-row commit writes
// to its WAL: a page or two with frame headers) to the next of 1,000
// files, and every 64 appends one syncfs makes them durable, as the
// durability layer's per-file mode does for a batch. Compare
// BenchmarkRawJournal_1000Files64, the journal's ceiling.
func BenchmarkRawSpread_1000Files64(b *testing.B) {
	dir := b.TempDir()
	files := createFiles(b, dir, 1000)
	if err := files[0].Sync(); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 5<<10)
	i := 0
	for b.Loop() {
		if _, err := files[i%len(files)].Write(buf); err != nil {
			b.Fatal(err)
		}
		i++
		if i%64 == 0 {
			if err := durability.SyncFS(files[0].Name()); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

// BenchmarkRawJournal_1000Files64 is the disk's ceiling for the node
// journal's way of making the same commits durable, without SQLite or the
// runtime: each op appends 5 KiB to the next of 1,000 files (never synced
// on its own) and copies it into a preallocated journal file; every 64 ops
// one write and fdatasync of the journal make them durable, and every
// 32 MiB of journal one syncfs retires it (as internal/durability does).
func BenchmarkRawJournal_1000Files64(b *testing.B) {
	dir := b.TempDir()
	files := createFiles(b, dir, 1000)
	const size = 32 << 20
	j, err := os.Create(filepath.Join(dir, "journal"))
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	if _, err := j.Write(make([]byte, size+1<<20)); err != nil {
		b.Fatal(err)
	}
	if err := durability.SyncFS(j.Name()); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 5<<10)
	batch := make([]byte, 0, 64*len(buf))
	var off int64
	i := 0
	for b.Loop() {
		if _, err := files[i%len(files)].Write(buf); err != nil {
			b.Fatal(err)
		}
		batch = append(batch, buf...)
		i++
		if i%64 != 0 {
			continue
		}
		if _, err := j.WriteAt(batch, off); err != nil {
			b.Fatal(err)
		}
		off += int64(len(batch))
		batch = batch[:0]
		if err := fdatasync(j); err != nil {
			b.Fatal(err)
		}
		if off >= size {
			if err := durability.SyncFS(j.Name()); err != nil {
				b.Fatal(err)
			}
			off = 0
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
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

// BenchmarkDurableWrite_1000Objects256: 256 callers spread over 1,000
// objects, so that more commits share each journal sync.
func BenchmarkDurableWrite_1000Objects256(b *testing.B) {
	benchConcurrentWrites(b, durable.Fsync, 1000, 256)
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

// BenchmarkNoSyncWrite_1000Objects64 is BenchmarkDurableWrite_1000Objects64
// without fsync: the runtime's own ceiling when the disk is not the limit.
func BenchmarkNoSyncWrite_1000Objects64(b *testing.B) {
	benchConcurrentWrites(b, durable.NoSync, 1000, 64)
}
