package durabletest_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/durable-go/durable"
	"github.com/durable-go/durable/durabletest"
)

// Counter is the object of the examples.
type Counter struct {
	st  *durable.State
	now func() time.Time
}

func NewCounter(st *durable.State, now func() time.Time) (*Counter, error) {
	return &Counter{st: st, now: now}, nil
}

// Add adds n to the count and returns it.
func (c *Counter) Add(ctx context.Context, n int) (int, error) {
	v, _, err := durable.Get[int](c.st.Storage(), "count")
	if err != nil {
		return 0, err
	}
	v += n
	return v, c.st.Storage().Put("count", v)
}

// ResetIn resets the count to zero after d, with an alarm.
func (c *Counter) ResetIn(ctx context.Context, d time.Duration) error {
	return c.st.Storage().SetAlarm(c.now().Add(d))
}

// Alarm resets the count.
func (c *Counter) Alarm(ctx context.Context, info durable.AlarmInfo) error {
	fmt.Println("alarm at", info.Time.Format(time.Kitchen))
	return c.st.Storage().Put("count", 0)
}

// ServeHTTP accepts WebSockets; each message adds its length to the count.
func (c *Counter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, err := c.st.AcceptWebSocket(w, r); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
	}
}

func (c *Counter) WebSocketMessage(ctx context.Context, ws *durable.WebSocket, msg durable.Message) error {
	n, err := c.Add(ctx, len(msg.Data))
	if err != nil {
		return err
	}
	return ws.SendText(ctx, fmt.Sprint(n))
}

// exampleT stands in for the *testing.T of a real test, which examples
// cannot have: in a test, pass t itself.
type exampleT struct {
	testing.TB
	cleanups []func()
}

func newExampleT() *exampleT { return &exampleT{} }

func (t *exampleT) Helper()                           {}
func (t *exampleT) Cleanup(f func())                  { t.cleanups = append(t.cleanups, f) }
func (t *exampleT) Context() context.Context          { return context.Background() }
func (t *exampleT) Failed() bool                      { return false }
func (t *exampleT) Log(args ...any)                   {}
func (t *exampleT) Logf(format string, args ...any)   { fmt.Printf(format+"\n", args...) }
func (t *exampleT) Errorf(format string, args ...any) { fmt.Printf(format+"\n", args...) }
func (t *exampleT) Fatalf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }

func (t *exampleT) TempDir() string {
	dir, err := os.MkdirTemp("", "durabletest-example")
	if err != nil {
		panic(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// done runs the cleanups, as the end of a test does.
func (t *exampleT) done() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
}

func Example() {
	t := newExampleT() // your test's *testing.T
	defer t.done()

	clk := durabletest.NewClock(time.Date(2030, 1, 1, 9, 0, 0, 0, time.UTC))
	rt := durabletest.NewRuntime(t, durable.Options{Clock: clk})
	counters := durable.MustRegister(rt, "Counter", NewCounter, clk.Now)
	stub := counters.GetByName("visits")

	n, err := durable.Call1(t.Context(), stub, (*Counter).Add, 2)
	fmt.Println("count:", n, err)

	// The count resets an hour later: move the clock there.
	if err := durable.Do1(t.Context(), stub, (*Counter).ResetIn, time.Hour); err != nil {
		t.Fatalf("ResetIn: %v", err)
	}
	if err := clk.Advance(t.Context(), time.Hour); err != nil {
		t.Fatalf("Advance: %v", err)
	}
	n, err = durable.Call1(t.Context(), stub, (*Counter).Add, 0)
	fmt.Println("count:", n, err)
	// Output:
	// count: 2 <nil>
	// alarm at 10:00AM
	// count: 0 <nil>
}

func ExampleRunIn() {
	t := newExampleT() // your test's *testing.T
	defer t.done()
	rt := durabletest.NewRuntime(t, durable.Options{})
	counters := durable.MustRegister(rt, "Counter", NewCounter, time.Now)
	stub := counters.GetByName("visits")

	// Write the object's storage directly, in one of its turns.
	err := durabletest.RunIn(t.Context(), stub, func(ctx context.Context, c *Counter, st *durable.State) error {
		name, _ := st.Name()
		fmt.Println("inside", name)
		return st.Storage().Put("count", 41)
	})
	if err != nil {
		t.Fatalf("RunIn: %v", err)
	}
	n, err := durable.Call1(t.Context(), stub, (*Counter).Add, 1)
	fmt.Println("count:", n, err)
	// Output:
	// inside visits
	// count: 42 <nil>
}

func ExampleFireAlarm() {
	t := newExampleT() // your test's *testing.T
	defer t.done()
	now := func() time.Time { return time.Date(2030, 1, 1, 9, 0, 0, 0, time.UTC) }
	rt := durabletest.NewRuntime(t, durable.Options{})
	counters := durable.MustRegister(rt, "Counter", NewCounter, now)
	stub := counters.GetByName("visits")

	ran, err := durabletest.FireAlarm(t.Context(), stub)
	fmt.Println("no alarm set:", ran, err)

	if err := durable.Do1(t.Context(), stub, (*Counter).ResetIn, 24*time.Hour); err != nil {
		t.Fatalf("ResetIn: %v", err)
	}
	// The alarm set for tomorrow runs now.
	ran, err = durabletest.FireAlarm(t.Context(), stub)
	fmt.Println("ran:", ran, err)
	// Output:
	// no alarm set: false <nil>
	// alarm at 9:00AM
	// ran: true <nil>
}

func ExampleEvict() {
	t := newExampleT() // your test's *testing.T
	defer t.done()
	rt := durabletest.NewRuntime(t, durable.Options{})
	counters := durable.MustRegister(rt, "Counter", NewCounter, time.Now)
	stub := counters.GetByName("visits")
	if _, err := durable.Call1(t.Context(), stub, (*Counter).Add, 1); err != nil {
		t.Fatalf("Add: %v", err)
	}

	evicted, err := durabletest.Evict(t.Context(), stub, durabletest.Hibernate)
	fmt.Println("evicted:", evicted, err, "- in memory:", rt.Stats().Live)

	// The next call constructs the object again, from its storage.
	n, err := durable.Call1(t.Context(), stub, (*Counter).Add, 1)
	fmt.Println("count:", n, err, "- in memory:", rt.Stats().Live)
	// Output:
	// evicted: true <nil> - in memory: 0
	// count: 2 <nil> - in memory: 1
}

func ExampleListIDs() {
	t := newExampleT() // your test's *testing.T
	defer t.done()
	rt := durabletest.NewRuntime(t, durable.Options{})
	counters := durable.MustRegister(rt, "Counter", NewCounter, time.Now)
	for _, name := range []string{"a", "b"} {
		if _, err := durable.Call1(t.Context(), counters.GetByName(name), (*Counter).Add, 1); err != nil {
			t.Fatalf("Add: %v", err)
		}
	}

	ids, err := durabletest.ListIDs(counters)
	fmt.Println(len(ids), "objects with data", err)
	idA, _ := counters.IDFromName("a")
	for _, id := range ids {
		if id.Equal(idA) {
			fmt.Println("a is one of them")
		}
	}
	// Output:
	// 2 objects with data <nil>
	// a is one of them
}

func ExampleClock() {
	t := newExampleT() // your test's *testing.T
	defer t.done()
	clk := durabletest.NewClock(time.Date(2030, 1, 1, 9, 0, 0, 0, time.UTC))
	rt := durabletest.NewRuntime(t, durable.Options{Clock: clk})
	counters := durable.MustRegister(rt, "Counter", NewCounter, clk.Now)
	if _, err := durable.Call1(t.Context(), counters.GetByName("visits"), (*Counter).Add, 1); err != nil {
		t.Fatalf("Add: %v", err)
	}
	fmt.Println("in memory:", rt.Stats().Live)

	// An idle object leaves memory after Options.IdleTimeout.
	if err := clk.Advance(t.Context(), durable.DefaultIdleTimeout+time.Second); err != nil {
		t.Fatalf("Advance: %v", err)
	}
	fmt.Println("in memory:", rt.Stats().Live, "at", clk.Now().Format(time.TimeOnly))
	// Output:
	// in memory: 1
	// in memory: 0 at 09:00:11
}

func ExampleDialWebSocket() {
	t := newExampleT() // your test's *testing.T
	defer t.done()
	rt := durabletest.NewRuntime(t, durable.Options{})
	counters := durable.MustRegister(rt, "Counter", NewCounter, time.Now)
	srv := durabletest.NewServer(t, durable.Route(counters)) // /{name}/... reaches the object called name

	ws, err := durabletest.DialWebSocket(t.Context(), srv.URL+"/visits/ws", nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer ws.CloseNow()
	for _, msg := range []string{"hello", "world!"} {
		if err := ws.SendText(t.Context(), msg); err != nil {
			t.Fatalf("send: %v", err)
		}
		reply, err := ws.ReceiveText(t.Context())
		fmt.Println(reply, err)
	}

	// The object hibernates: the socket stays connected, and its next
	// message constructs the object again.
	if _, err := durabletest.EvictAll(t.Context(), rt, durabletest.Hibernate); err != nil {
		t.Fatalf("EvictAll: %v", err)
	}
	if err := ws.SendText(t.Context(), "!"); err != nil {
		t.Fatalf("send: %v", err)
	}
	reply, err := ws.ReceiveText(t.Context())
	fmt.Println(reply, err)

	// Shutting the runtime down closes the socket with 1001 (going away).
	if err := rt.Shutdown(t.Context()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	code, _, err := ws.ExpectClose(t.Context())
	fmt.Println("closed:", code, err)
	// Output:
	// 5 <nil>
	// 11 <nil>
	// 12 <nil>
	// closed: 1001 <nil>
}
