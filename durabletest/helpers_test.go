package durabletest_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durable-go/durable"
	"github.com/durable-go/durable/durabletest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Probe is the test object: a counter in KV storage and in memory, an
// alarm, a blocking method, WaitUntil, HTTP and WebSockets.
type Probe struct {
	st  *durable.State
	env *probeEnv
	mem int // the count as this activation has seen it; lost at eviction
}

type probeEnv struct {
	now   func() time.Time
	built atomic.Int64 // constructions

	// Alarm behaviour, set before the alarm runs.
	alarmErr   error         // returned by Alarm if set
	alarmEvery time.Duration // Alarm sets the next alarm this much later if set
	alarmBlock chan struct{} // Alarm waits for it to be closed if set

	mu     sync.Mutex  // guards fires
	fires  []time.Time // clock time of each Alarm run
	closes chan string // WebSocketClose events: "code wasClean"

	release chan struct{} // Block and the WaitUntil of Background wait for it
	entered chan struct{} // Block sends on it once it runs
}

func newProbeEnv(now func() time.Time) *probeEnv {
	return &probeEnv{
		now:     now,
		closes:  make(chan string, 16),
		release: make(chan struct{}),
		entered: make(chan struct{}, 16),
	}
}

func (e *probeEnv) Fires() []time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]time.Time(nil), e.fires...)
}

func newProbe(st *durable.State, e *probeEnv) (*Probe, error) {
	e.built.Add(1)
	return &Probe{st: st, env: e}, nil
}

// Add adds n to the stored count and returns it.
func (p *Probe) Add(ctx context.Context, n int) (int, error) {
	var v int
	if _, err := p.st.Storage().Get("n", &v); err != nil {
		return 0, err
	}
	v += n
	p.mem = v
	return v, p.st.Storage().Put("n", v)
}

// Count returns the stored count.
func (p *Probe) Count(ctx context.Context) (int, error) {
	v, _, err := durable.Get[int](p.st.Storage(), "n")
	return v, err
}

// Mem returns the count this activation has seen.
func (p *Probe) Mem(ctx context.Context) (int, error) { return p.mem, nil }

// SetAlarmIn sets the alarm d from now (the env's clock).
func (p *Probe) SetAlarmIn(ctx context.Context, d time.Duration) error {
	return p.st.Storage().SetAlarm(p.env.now().Add(d))
}

// AlarmSet reports whether an alarm is set.
func (p *Probe) AlarmSet(ctx context.Context) (bool, error) {
	_, ok, err := p.st.Storage().GetAlarm()
	return ok, err
}

func (p *Probe) Alarm(ctx context.Context, info durable.AlarmInfo) error {
	if p.env.alarmBlock != nil {
		<-p.env.alarmBlock
	}
	if p.env.alarmErr != nil {
		return p.env.alarmErr
	}
	p.env.mu.Lock()
	p.env.fires = append(p.env.fires, p.env.now())
	p.env.mu.Unlock()
	if _, err := p.Add(ctx, 1); err != nil {
		return err
	}
	if p.env.alarmEvery > 0 {
		return p.st.Storage().SetAlarm(p.env.now().Add(p.env.alarmEvery))
	}
	return nil
}

// Block holds the object's turn until env.release is closed.
func (p *Probe) Block(ctx context.Context) error {
	p.env.entered <- struct{}{}
	<-p.env.release
	return nil
}

// Background starts a WaitUntil function that runs until env.release is
// closed or its ctx ends.
func (p *Probe) Background(ctx context.Context) error {
	p.st.WaitUntil(func(ctx context.Context) {
		select {
		case <-p.env.release:
		case <-ctx.Done():
		}
	})
	return nil
}

// ServeHTTP serves /ws (a WebSocket; ?proto= subprotocols, ?origin=
// patterns) and /count.
func (p *Probe) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	switch r.URL.Path {
	case "/ws":
		_, err := p.st.AcceptWebSocketWith(w, r, durable.AcceptOptions{Subprotocols: q["proto"], OriginPatterns: q["origin"]})
		switch {
		case errors.Is(err, durable.ErrWebSocketOrigin):
			http.Error(w, err.Error(), http.StatusForbidden)
		case err != nil:
			http.Error(w, err.Error(), http.StatusBadRequest)
		}
	case "/count":
		n, err := p.Count(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, n)
	default:
		http.NotFound(w, r)
	}
}

// WebSocketMessage obeys commands: "echo" sends the message back (text or
// binary), "add N" adds and answers the count, "mem" answers the count in
// memory, "close CODE REASON" closes the socket, "split" sends two
// messages.
func (p *Probe) WebSocketMessage(ctx context.Context, ws *durable.WebSocket, msg durable.Message) error {
	if msg.Type == durable.BinaryMessage {
		return ws.Send(ctx, msg)
	}
	cmd, arg, _ := strings.Cut(msg.Text(), " ")
	switch cmd {
	case "echo":
		return ws.SendText(ctx, arg)
	case "add":
		n, _ := strconv.Atoi(arg)
		v, err := p.Add(ctx, n)
		if err != nil {
			return err
		}
		return ws.SendText(ctx, strconv.Itoa(v))
	case "mem":
		return ws.SendText(ctx, strconv.Itoa(p.mem))
	case "close":
		code, reason, _ := strings.Cut(arg, " ")
		c, _ := strconv.Atoi(code)
		return ws.Close(ctx, c, reason)
	case "split":
		if err := ws.SendText(ctx, "one"); err != nil {
			return err
		}
		return ws.SendText(ctx, "two")
	}
	return ws.SendText(ctx, "unknown "+cmd)
}

func (p *Probe) WebSocketClose(ctx context.Context, ws *durable.WebSocket, code int, reason string, wasClean bool) error {
	select {
	case p.env.closes <- fmt.Sprintf("%d %v", code, wasClean):
	default:
	}
	return nil
}

// probeRig is a runtime on a fake clock with a Probe namespace and an
// HTTP server routing /{name}/... to the probes.
type probeRig struct {
	rt  *durable.Runtime
	clk *durabletest.Clock
	env *probeEnv
	ns  *durable.Namespace[Probe]
	url string
}

// t0 is where the rigs' clocks start.
var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func newProbeRig(t testing.TB, opts durable.Options) *probeRig {
	t.Helper()
	clk := durabletest.NewClock(t0)
	opts.Clock = clk
	rt := durabletest.NewRuntime(t, opts)
	env := newProbeEnv(clk.Now)
	ns := durable.MustRegister(rt, "Probe", newProbe, env)
	srv := durabletest.NewServer(t, durable.Route(ns))
	return &probeRig{rt: rt, clk: clk, env: env, ns: ns, url: srv.URL}
}

// add calls Probe.Add on the object called name.
func (r *probeRig) add(t testing.TB, name string, n int) int {
	t.Helper()
	v, err := durable.Call1(t.Context(), r.ns.GetByName(name), (*Probe).Add, n)
	if err != nil {
		t.Fatalf("Add(%s, %d): %v", name, n, err)
	}
	return v
}

// dial connects a WebSocket to the object called name.
func (r *probeRig) dial(t testing.TB, name string) *durabletest.WebSocket {
	t.Helper()
	c, err := durabletest.DialWebSocket(t.Context(), r.url+"/"+name+"/ws", nil)
	if err != nil {
		t.Fatalf("dial %s: %v", name, err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

// call sends a command on c and returns the text reply.
func call(t testing.TB, c *durabletest.WebSocket, cmd string) string {
	t.Helper()
	if err := c.SendText(t.Context(), cmd); err != nil {
		t.Fatalf("send %q: %v", cmd, err)
	}
	got, err := c.ReceiveText(t.Context())
	if err != nil {
		t.Fatalf("reply to %q: %v", cmd, err)
	}
	return got
}

// recordingTB is a testing.TB whose failures and logs are recorded, not
// reported, and whose cleanups run when finish is called: tests of the
// harness's own reports use it. What it does not override goes to the real
// test.
type recordingTB struct {
	testing.TB
	onError func() // called after each Errorf, if set

	mu       sync.Mutex // guards the fields below
	errs     []string
	logs     []string
	failed   bool
	cleanups []func()
}

func (r *recordingTB) Helper() {}

func (r *recordingTB) Cleanup(f func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cleanups = append(r.cleanups, f)
}

func (r *recordingTB) Errorf(format string, args ...any) {
	r.mu.Lock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
	r.failed = true
	r.mu.Unlock()
	if r.onError != nil {
		r.onError()
	}
}

func (r *recordingTB) Fatalf(format string, args ...any) {
	r.TB.Helper()
	r.TB.Fatalf("unexpected Fatalf from the harness: "+format, args...)
}

func (r *recordingTB) Fail() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failed = true
}

func (r *recordingTB) Failed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failed
}

func (r *recordingTB) Log(args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.logs = append(r.logs, fmt.Sprint(args...))
}

func (r *recordingTB) Logf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.logs = append(r.logs, fmt.Sprintf(format, args...))
}

// finish runs the cleanups, last registered first, as the end of a test
// does.
func (r *recordingTB) finish() {
	for {
		r.mu.Lock()
		n := len(r.cleanups)
		if n == 0 {
			r.mu.Unlock()
			return
		}
		f := r.cleanups[n-1]
		r.cleanups = r.cleanups[:n-1]
		r.mu.Unlock()
		f()
	}
}

func (r *recordingTB) Errors() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.errs...)
}

func (r *recordingTB) Logs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.logs...)
}

// recv receives from ch, failing the test if nothing comes within
// durabletest.DefaultTimeout.
func recv[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(durabletest.DefaultTimeout):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// exists reports whether path exists.
func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
