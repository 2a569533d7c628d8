package durabletest_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/durable-go/durable"
	"github.com/durable-go/durable/durabletest"
)

func TestNewRuntime(t *testing.T) {
	t.Run("Isolated", func(t *testing.T) {
		// Two runtimes of one test have separate storage.
		a, b := newProbeRig(t, durable.Options{}), newProbeRig(t, durable.Options{})
		if a.rt.Dir() == b.rt.Dir() {
			t.Fatalf("both runtimes use %s", a.rt.Dir())
		}
		a.add(t, "x", 5)
		if got := b.add(t, "x", 1); got != 1 {
			t.Errorf("second runtime sees the first one's data: count = %d, want 1", got)
		}
	})

	t.Run("ShutDownAtCleanup", func(t *testing.T) {
		var rig *probeRig
		t.Run("Inner", func(t *testing.T) {
			rig = newProbeRig(t, durable.Options{})
			rig.add(t, "x", 1)
			if !exists(rig.rt.Dir()) {
				t.Fatalf("data folder %s missing", rig.rt.Dir())
			}
		})
		// The inner test's cleanup shut its runtime down and removed its data.
		_, err := durable.Call1(t.Context(), rig.ns.GetByName("x"), (*Probe).Add, 1)
		if !errors.Is(err, durable.ErrClosed) {
			t.Errorf("call after the test ended: %v, want ErrClosed", err)
		}
		if exists(rig.rt.Dir()) {
			t.Errorf("data folder %s left behind", rig.rt.Dir())
		}
	})

	t.Run("Reopen", func(t *testing.T) {
		// Dir reopens the data of a runtime that was shut down, as after a
		// restart; the first runtime's cleanup then has nothing to do.
		first := newProbeRig(t, durable.Options{})
		first.add(t, "x", 7)
		if err := first.rt.Shutdown(t.Context()); err != nil {
			t.Fatal(err)
		}
		second := newProbeRig(t, durable.Options{Dir: first.rt.Dir()})
		if got := second.add(t, "x", 1); got != 8 {
			t.Errorf("after reopening: count = %d, want 8", got)
		}
	})

	t.Run("OpenFails", func(t *testing.T) {
		// A folder in use by another runtime cannot be opened: the test
		// fails at once.
		rt := durabletest.NewRuntime(t, durable.Options{})
		rec := &recordingTB{TB: t}
		var fatal string
		done := make(chan struct{})
		go func() {
			defer close(done)
			defer func() { recover() }()
			fatalTB := &fatalRecorder{recordingTB: rec, fatal: &fatal}
			durabletest.NewRuntime(fatalTB, durable.Options{Dir: rt.Dir()})
		}()
		<-done
		rec.finish()
		if !strings.Contains(fatal, "in use by another process") {
			t.Errorf("Fatalf = %q, want the ErrLocked message", fatal)
		}
	})
}

// fatalRecorder records Fatalf and stops the goroutine, as testing.T does.
type fatalRecorder struct {
	*recordingTB
	fatal *string
}

func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.Errorf(format, args...)
	*f.fatal = f.Errors()[len(f.Errors())-1]
	panic("fatal")
}

func TestNewRuntime_ReportsLeftovers(t *testing.T) {
	defer durabletest.SetCleanupGrace(200 * time.Millisecond)()

	t.Run("CallInFlight", func(t *testing.T) {
		// A call still running when the test ends fails it, naming the
		// object; the runtime is shut down once the call returns.
		rec := &recordingTB{TB: t}
		rig := newProbeRig(rec, durable.Options{})
		rec.onError = sync1(func() { close(rig.env.release) })
		errc := make(chan error, 1)
		go func() { errc <- durable.Do0(context.Background(), rig.ns.GetByName("stuck"), (*Probe).Block) }()
		recv(t, rig.env.entered, "the call to start")
		rec.finish()
		if err := recv(t, errc, "the blocked call"); err != nil {
			t.Errorf("the blocked call: %v", err)
		}
		errs := rec.Errors()
		if len(errs) != 1 || !strings.Contains(errs[0], `Probe `) || !strings.Contains(errs[0], `("stuck"): 1 call in flight`) {
			t.Errorf("errors = %q, want one naming the stuck call", errs)
		}
	})

	t.Run("WaitUntil", func(t *testing.T) {
		// A WaitUntil function still running fails the test; Shutdown then
		// cancels it.
		rec := &recordingTB{TB: t}
		rig := newProbeRig(rec, durable.Options{})
		if err := durable.Do0(t.Context(), rig.ns.GetByName("bg"), (*Probe).Background); err != nil {
			t.Fatal(err)
		}
		rec.finish()
		errs := rec.Errors()
		if len(errs) != 1 || !strings.Contains(errs[0], `("bg"): 1 WaitUntil function running`) {
			t.Errorf("errors = %q, want one naming the WaitUntil function", errs)
		}
	})

	t.Run("Finished", func(t *testing.T) {
		// Work that ends during the grace period is not reported.
		rec := &recordingTB{TB: t}
		rig := newProbeRig(rec, durable.Options{})
		if err := durable.Do0(t.Context(), rig.ns.GetByName("bg"), (*Probe).Background); err != nil {
			t.Fatal(err)
		}
		rig.add(rec, "other", 1)
		close(rig.env.release) // the function may still be returning
		rec.finish()
		if errs := rec.Errors(); len(errs) != 0 {
			t.Errorf("errors = %q, want none", errs)
		}
	})

	t.Run("FailedTest", func(t *testing.T) {
		// In a test that already failed, what still runs is logged, not
		// reported as another failure.
		rec := &recordingTB{TB: t}
		rig := newProbeRig(rec, durable.Options{})
		if err := durable.Do0(t.Context(), rig.ns.GetByName("bg"), (*Probe).Background); err != nil {
			t.Fatal(err)
		}
		rec.Fail()
		rec.finish()
		if errs := rec.Errors(); len(errs) != 0 {
			t.Errorf("errors = %q, want none", errs)
		}
		if logs := strings.Join(rec.Logs(), "\n"); !strings.Contains(logs, "1 WaitUntil function running") {
			t.Errorf("logs = %q, want the WaitUntil function", logs)
		}
	})
}

// sync1 returns a function that calls f the first time only.
func sync1(f func()) func() {
	done := false
	return func() {
		if !done {
			done = true
			f()
		}
	}
}

func TestNewRuntime_Logs(t *testing.T) {
	// The runtime's warnings reach the test's log: here, a failing alarm.
	rec := &recordingTB{TB: t}
	rig := newProbeRig(rec, durable.Options{})
	rig.env.alarmErr = errors.New("alarm went wrong")
	if err := durable.Do1(t.Context(), rig.ns.GetByName("a"), (*Probe).SetAlarmIn, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := rig.clk.Advance(t.Context(), time.Minute); err != nil {
		t.Fatal(err)
	}
	rec.finish()
	if logs := strings.Join(rec.Logs(), "\n"); !strings.Contains(logs, "alarm went wrong") {
		t.Errorf("logs = %q, want the alarm's failure", logs)
	}
}

func TestWaitIdle(t *testing.T) {
	rig := newProbeRig(t, durable.Options{})
	if err := durabletest.WaitIdle(t.Context(), rig.rt); err != nil {
		t.Fatalf("idle runtime: %v", err)
	}
	if err := durable.Do0(t.Context(), rig.ns.GetByName("bg"), (*Probe).Background); err != nil {
		t.Fatal(err)
	}
	// A WaitUntil function keeps the runtime busy: the error names it.
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	err := durabletest.WaitIdle(ctx, rig.rt)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), `Probe`) || !strings.Contains(err.Error(), `("bg"): 1 WaitUntil function running`) {
		t.Errorf("WaitIdle while busy: %v", err)
	}
	close(rig.env.release)
	if err := durabletest.WaitIdle(t.Context(), rig.rt); err != nil {
		t.Errorf("WaitIdle once it ended: %v", err)
	}
}
