package durable_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durable-go/durable"
	"github.com/durable-go/durable/internal/clock"
)

type Counter struct {
	st *durable.State
	n  int
}

type env struct {
	built atomic.Int64
}

func newCounter(st *durable.State, e *env) (*Counter, error) {
	e.built.Add(1)
	return &Counter{st: st}, nil
}

func (c *Counter) Add(ctx context.Context, d int) (int, error) {
	n := c.n // non-atomic read-modify-write: safe only one turn at a time
	c.n = n + d
	return c.n, nil
}

func (c *Counter) Get(ctx context.Context) (int, error) { return c.n, nil }

func (c *Counter) Fail(ctx context.Context, msg string) error { return errors.New(msg) }

func (c *Counter) Panic(ctx context.Context) error { panic("boom") }

func (c *Counter) Name(ctx context.Context) (string, error) {
	n, _ := c.st.Name()
	return n, nil
}

func openRuntime(t testing.TB, opts durable.Options) *durable.Runtime {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	rt, err := durable.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := rt.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return rt
}

func TestCounter_Basics(t *testing.T) {
	rt := openRuntime(t, durable.Options{Durability: durable.NoSync})
	e := &env{}
	ns := durable.MustRegister(rt, "Counter", newCounter, e)
	ctx := context.Background()
	stub := ns.GetByName("a")
	if got := e.built.Load(); got != 0 {
		t.Fatalf("constructor ran %d times before any call, want 0", got)
	}
	for i := 1; i <= 3; i++ {
		got, err := durable.Call1(ctx, stub, (*Counter).Add, 1)
		if err != nil || got != i {
			t.Fatalf("Add = %d, %v; want %d", got, err, i)
		}
	}
	v, err := stub.Call(ctx, "Add", 2)
	if err != nil || v.(int) != 5 {
		t.Fatalf("Call Add = %v, %v", v, err)
	}
	name, err := durable.Call0(ctx, stub, (*Counter).Name)
	if err != nil || name != "a" {
		t.Fatalf("Name = %q, %v", name, err)
	}
	err = durable.Do1(ctx, stub, (*Counter).Fail, "nope")
	var re *durable.RemoteError
	if !errors.As(err, &re) || re.Message != "nope" || re.Method != "Fail" {
		t.Fatalf("Fail err = %#v", err)
	}
	err = durable.Do0(ctx, stub, (*Counter).Panic)
	if !errors.As(err, &re) || !re.Panic {
		t.Fatalf("Panic err = %v", err)
	}
	got, err := durable.Call0(ctx, stub, (*Counter).Get)
	if err != nil || got != 0 {
		t.Fatalf("after panic Get = %d, %v; want 0 (reset)", got, err)
	}
	if e.built.Load() != 2 {
		t.Fatalf("built %d, want 2", e.built.Load())
	}
}

func TestCounter_Concurrency(t *testing.T) {
	rt := openRuntime(t, durable.Options{Durability: durable.NoSync})
	ns := durable.MustRegister(rt, "Counter", newCounter, &env{})
	stub := ns.GetByName("hot")
	ctx := context.Background()
	const G, N = 64, 10000
	var wg sync.WaitGroup
	var next atomic.Int64
	for range G {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= N {
				if _, err := durable.Call1(ctx, stub, (*Counter).Add, 1); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	got, _ := durable.Call0(ctx, stub, (*Counter).Get)
	if got != N {
		t.Fatalf("count = %d, want %d", got, N)
	}
}

func TestEviction(t *testing.T) {
	fc := clock.NewFake(time.Unix(1000, 0))
	rt := openRuntime(t, durable.Options{Durability: durable.NoSync, Clock: fc})
	e := &env{}
	ns := durable.MustRegister(rt, "Counter", newCounter, e)
	ctx := context.Background()
	durable.Call1(ctx, ns.GetByName("x"), (*Counter).Add, 5)
	if rt.Stats().Live != 1 {
		t.Fatalf("live = %d", rt.Stats().Live)
	}
	fc.Advance(11 * time.Second)
	if rt.Stats().Live != 0 {
		t.Fatalf("live after idle = %d", rt.Stats().Live)
	}
	got, _ := durable.Call0(ctx, ns.GetByName("x"), (*Counter).Get)
	if got != 0 || e.built.Load() != 2 {
		t.Fatalf("got %d built %d", got, e.built.Load())
	}
}
