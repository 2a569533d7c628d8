package durable_test

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/durable-go/durable"
)

func benchRuntime(b *testing.B) (*durable.Runtime, *durable.Namespace[Counter]) {
	b.Helper()
	rt, err := durable.Open(durable.Options{Dir: b.TempDir(), Durability: durable.NoSync, IdleTimeout: 1 << 62})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { rt.Close() })
	return rt, durable.MustRegister(rt, "Counter", newCounter, &env{})
}

// BenchmarkRPC_OneObject: typed in-process calls to one object, no storage.
func BenchmarkRPC_OneObject(b *testing.B) {
	_, ns := benchRuntime(b)
	stub := ns.GetByName("hot")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := durable.Call1(ctx, stub, (*Counter).Add, 1); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
}

// BenchmarkRPC_OneObjectParallel: many goroutines contend for one object.
func BenchmarkRPC_OneObjectParallel(b *testing.B) {
	_, ns := benchRuntime(b)
	stub := ns.GetByName("hot")
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(32)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := durable.Call1(ctx, stub, (*Counter).Add, 1); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
}

// BenchmarkRPC_Dynamic: Stub.Call by method name (reflection).
func BenchmarkRPC_Dynamic(b *testing.B) {
	_, ns := benchRuntime(b)
	stub := ns.GetByName("hot")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := stub.Call(ctx, "Add", 1); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
}

// BenchmarkRPC_Spread10k: parallel calls spread over 10,000 live objects.
func BenchmarkRPC_Spread10k(b *testing.B) {
	_, ns := benchRuntime(b)
	const N = 10000
	stubs := make([]*durable.Stub[Counter], N)
	ctx := context.Background()
	for i := range stubs {
		stubs[i] = ns.GetByName(fmt.Sprint("obj-", i))
		durable.Call1(ctx, stubs[i], (*Counter).Add, 0)
	}
	var next atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			s := stubs[next.Add(1)%N]
			if _, err := durable.Call1(ctx, s, (*Counter).Add, 1); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
}

// BenchmarkActivation: first call to a new object (constructor, no storage).
func BenchmarkActivation(b *testing.B) {
	_, ns := benchRuntime(b)
	ctx := context.Background()
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		i++
		if _, err := durable.Call1(ctx, ns.GetByName(fmt.Sprint("new-", i)), (*Counter).Add, 1); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMemoryPerObject reports heap bytes per live object and per
// evicted object.
func BenchmarkMemoryPerObject(b *testing.B) {
	const N = 10000
	for b.Loop() {
		rt, ns := benchRuntime(b)
		ctx := context.Background()
		stubs := make([]*durable.Stub[Counter], N)
		for i := range stubs {
			stubs[i] = ns.GetByName(fmt.Sprint("m-", i))
		}
		before := heapInUse()
		for _, s := range stubs {
			durable.Call1(ctx, s, (*Counter).Add, 1)
		}
		live := heapInUse()
		rt.EvictIdle()
		evicted := heapInUse()
		b.ReportMetric(float64(live-before)/N, "B/live-object")
		b.ReportMetric(float64(evicted-before)/N, "B/evicted-object")
		rt.Close()
	}
}

func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}
