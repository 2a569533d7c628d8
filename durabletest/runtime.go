package durabletest

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/durable-go/durable"
	"github.com/durable-go/durable/internal/hook"
)

// DefaultTimeout bounds the waits of this package (WaitIdle, Evict,
// EvictAll, Clock.Advance and Clock.Set, and the WebSocket client) when
// their ctx has no deadline, so that a stuck test fails with an error
// instead of hanging until go test's -timeout.
const DefaultTimeout = 10 * time.Second

// cleanupGrace is how long the end of a test waits for calls and WaitUntil
// functions to finish before reporting them (a call whose reply the test
// got may still be finishing). Tests of this package shorten it.
var cleanupGrace = 5 * time.Second

// shutdownTimeout bounds the Shutdown that ends a test's runtime.
const shutdownTimeout = 10 * time.Second

// NewRuntime opens a runtime for the test tb and shuts it down when tb
// ends (with tb.Cleanup). opts are durable.Options with these defaults:
//
//   - Dir: a new folder from tb.TempDir(), so each runtime has its own
//     storage. Set it to reopen a folder, as after a restart.
//   - Logger: warnings and errors of the runtime go to the test's log.
//   - Clock: the wall clock. Pass a *Clock to drive time yourself; its
//     Advance then waits for the alarms it makes due in this runtime.
//
// NewRuntime fails the test if the runtime cannot be opened.
//
// At the end of the test, calls still in flight and WaitUntil functions
// still running fail it (tb.Errorf names each object and what it runs),
// once they have had a few seconds to finish: a test should wait for what
// it starts. The runtime is then shut down, which closes its WebSockets
// with 1001 (going away); a Shutdown that fails also fails the test.
// Calling Shutdown earlier, for example to reopen Dir, is fine.
func NewRuntime(tb testing.TB, opts durable.Options) *durable.Runtime {
	tb.Helper()
	if opts.Dir == "" {
		opts.Dir = tb.TempDir()
	}
	var logs *testLog
	if opts.Logger == nil {
		logs = &testLog{tb: tb}
		opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	rt, err := durable.Open(opts)
	if err != nil {
		tb.Fatalf("durabletest: open runtime: %v", err)
	}
	clk, _ := opts.Clock.(*Clock)
	if clk != nil {
		clk.attach(rt)
	}
	tb.Cleanup(func() {
		endRuntime(tb, rt)
		if clk != nil {
			clk.detach(rt)
		}
		if logs != nil {
			logs.stop()
		}
	})
	return rt
}

// endRuntime reports what still runs in rt, then shuts it down.
func endRuntime(tb testing.TB, rt *durable.Runtime) {
	tb.Helper()
	if tb.Failed() {
		// What still runs is likely a consequence of the failure: say it,
		// without waiting for it.
		if left := hook.Running(rt); len(left) > 0 {
			tb.Logf("durabletest: still running at the end of the failed test:\n\t%s", strings.Join(left, "\n\t"))
		}
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), cleanupGrace)
		err := WaitIdle(ctx, rt)
		cancel()
		if left := hook.Running(rt); err != nil && len(left) > 0 {
			tb.Errorf("durabletest: still running at the end of the test (after waiting %v; wait for what the test starts):\n\t%s",
				cleanupGrace, strings.Join(left, "\n\t"))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := rt.Shutdown(ctx); err != nil {
		tb.Errorf("durabletest: shut the runtime down: %v", err)
	}
}

// testLog writes the runtime's log records to the test's log, until the
// runtime is shut down.
type testLog struct {
	tb      testing.TB
	mu      sync.Mutex // guards stopped; held while writing to tb
	stopped bool
}

func (l *testLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.stopped {
		l.tb.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

func (l *testLog) stop() {
	l.mu.Lock()
	l.stopped = true
	l.mu.Unlock()
}

// NewServer starts an httptest.Server serving h on a loopback port, and
// closes it when tb ends. Cleanups run last in, first out, so a server
// made after the runtime whose objects it serves closes before that runtime
// shuts down. h is typically durable.Route of a namespace, or a mux
// around it; connect WebSockets to the server's URL with DialWebSocket.
func NewServer(tb testing.TB, h http.Handler) *httptest.Server {
	tb.Helper()
	srv := httptest.NewServer(h)
	tb.Cleanup(srv.Close)
	return srv
}

// WaitIdle waits until nothing runs in rt: no call in flight (running, or
// waiting for its object's turn), no WaitUntil function running, no alarm
// delivery due. It returns at once if rt is shut down. If ctx ends first
// (after DefaultTimeout if it has no deadline), the error names what still
// runs.
//
// New calls may start as soon as it returns: WaitIdle is for tests that
// control what calls their objects.
func WaitIdle(ctx context.Context, rt *durable.Runtime) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var left []string
	err := poll(ctx, func() bool {
		left = hook.Running(rt)
		return len(left) == 0
	})
	if err != nil {
		return fmt.Errorf("durabletest: waiting for the runtime to be idle: %w; still running:\n\t%s", err, strings.Join(left, "\n\t"))
	}
	return nil
}

// withTimeout gives ctx a deadline of DefaultTimeout if it has none.
func withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, DefaultTimeout)
}

// poll calls cond until it reports true, backing off from 50µs to 10ms
// between calls, and returns ctx's error if ctx ends first.
func poll(ctx context.Context, cond func() bool) error {
	wait := 50 * time.Microsecond
	for !cond() {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return context.Cause(ctx)
		case <-t.C:
		}
		wait = min(2*wait, 10*time.Millisecond)
	}
	return nil
}
