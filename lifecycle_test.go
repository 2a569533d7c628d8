package durable_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durable-go/durable"
	"github.com/durable-go/durable/internal/clock"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestActivation_Single(t *testing.T) {
	rt := openRuntime(t, durable.Options{Durability: durable.NoSync})
	e := &env{}
	ns := durable.MustRegister(rt, "Counter", newCounter, e)
	const N = 1000
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range N {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if _, err := durable.Call1(context.Background(), ns.GetByName("new"), (*Counter).Add, 1); err != nil {
				t.Error(err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if got := e.built.Load(); got != 1 {
		t.Fatalf("constructor ran %d times, want 1", got)
	}
	if got, _ := durable.Call0(context.Background(), ns.GetByName("new"), (*Counter).Get); got != N {
		t.Fatalf("count = %d, want %d", got, N)
	}
}

type Flaky struct{}

type flakyEnv struct{ fails atomic.Int64 }

func newFlaky(st *durable.State, e *flakyEnv) (*Flaky, error) {
	if e.fails.Add(-1) >= 0 {
		return nil, errors.New("not today")
	}
	return &Flaky{}, nil
}

func (f *Flaky) Ping(ctx context.Context) (string, error) { return "pong", nil }

func TestActivation_ConstructorError(t *testing.T) {
	rt := openRuntime(t, durable.Options{Durability: durable.NoSync})
	e := &flakyEnv{}
	e.fails.Store(2)
	ns := durable.MustRegister(rt, "Flaky", newFlaky, e)
	for i := range 2 {
		_, err := durable.Call0(t.Context(), ns.GetByName("f"), (*Flaky).Ping)
		var re *durable.RemoteError
		if !errors.As(err, &re) || re.Method != "constructor" || re.Message != "not today" {
			t.Fatalf("call %d: err = %v, want the constructor's error", i, err)
		}
	}
	got, err := durable.Call0(t.Context(), ns.GetByName("f"), (*Flaky).Ping)
	if err != nil || got != "pong" {
		t.Fatalf("third call = %q, %v", got, err)
	}
}

// Ping-pong objects for interleaving: A calls B, B calls back A.
type PingEnv struct {
	A *durable.Namespace[Ponger]
	B *durable.Namespace[Ponger]

	entered chan struct{} // Ponger.Wait signals it is inside
	release chan struct{} // and waits for this
}

type Ponger struct {
	st      *durable.State
	env     *PingEnv
	inBlock bool
	log     []string
}

func newPonger(st *durable.State, e *PingEnv) (*Ponger, error) { return &Ponger{st: st, env: e}, nil }

// Relay calls B.Back, which calls A.Touch.
func (p *Ponger) Relay(ctx context.Context, peer string) (string, error) {
	p.log = append(p.log, "relay-start")
	got, err := durable.Call1(ctx, p.env.B.GetByName(peer), (*Ponger).Back, p.st.ID().String())
	p.log = append(p.log, "relay-end")
	return got, err
}

func (p *Ponger) Back(ctx context.Context, caller string) (string, error) {
	id, err := p.env.A.IDFromString(caller)
	if err != nil {
		return "", err
	}
	return durable.Call0(ctx, p.env.A.Get(id), (*Ponger).Touch)
}

func (p *Ponger) Touch(ctx context.Context) (string, error) {
	if p.inBlock {
		return "", errors.New("Touch ran inside BlockConcurrencyWhile")
	}
	p.log = append(p.log, "touch")
	return "touched", nil
}

func (p *Ponger) Log(ctx context.Context) ([]string, error) { return p.log, nil }

// Wait blocks until the test releases it.
func (p *Ponger) Wait(ctx context.Context) error {
	p.env.entered <- struct{}{}
	<-p.env.release
	return nil
}

// BlockedCall calls B.Wait inside BlockConcurrencyWhile.
func (p *Ponger) BlockedCall(ctx context.Context, peer string) error {
	return p.st.BlockConcurrencyWhile(ctx, func(ctx context.Context) error {
		p.inBlock = true
		defer func() { p.inBlock = false }()
		return durable.Do0(ctx, p.env.B.GetByName(peer), (*Ponger).Wait)
	})
}

// FreeCall calls B.Wait without blocking.
func (p *Ponger) FreeCall(ctx context.Context, peer string) error {
	return durable.Do0(ctx, p.env.B.GetByName(peer), (*Ponger).Wait)
}

func newPingPong(t *testing.T, opts durable.Options) *PingEnv {
	rt := openRuntime(t, opts)
	e := &PingEnv{entered: make(chan struct{}), release: make(chan struct{})}
	e.A = durable.MustRegister(rt, "A", newPonger, e)
	e.B = durable.MustRegister(rt, "B", newPonger, e)
	return e
}

func TestInterleaving_ABA(t *testing.T) {
	e := newPingPong(t, durable.Options{Durability: durable.NoSync})
	got, err := durable.Call1(t.Context(), e.A.GetByName("a"), (*Ponger).Relay, "b")
	if err != nil || got != "touched" {
		t.Fatalf("Relay = %q, %v", got, err)
	}
	log, _ := durable.Call0(t.Context(), e.A.GetByName("a"), (*Ponger).Log)
	if fmt.Sprint(log) != "[relay-start touch relay-end]" {
		t.Fatalf("log = %v", log)
	}
}

func TestInterleaving_FreeCallLetsOthersIn(t *testing.T) {
	e := newPingPong(t, durable.Options{Durability: durable.NoSync})
	done := make(chan error, 1)
	go func() { done <- durable.Do1(context.Background(), e.A.GetByName("a"), (*Ponger).FreeCall, "b") }()
	<-e.entered
	// A waits on B: another event reaches A meanwhile.
	if got, err := durable.Call0(t.Context(), e.A.GetByName("a"), (*Ponger).Touch); err != nil || got != "touched" {
		t.Fatalf("Touch during outgoing call = %q, %v", got, err)
	}
	close(e.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestBlockConcurrencyWhile_HoldsEvents(t *testing.T) {
	e := newPingPong(t, durable.Options{Durability: durable.NoSync})
	done := make(chan error, 1)
	go func() { done <- durable.Do1(context.Background(), e.A.GetByName("a"), (*Ponger).BlockedCall, "b") }()
	<-e.entered
	touched := make(chan error, 1)
	go func() {
		_, err := durable.Call0(context.Background(), e.A.GetByName("a"), (*Ponger).Touch)
		touched <- err
	}()
	// Touch must stay queued while the block lasts.
	select {
	case err := <-touched:
		t.Fatalf("Touch ran during BlockConcurrencyWhile (err %v)", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(e.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := <-touched; err != nil {
		t.Fatalf("Touch after the block: %v", err)
	}
}

type Sleeper struct {
	st    *durable.State
	gen   int
	clock *clock.Fake
}

type sleeperEnv struct {
	clock *clock.Fake
	built atomic.Int64
}

func newSleeper(st *durable.State, e *sleeperEnv) (*Sleeper, error) {
	return &Sleeper{st: st, gen: int(e.built.Add(1)), clock: e.clock}, nil
}

func (s *Sleeper) Gen(ctx context.Context) (int, error) { return s.gen, nil }

// Stuck blocks in BlockConcurrencyWhile until its ctx is cancelled.
func (s *Sleeper) Stuck(ctx context.Context, entered bool) error {
	return s.st.BlockConcurrencyWhile(ctx, func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	})
}

func (s *Sleeper) Fails(ctx context.Context) error {
	return s.st.BlockConcurrencyWhile(ctx, func(ctx context.Context) error { return errors.New("migration failed") })
}

func (s *Sleeper) Abort(ctx context.Context) error {
	s.st.Abort("enough")
	return errors.New("not reached")
}

func TestBlockConcurrencyWhile_Timeout(t *testing.T) {
	fc := clock.NewFake(time.Unix(0, 0))
	rt := openRuntime(t, durable.Options{Durability: durable.NoSync, Clock: fc})
	e := &sleeperEnv{clock: fc}
	ns := durable.MustRegister(rt, "Sleeper", newSleeper, e)
	stub := ns.GetByName("s")
	if g, _ := durable.Call0(t.Context(), stub, (*Sleeper).Gen); g != 1 {
		t.Fatalf("gen = %d", g)
	}
	done := make(chan error, 1)
	go func() { done <- durable.Do1(context.Background(), stub, (*Sleeper).Stuck, true) }()
	// Wait until Stuck holds the turn: a probe with a short deadline times out.
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
		_, err := durable.Call0(ctx, stub, (*Sleeper).Gen)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			break
		}
	}
	fc.Advance(durable.DefaultBlockConcurrencyTimeout)
	err := <-done
	if !errors.Is(err, durable.ErrBlockTimeout) || !errors.Is(err, durable.ErrObjectReset) {
		t.Fatalf("Stuck err = %v, want ErrBlockTimeout and ErrObjectReset", err)
	}
	if !durable.IsRetryable(err) {
		t.Fatal("reset should be retryable")
	}
	if g, err := durable.Call0(t.Context(), stub, (*Sleeper).Gen); err != nil || g != 2 {
		t.Fatalf("after timeout gen = %d, %v; want a new instance (2)", g, err)
	}
}

func TestReset_FailedBlockAndAbort(t *testing.T) {
	rt := openRuntime(t, durable.Options{Durability: durable.NoSync})
	e := &sleeperEnv{}
	ns := durable.MustRegister(rt, "Sleeper", newSleeper, e)
	stub := ns.GetByName("s")
	err := durable.Do0(t.Context(), stub, (*Sleeper).Fails)
	if !errors.Is(err, durable.ErrObjectReset) {
		t.Fatalf("Fails err = %v, want ErrObjectReset", err)
	}
	if g, _ := durable.Call0(t.Context(), stub, (*Sleeper).Gen); g != 2 {
		t.Fatalf("gen after failed block = %d, want 2", g)
	}
	err = durable.Do0(t.Context(), stub, (*Sleeper).Abort)
	if !errors.Is(err, durable.ErrObjectReset) {
		t.Fatalf("Abort err = %v, want ErrObjectReset", err)
	}
	if g, _ := durable.Call0(t.Context(), stub, (*Sleeper).Gen); g != 3 {
		t.Fatalf("gen after abort = %d, want 3", g)
	}
}

type Blocker struct{ env *blockEnv }
type blockEnv struct {
	entered chan struct{}
	release chan struct{}
}

func newBlocker(st *durable.State, e *blockEnv) (*Blocker, error) { return &Blocker{env: e}, nil }
func (b *Blocker) Hold(ctx context.Context) error {
	b.env.entered <- struct{}{}
	<-b.env.release
	return nil
}
func (b *Blocker) Nop(ctx context.Context) error { return nil }

func TestOverloaded(t *testing.T) {
	rt := openRuntime(t, durable.Options{Durability: durable.NoSync, MaxQueue: 2})
	e := &blockEnv{entered: make(chan struct{}), release: make(chan struct{})}
	ns := durable.MustRegister(rt, "Blocker", newBlocker, e)
	stub := ns.GetByName("b")
	held := make(chan error, 1)
	go func() { held <- durable.Do0(context.Background(), stub, (*Blocker).Hold) }()
	<-e.entered
	// The turn is held: of 10 callers, 2 queue and 8 are refused at once.
	const callers = 10
	results := make(chan error, callers)
	for range callers {
		go func() { results <- durable.Do0(context.Background(), stub, (*Blocker).Nop) }()
	}
	for range callers - 2 {
		err := <-results
		if !errors.Is(err, durable.ErrOverloaded) || !durable.IsOverloaded(err) || durable.IsRetryable(err) {
			t.Fatalf("err = %v, want ErrOverloaded, not retryable", err)
		}
	}
	close(e.release)
	for range 2 {
		if err := <-results; err != nil {
			t.Fatalf("queued call: %v", err)
		}
	}
	if err := <-held; err != nil {
		t.Fatal(err)
	}
}

func TestEviction_ManyObjects(t *testing.T) {
	fc := clock.NewFake(time.Unix(0, 0))
	rt := openRuntime(t, durable.Options{Durability: durable.NoSync, Clock: fc, MaxLiveObjects: -1})
	e := &env{}
	ns := durable.MustRegister(rt, "Counter", newCounter, e)
	runtime.GC()
	base := runtime.NumGoroutine()
	const N = 10000
	for i := range N {
		if _, err := durable.Call1(t.Context(), ns.GetByName(fmt.Sprint("o", i)), (*Counter).Add, i); err != nil {
			t.Fatal(err)
		}
	}
	if got := rt.Stats().Live; got != N {
		t.Fatalf("live = %d, want %d", got, N)
	}
	fc.Advance(durable.DefaultIdleTimeout + time.Second)
	if got := rt.Stats().Live; got != 0 {
		t.Fatalf("live after idle = %d, want 0", got)
	}
	// Evicted objects close on short-lived goroutines that are waited
	// for, but may not have exited the instant the sweep returns.
	waitFor(t, fmt.Sprintf("goroutines back to the baseline of %d", base), func() bool {
		return runtime.NumGoroutine() <= base
	})
	// State is rebuilt: the in-memory count started again from zero.
	if got, _ := durable.Call0(t.Context(), ns.GetByName("o7"), (*Counter).Get); got != 0 {
		t.Fatalf("o7 after eviction = %d, want 0 (memory was dropped)", got)
	}
	if e.built.Load() != N+1 {
		t.Fatalf("built = %d, want %d", e.built.Load(), N+1)
	}
}

type Pinned struct{ Counter }

func newPinned(st *durable.State, e *env) (*Pinned, error) { return &Pinned{}, nil }
func (p *Pinned) Hibernatable() bool                       { return false }

func TestEviction_PinnedIdleTimeout(t *testing.T) {
	fc := clock.NewFake(time.Unix(0, 0))
	rt := openRuntime(t, durable.Options{Durability: durable.NoSync, Clock: fc})
	ns := durable.MustRegister(rt, "Pinned", newPinned, &env{})
	durable.Call1(t.Context(), ns.GetByName("p"), (*Pinned).Add, 1)
	fc.Advance(durable.DefaultIdleTimeout + time.Second)
	if rt.Stats().Live != 1 {
		t.Fatal("pinned object evicted after the short idle time")
	}
	fc.Advance(durable.DefaultPinnedIdleTimeout)
	if rt.Stats().Live != 0 {
		t.Fatal("pinned object not evicted after PinnedIdleTimeout")
	}
}

func TestWaitUntil_KeepsObjectAndIsCancelledOnShutdown(t *testing.T) {
	fc := clock.NewFake(time.Unix(0, 0))
	rt, err := durable.Open(durable.Options{Dir: t.TempDir(), Durability: durable.NoSync, Clock: fc})
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	result := make(chan error, 1)
	ns := durable.MustRegister(rt, "W", func(st *durable.State, _ struct{}) (*Counter, error) {
		st.WaitUntil(func(ctx context.Context) {
			close(started)
			<-ctx.Done()
			result <- ctx.Err()
		})
		return &Counter{st: st}, nil
	}, struct{}{})
	durable.Call0(t.Context(), ns.GetByName("w"), (*Counter).Get)
	<-started
	fc.Advance(time.Hour)
	if rt.Stats().Live != 1 {
		t.Fatal("object with a running WaitUntil was evicted")
	}
	if err := rt.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := <-result; !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitUntil ctx err = %v", err)
	}
}

func TestShutdown(t *testing.T) {
	rt, err := durable.Open(durable.Options{Dir: t.TempDir(), Durability: durable.NoSync})
	if err != nil {
		t.Fatal(err)
	}
	e := &blockEnv{entered: make(chan struct{}), release: make(chan struct{})}
	ns := durable.MustRegister(rt, "Blocker", newBlocker, e)
	done := make(chan error, 1)
	go func() { done <- durable.Do0(context.Background(), ns.GetByName("b"), (*Blocker).Hold) }()
	<-e.entered
	shut := make(chan error, 1)
	go func() { shut <- rt.Shutdown(context.Background()) }()
	// New calls are refused once shutdown began; the one in flight finishes.
	for {
		err := durable.Do0(t.Context(), ns.GetByName("other"), (*Blocker).Nop)
		if errors.Is(err, durable.ErrClosed) {
			break
		}
	}
	close(e.release)
	if err := <-done; err != nil {
		t.Fatalf("in-flight call: %v", err)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	again, err := durable.Open(durable.Options{Dir: rt.Dir()})
	if err != nil {
		t.Fatalf("reopen after shutdown: %v", err)
	}
	again.Close()
}

func TestDataDirLock(t *testing.T) {
	dir := t.TempDir()
	rt := openRuntime(t, durable.Options{Dir: dir, Durability: durable.NoSync})
	_ = rt
	if _, err := durable.Open(durable.Options{Dir: dir}); !errors.Is(err, durable.ErrLocked) {
		t.Fatalf("second Open err = %v, want ErrLocked", err)
	}
}

func TestEOrder(t *testing.T) {
	rt := openRuntime(t, durable.Options{Durability: durable.NoSync})
	e := &PingEnv{}
	ns := durable.MustRegister(rt, "Log", newPonger, e)
	stub := ns.GetByName("log")
	// Noise from other goroutines on the same object.
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
					durable.Call0(context.Background(), stub, (*Ponger).Log)
				}
			}
		}()
	}
	// Calls made in order through one stub arrive in that order.
	for i := range 200 {
		if err := durable.Do1(t.Context(), stub, (*Ponger).Append, fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	log, _ := durable.Call0(t.Context(), stub, (*Ponger).Log)
	for i, s := range log {
		if s != fmt.Sprint(i) {
			t.Fatalf("log[%d] = %s", i, s)
		}
	}
}

func (p *Ponger) Append(ctx context.Context, s string) error {
	p.log = append(p.log, s)
	return nil
}
