package durabletest_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/durable-go/durable"
	"github.com/durable-go/durable/durabletest"
)

func TestClock_Alarm(t *testing.T) {
	rig := newProbeRig(t, durable.Options{})
	stub := rig.ns.GetByName("a")
	if err := durable.Do1(t.Context(), stub, (*Probe).SetAlarmIn, 10*time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := rig.clk.Advance(t.Context(), 10*time.Minute-time.Nanosecond); err != nil {
		t.Fatal(err)
	}
	if fires := rig.env.Fires(); len(fires) != 0 {
		t.Fatalf("alarm fired early, at %v", fires)
	}
	// Advance returns once the handler has run.
	if err := rig.clk.Advance(t.Context(), time.Nanosecond); err != nil {
		t.Fatal(err)
	}
	if fires := rig.env.Fires(); len(fires) != 1 || !fires[0].Equal(t0.Add(10*time.Minute)) {
		t.Errorf("fires = %v, want one at %v", fires, t0.Add(10*time.Minute))
	}
	if n, _ := durable.Call0(t.Context(), stub, (*Probe).Count); n != 1 {
		t.Errorf("count = %d, want 1", n)
	}
}

func TestClock_ChainedAlarms(t *testing.T) {
	// A handler that sets the next alarm ten minutes on: an hour's advance
	// runs each at its time, not all at the end.
	rig := newProbeRig(t, durable.Options{})
	rig.env.alarmEvery = 10 * time.Minute
	if err := durable.Do1(t.Context(), rig.ns.GetByName("a"), (*Probe).SetAlarmIn, 10*time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := rig.clk.Advance(t.Context(), time.Hour); err != nil {
		t.Fatal(err)
	}
	var want []time.Time
	for i := 1; i <= 6; i++ {
		want = append(want, t0.Add(time.Duration(i)*10*time.Minute))
	}
	if got := rig.env.Fires(); !slices.EqualFunc(got, want, time.Time.Equal) {
		t.Errorf("fires = %v, want %v", got, want)
	}
	if got := rig.clk.Now(); !got.Equal(t0.Add(time.Hour)) {
		t.Errorf("Now = %v, want %v", got, t0.Add(time.Hour))
	}
}

func TestClock_Retry(t *testing.T) {
	// A failing alarm is retried on the backoff schedule of the options,
	// driven by the clock.
	rig := newProbeRig(t, durable.Options{AlarmRetryDelay: 2 * time.Second, AlarmRetryJitter: -1})
	rig.env.alarmErr = errors.New("not yet")
	stub := rig.ns.GetByName("a")
	if err := durable.Do1(t.Context(), stub, (*Probe).SetAlarmIn, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := rig.clk.Advance(t.Context(), time.Minute); err != nil {
		t.Fatal(err)
	}
	if st := rig.rt.AlarmStats(); st.Failed != 1 || st.Delivered != 0 {
		t.Fatalf("after the first delivery: %+v, want 1 failure", st)
	}
	rig.env.alarmErr = nil
	if err := rig.clk.Advance(t.Context(), 2*time.Second); err != nil {
		t.Fatal(err)
	}
	want := t0.Add(time.Minute + 2*time.Second)
	if fires := rig.env.Fires(); len(fires) != 1 || !fires[0].Equal(want) {
		t.Errorf("fires = %v, want one retry at %v", fires, want)
	}
}

func TestClock_Eviction(t *testing.T) {
	// An idle object leaves memory once its idle timeout has passed on the
	// clock; its WebSocket stays open (hibernation) and wakes it.
	rig := newProbeRig(t, durable.Options{})
	c := rig.dial(t, "h")
	if got := call(t, c, "add 2"); got != "2" {
		t.Fatalf("add 2 = %q", got)
	}
	if err := durabletest.WaitIdle(t.Context(), rig.rt); err != nil {
		t.Fatal(err)
	}
	if err := rig.clk.Advance(t.Context(), durable.DefaultIdleTimeout/2); err != nil {
		t.Fatal(err)
	}
	if live := rig.rt.Stats().Live; live != 1 {
		t.Fatalf("live objects halfway through the idle timeout = %d, want 1", live)
	}
	if err := rig.clk.Advance(t.Context(), durable.DefaultIdleTimeout); err != nil {
		t.Fatal(err)
	}
	if live := rig.rt.Stats().Live; live != 0 {
		t.Fatalf("live objects after the idle timeout = %d, want 0", live)
	}
	if got := call(t, c, "mem"); got != "0" {
		t.Errorf("memory after hibernation = %q, want 0", got)
	}
	if got := call(t, c, "add 1"); got != "3" {
		t.Errorf("add 1 after hibernation = %q, want 3", got)
	}
}

func TestClock_WaitsForHandlers(t *testing.T) {
	rig := newProbeRig(t, durable.Options{})
	rig.env.alarmBlock = make(chan struct{})
	if err := durable.Do1(t.Context(), rig.ns.GetByName("a"), (*Probe).SetAlarmIn, time.Second); err != nil {
		t.Fatal(err)
	}
	// The handler blocks: Advance gives up when its ctx ends.
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := rig.clk.Advance(ctx, time.Minute); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Advance while a handler blocks = %v, want DeadlineExceeded", err)
	}
	if got := rig.clk.Now(); !got.Equal(t0.Add(time.Second)) {
		t.Errorf("Now = %v, want the alarm's time %v", got, t0.Add(time.Second))
	}
	close(rig.env.alarmBlock)
	// Advance(0) just waits for the handler.
	if err := rig.clk.Advance(t.Context(), 0); err != nil {
		t.Fatal(err)
	}
	if fires := rig.env.Fires(); len(fires) != 1 {
		t.Errorf("fires = %v, want 1", fires)
	}
}

func TestClock_Set(t *testing.T) {
	clk := durabletest.NewClock(t0)
	var ran []time.Time
	clk.AfterFunc(time.Second, func() { ran = append(ran, clk.Now()) })
	stopped := clk.AfterFunc(2*time.Second, func() { t.Error("a stopped timer ran") })
	if !stopped.Stop() {
		t.Error("Stop of a pending timer = false")
	}
	if err := clk.Set(t.Context(), t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if len(ran) != 1 || !ran[0].Equal(t0.Add(time.Second)) {
		t.Errorf("timer ran at %v, want once at %v", ran, t0.Add(time.Second))
	}
	// Never backwards.
	if err := clk.Set(t.Context(), t0); err != nil {
		t.Fatal(err)
	}
	if got := clk.Now(); !got.Equal(t0.Add(time.Hour)) {
		t.Errorf("Now after setting it back = %v, want %v", got, t0.Add(time.Hour))
	}
	if err := clk.Advance(t.Context(), -time.Second); err == nil {
		t.Error("Advance of a negative duration succeeded")
	}
	if now := durabletest.NewClock(time.Time{}).Now(); time.Since(now) > time.Minute || time.Since(now) < 0 {
		t.Errorf("NewClock(zero).Now() = %v, want the wall clock's time", now)
	}
}
