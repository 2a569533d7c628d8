// Package durabletest helps test code built on package durable, the way
// net/http/httptest helps test HTTP handlers. Import it from your own
// _test.go files.
//
// # Usage
//
// NewRuntime opens a runtime for one test, over its own data folder in
// t.TempDir(), and shuts it down when the test ends:
//
//	func TestCounter(t *testing.T) {
//		clk := durabletest.NewClock(time.Time{})
//		rt := durabletest.NewRuntime(t, durable.Options{Clock: clk})
//		counters := durable.MustRegister(rt, "Counter", NewCounter, clk.Now)
//		stub := counters.GetByName("visits")
//
//		n, err := durable.Call1(t.Context(), stub, (*Counter).Add, 2)
//		...
//		// Look inside the object, in one of its turns.
//		err = durabletest.RunIn(t.Context(), stub, func(ctx context.Context, c *Counter, st *durable.State) error {
//			...
//		})
//		// Fire its alarm now, or let the fake clock reach it.
//		ran, err := durabletest.FireAlarm(t.Context(), stub)
//		err = clk.Advance(t.Context(), time.Hour)
//		// Take it out of memory, as the runtime does when it is idle.
//		evicted, err := durabletest.Evict(t.Context(), stub, durabletest.Hibernate)
//	}
//
// The helpers mirror Cloudflare's cloudflare:test module:
//
//   - RunIn runs a function inside a live object's turn, with the object
//     and its State (runInDurableObject).
//   - FireAlarm runs an object's alarm now and reports whether one ran
//     (runDurableObjectAlarm).
//   - Evict and EvictAll take objects out of memory, their WebSockets
//     hibernating or closed (evictDurableObject, evictAllDurableObjects).
//   - ListIDs lists the objects of a namespace that have stored data
//     (listDurableObjectIds).
//   - Clock is a fake clock: advancing it fires alarms, evicts idle objects
//     and hibernates their WebSockets, without sleeping.
//   - NewServer serves a handler (durable.Route, your mux) on a loopback
//     port; DialWebSocket connects a WebSocket test client to it.
//   - WaitIdle waits until nothing runs in a runtime.
//
// # The caller's duties
//
//   - Call the helpers that take a testing.TB from the test's goroutine.
//   - Leave nothing running when the test ends: a call still in flight or
//     a WaitUntil function still running after a grace period fails the
//     test, naming the objects (see NewRuntime).
//   - Bound waits with a ctx; the waits of this package default to
//     DefaultTimeout when ctx has no deadline.
//   - Objects that need the time should take it from the clock the runtime
//     uses (for example a func() time.Time in their environment, such as
//     Clock.Now), not from time.Now, so that tests can move it.
package durabletest
