package durable_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durable-go/durable"
	"github.com/durable-go/durable/internal/clock"
	"github.com/durable-go/durable/internal/storage"
	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"
)

// t0 is where the fake clocks of the alarm tests start.
var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// noEviction keeps idle objects in memory while a test advances its fake
// clock by hours. (Eviction racing with a new call to the same object can
// fail the call with "database is locked": a known engine issue.)
const noEviction = 1000 * time.Hour

// Ticker is an object with an alarm handler; tests steer the handler
// through the Ticker's env.
type Ticker struct {
	st  *durable.State
	env *tickerEnv
}

type tickerEnv struct {
	clock durable.Clock
	built atomic.Int64
	// handle, if set, gives the handler's result (set before any call).
	handle func(tk *Ticker, ctx context.Context, info durable.AlarmInfo) error
	// probe, if set, is called by Probe (set before any call).
	probe func(name string)
	// held receives a value when Hold starts; Hold returns when release
	// is closed.
	held, release chan struct{}

	mu    sync.Mutex // guards fires
	fires []tickerFire
}

// tickerFire is one call of Ticker.Alarm.
type tickerFire struct {
	name   string
	info   durable.AlarmInfo
	at     time.Time // clock time of the call
	seen   time.Time // GetAlarm inside the handler
	seenOK bool
}

func (e *tickerEnv) Fires() []tickerFire {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]tickerFire(nil), e.fires...)
}

func newTicker(st *durable.State, e *tickerEnv) (*Ticker, error) {
	e.built.Add(1)
	return &Ticker{st: st, env: e}, nil
}

func (tk *Ticker) Alarm(ctx context.Context, info durable.AlarmInfo) error {
	seen, ok, err := tk.st.Storage().GetAlarm()
	if err != nil {
		return err
	}
	name, _ := tk.st.Name()
	tk.env.mu.Lock()
	tk.env.fires = append(tk.env.fires, tickerFire{name: name, info: info, at: tk.env.clock.Now(), seen: seen, seenOK: ok})
	tk.env.mu.Unlock()
	if tk.env.handle != nil {
		return tk.env.handle(tk, ctx, info)
	}
	return nil
}

// AlarmView is an alarm as RPC results carry it.
type AlarmView struct {
	At time.Time
	OK bool
}

func (tk *Ticker) Set(ctx context.Context, at time.Time) error {
	return tk.st.Storage().SetAlarm(at)
}

func (tk *Ticker) Get(ctx context.Context) (AlarmView, error) {
	at, ok, err := tk.st.Storage().GetAlarm()
	return AlarmView{At: at, OK: ok}, err
}

func (tk *Ticker) Delete(ctx context.Context) error { return tk.st.Storage().DeleteAlarm() }

// Hold keeps the object's turn until env.release is closed.
func (tk *Ticker) Hold(ctx context.Context) error {
	tk.env.held <- struct{}{}
	<-tk.env.release
	return nil
}

// Probe calls env.probe with the object's name, inside a turn.
func (tk *Ticker) Probe(ctx context.Context) error {
	name, _ := tk.st.Name()
	tk.env.probe(name)
	return nil
}

func (tk *Ticker) DeleteAll(ctx context.Context) error { return tk.st.Storage().DeleteAll() }

func (tk *Ticker) SetThenFail(ctx context.Context, at time.Time) error {
	if err := tk.st.Storage().SetAlarm(at); err != nil {
		return err
	}
	return errors.New("changed my mind")
}

func (tk *Ticker) DeleteThenFail(ctx context.Context) error {
	if err := tk.st.Storage().DeleteAlarm(); err != nil {
		return err
	}
	return errors.New("changed my mind")
}

func (tk *Ticker) SetThenPanic(ctx context.Context, at time.Time) error {
	if err := tk.st.Storage().SetAlarm(at); err != nil {
		return err
	}
	panic("changed my mind")
}

var errUndo = errors.New("undo")

// SetInFailedSavepoint sets the alarm inside a TransactionSync that fails;
// the turn itself succeeds.
func (tk *Ticker) SetInFailedSavepoint(ctx context.Context, at time.Time) error {
	err := tk.st.Storage().TransactionSync(func() error {
		if err := tk.st.Storage().SetAlarm(at); err != nil {
			return err
		}
		return errUndo
	})
	if errors.Is(err, errUndo) {
		return nil
	}
	return err
}

// SetKind tries SetAlarm and names the outcome.
func (tk *Ticker) SetKind(ctx context.Context, at time.Time) (string, error) {
	return errKind(tk.st.Storage().SetAlarm(at)), nil
}

func errKind(err error) string {
	var ae *durable.ArgError
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, durable.ErrNoAlarmHandler):
		return "no handler"
	case errors.As(err, &ae):
		return "bad argument"
	}
	return err.Error()
}

// Plain has no alarm handler.
type Plain struct{ st *durable.State }

type plainEnv struct{ ctorAlarm time.Time }

func newPlain(st *durable.State, e *plainEnv) (*Plain, error) {
	if !e.ctorAlarm.IsZero() {
		if _, ok, err := st.Storage().GetAlarm(); err != nil || ok {
			return &Plain{st: st}, err // set once only
		}
		if err := st.Storage().SetAlarm(e.ctorAlarm); err != nil {
			return nil, err
		}
	}
	return &Plain{st: st}, nil
}

func (p *Plain) SetKind(ctx context.Context, at time.Time) (string, error) {
	return errKind(p.st.Storage().SetAlarm(at)), nil
}

func (p *Plain) Get(ctx context.Context) (AlarmView, error) {
	at, ok, err := p.st.Storage().GetAlarm()
	return AlarmView{At: at, OK: ok}, err
}

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// settle waits until no alarm is due and undelivered.
func settle(t testing.TB, rt *durable.Runtime) {
	t.Helper()
	waitFor(t, "alarm deliveries to finish", func() bool { return rt.AlarmStats().Running == 0 })
}

// advance moves the fake clock and waits for the alarms it made due. It
// steps from one due timer to the next and lets the deliveries each one
// starts finish before time moves on, as if the work took no time: one
// jump over the whole span would also run the timers armed meanwhile (the
// BlockConcurrencyWhile deadline of an activation still in progress, say)
// as though their time had passed.
func advance(t testing.TB, rt *durable.Runtime, fc *clock.Fake, d time.Duration) {
	t.Helper()
	target := fc.Now().Add(d)
	for {
		next, ok := fc.Next()
		if !ok || next.After(target) {
			break
		}
		fc.Set(next)
		settle(t, rt)
	}
	fc.Set(target)
	settle(t, rt)
}

// alarmRig is a runtime on a fake clock with a Ticker namespace.
type alarmRig struct {
	rt  *durable.Runtime
	fc  *clock.Fake
	env *tickerEnv
	ns  *durable.Namespace[Ticker]
}

func newAlarmRig(t *testing.T, opts durable.Options, handle func(*Ticker, context.Context, durable.AlarmInfo) error) *alarmRig {
	t.Helper()
	fc := clock.NewFake(t0)
	opts.Clock = fc
	if opts.Durability == durable.Fsync && opts.Dir == "" {
		opts.Durability = durable.NoSync
	}
	if opts.IdleTimeout == 0 {
		opts.IdleTimeout = noEviction
	}
	rt := openRuntime(t, opts)
	env := &tickerEnv{clock: fc, handle: handle}
	return &alarmRig{rt: rt, fc: fc, env: env, ns: durable.MustRegister(rt, "Ticker", newTicker, env)}
}

func (r *alarmRig) set(t *testing.T, name string, at time.Time) {
	t.Helper()
	if err := durable.Do1(t.Context(), r.ns.GetByName(name), (*Ticker).Set, at); err != nil {
		t.Fatalf("Set(%s, %v): %v", name, at, err)
	}
}

func (r *alarmRig) get(t *testing.T, name string) AlarmView {
	t.Helper()
	v, err := durable.Call0(t.Context(), r.ns.GetByName(name), (*Ticker).Get)
	if err != nil {
		t.Fatalf("Get(%s): %v", name, err)
	}
	return v
}

func (r *alarmRig) wantAlarm(t *testing.T, name string, want time.Time) {
	t.Helper()
	got := r.get(t, name)
	if want.IsZero() {
		if got.OK {
			t.Fatalf("GetAlarm(%s) = %v, want no alarm", name, got.At)
		}
		return
	}
	if !got.OK || !got.At.Equal(want) {
		t.Fatalf("GetAlarm(%s) = %v, %v; want %v", name, got.At, got.OK, want)
	}
}

func (r *alarmRig) wantFires(t *testing.T, want int) []tickerFire {
	t.Helper()
	f := r.env.Fires()
	if len(f) != want {
		t.Fatalf("%d alarm deliveries, want %d: %+v", len(f), want, f)
	}
	return f
}

// Ensure SetAlarm, GetAlarm and DeleteAlarm store one alarm per object.
func TestStorage_SetGetDeleteAlarm(t *testing.T) {
	r := newAlarmRig(t, durable.Options{}, nil)
	r.wantAlarm(t, "a", time.Time{})
	r.set(t, "a", t0.Add(time.Hour))
	r.wantAlarm(t, "a", t0.Add(time.Hour))

	t.Run("SettingReplaces", func(t *testing.T) {
		r.set(t, "a", t0.Add(2*time.Hour))
		r.wantAlarm(t, "a", t0.Add(2*time.Hour))
		r.set(t, "a", t0.Add(30*time.Minute))
		r.wantAlarm(t, "a", t0.Add(30*time.Minute))
	})
	t.Run("OneAlarmPerObject", func(t *testing.T) {
		r.set(t, "b", t0.Add(5*time.Hour))
		r.wantAlarm(t, "a", t0.Add(30*time.Minute))
		r.wantAlarm(t, "b", t0.Add(5*time.Hour))
	})
	t.Run("Delete", func(t *testing.T) {
		if err := durable.Do0(t.Context(), r.ns.GetByName("a"), (*Ticker).Delete); err != nil {
			t.Fatal(err)
		}
		r.wantAlarm(t, "a", time.Time{})
		if err := durable.Do0(t.Context(), r.ns.GetByName("a"), (*Ticker).Delete); err != nil {
			t.Fatalf("deleting a missing alarm: %v", err)
		}
	})
	t.Run("BadTimes", func(t *testing.T) {
		for _, at := range []time.Time{{}, time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC)} {
			got, err := durable.Call1(t.Context(), r.ns.GetByName("a"), (*Ticker).SetKind, at)
			if err != nil || got != "bad argument" {
				t.Errorf("SetAlarm(%v) = %q, %v; want an *ArgError", at, got, err)
			}
		}
		r.wantAlarm(t, "a", time.Time{})
	})
	t.Run("PastIsNow", func(t *testing.T) {
		// Keep the alarm from firing at once: its turn is the test's.
		got, err := durable.Call1(t.Context(), r.ns.GetByName("p"), (*Ticker).SetKind, t0.Add(-time.Hour))
		if err != nil || got != "ok" {
			t.Fatalf("SetAlarm(past) = %q, %v", got, err)
		}
		settle(t, r.rt)
		f := r.wantFires(t, 1)
		if !f[0].info.Time.Equal(t0) {
			t.Fatalf("past alarm stored as %v, want now (%v)", f[0].info.Time, t0)
		}
	})
}

// Ensure an alarm fires at its time, once, and reads as unset inside its
// handler; afterwards it is gone.
func TestAlarm_FiresAtItsTime(t *testing.T) {
	r := newAlarmRig(t, durable.Options{}, nil)
	r.set(t, "a", t0.Add(10*time.Second))
	advance(t, r.rt, r.fc, 9*time.Second)
	r.wantFires(t, 0)
	advance(t, r.rt, r.fc, time.Second)
	f := r.wantFires(t, 1)
	want := tickerFire{name: "a", info: durable.AlarmInfo{Time: t0.Add(10 * time.Second)}, at: t0.Add(10 * time.Second)}
	if got := f[0]; got.name != want.name || !got.info.Time.Equal(want.info.Time) || got.info.RetryCount != 0 ||
		got.info.IsRetry || !got.at.Equal(want.at) {
		t.Fatalf("delivery = %+v, want %+v", got, want)
	}
	if f[0].seenOK {
		t.Fatalf("GetAlarm inside the handler = %v, want unset", f[0].seen)
	}
	r.wantAlarm(t, "a", time.Time{})
	advance(t, r.rt, r.fc, time.Hour)
	r.wantFires(t, 1)
	if got := r.rt.AlarmStats(); got.Delivered != 1 || got.Failed != 0 || got.Scheduled != 0 {
		t.Fatalf("AlarmStats = %+v, want 1 delivered, nothing scheduled", got)
	}
}

// Ensure a time in the past fires without the clock moving.
func TestAlarm_PastTimeFiresAtOnce(t *testing.T) {
	r := newAlarmRig(t, durable.Options{}, nil)
	r.set(t, "a", t0.Add(-time.Hour))
	settle(t, r.rt)
	f := r.wantFires(t, 1)
	if !f[0].at.Equal(t0) || !f[0].info.Time.Equal(t0) {
		t.Fatalf("fired at %v for %v, want both %v", f[0].at, f[0].info.Time, t0)
	}
}

// Ensure setting an alarm replaces the earlier one: only the last fires.
func TestAlarm_SettingReplaces(t *testing.T) {
	r := newAlarmRig(t, durable.Options{}, nil)
	r.set(t, "a", t0.Add(10*time.Second))
	r.set(t, "a", t0.Add(20*time.Second))
	advance(t, r.rt, r.fc, 15*time.Second)
	r.wantFires(t, 0)
	advance(t, r.rt, r.fc, 5*time.Second)
	f := r.wantFires(t, 1)
	if !f[0].info.Time.Equal(t0.Add(20 * time.Second)) {
		t.Fatalf("fired for %v, want %v", f[0].info.Time, t0.Add(20*time.Second))
	}
	// Replacing with an earlier time works too.
	r.set(t, "b", t0.Add(time.Hour))
	r.set(t, "b", t0.Add(30*time.Second))
	advance(t, r.rt, r.fc, 10*time.Second)
	r.wantFires(t, 2)
	advance(t, r.rt, r.fc, time.Hour)
	r.wantFires(t, 2)
}

// Ensure the alarm is part of the turn's transaction: a turn that fails
// leaves the alarm as it was.
func TestAlarm_Transactional(t *testing.T) {
	r := newAlarmRig(t, durable.Options{}, nil)
	ctx := t.Context()
	stub := func(name string) *durable.Stub[Ticker] { return r.ns.GetByName(name) }
	at := t0.Add(10 * time.Second)

	t.Run("FailedTurnKeepsOldAlarm", func(t *testing.T) {
		r.set(t, "err", at)
		if err := durable.Do1(ctx, stub("err"), (*Ticker).SetThenFail, t0.Add(5*time.Second)); err == nil {
			t.Fatal("SetThenFail succeeded")
		}
		r.wantAlarm(t, "err", at)
	})
	t.Run("PanickedTurnKeepsOldAlarm", func(t *testing.T) {
		r.set(t, "panic", at)
		if err := durable.Do1(ctx, stub("panic"), (*Ticker).SetThenPanic, t0.Add(5*time.Second)); err == nil {
			t.Fatal("SetThenPanic succeeded")
		}
		r.wantAlarm(t, "panic", at)
	})
	t.Run("FailedDeleteKeepsAlarm", func(t *testing.T) {
		r.set(t, "del", at)
		if err := durable.Do0(ctx, stub("del"), (*Ticker).DeleteThenFail); err == nil {
			t.Fatal("DeleteThenFail succeeded")
		}
		r.wantAlarm(t, "del", at)
	})
	t.Run("FailedSavepointKeepsOldAlarm", func(t *testing.T) {
		r.set(t, "sp", at)
		if err := durable.Do1(ctx, stub("sp"), (*Ticker).SetInFailedSavepoint, t0.Add(5*time.Second)); err != nil {
			t.Fatal(err)
		}
		r.wantAlarm(t, "sp", at)
	})
	t.Run("FailedFirstSetLeavesNone", func(t *testing.T) {
		if err := durable.Do1(ctx, stub("none"), (*Ticker).SetThenFail, t0.Add(5*time.Second)); err == nil {
			t.Fatal("SetThenFail succeeded")
		}
		r.wantAlarm(t, "none", time.Time{})
	})
	t.Run("DeleteAllDeletesAlarm", func(t *testing.T) {
		r.set(t, "all", at)
		if err := durable.Do0(ctx, stub("all"), (*Ticker).DeleteAll); err != nil {
			t.Fatal(err)
		}
		r.wantAlarm(t, "all", time.Time{})
	})
	t.Run("OnlyCommittedAlarmsFire", func(t *testing.T) {
		advance(t, r.rt, r.fc, 5*time.Second)
		r.wantFires(t, 0)
		advance(t, r.rt, r.fc, 5*time.Second)
		var got []string
		for _, f := range r.env.Fires() {
			if !f.info.Time.Equal(at) {
				t.Errorf("%s fired for %v, want %v", f.name, f.info.Time, at)
			}
			got = append(got, f.name)
		}
		if want := "del err panic sp"; sortedJoin(got) != want {
			t.Fatalf("fired: %s; want %s", sortedJoin(got), want)
		}
	})
}

func sortedJoin(s []string) string {
	s = append([]string(nil), s...)
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return strings.Join(s, " ")
}

// Ensure a type without an Alarm method cannot set an alarm, except in its
// constructor; such an alarm is deleted when it fires.
func TestAlarm_NoHandler(t *testing.T) {
	fc := clock.NewFake(t0)
	rt := openRuntime(t, durable.Options{Durability: durable.NoSync, Clock: fc, IdleTimeout: noEviction})
	plain := durable.MustRegister(rt, "Plain", newPlain, &plainEnv{})
	got, err := durable.Call1(t.Context(), plain.GetByName("p"), (*Plain).SetKind, t0.Add(time.Second))
	if err != nil || got != "no handler" {
		t.Fatalf("SetAlarm without handler = %q, %v; want ErrNoAlarmHandler", got, err)
	}

	ctor := durable.MustRegister(rt, "PlainCtor", newPlain, &plainEnv{ctorAlarm: t0.Add(time.Second)})
	v, err := durable.Call0(t.Context(), ctor.GetByName("c"), (*Plain).Get)
	if err != nil || !v.OK || !v.At.Equal(t0.Add(time.Second)) {
		t.Fatalf("alarm set in constructor = %+v, %v", v, err)
	}
	advance(t, rt, fc, time.Second)
	v, err = durable.Call0(t.Context(), ctor.GetByName("c"), (*Plain).Get)
	if err != nil || v.OK {
		t.Fatalf("after firing without a handler: %+v, %v; want no alarm", v, err)
	}
	if st := rt.AlarmStats(); st.Delivered != 0 || st.Failed != 0 || st.Scheduled != 0 {
		t.Fatalf("AlarmStats = %+v", st)
	}
}

// Ensure the handler sees its alarm as unset, and that an alarm it sets
// schedules the next one.
func TestAlarm_HandlerSchedulesNext(t *testing.T) {
	r := newAlarmRig(t, durable.Options{}, func(tk *Ticker, ctx context.Context, info durable.AlarmInfo) error {
		if info.Time.Before(t0.Add(3 * time.Second)) {
			next := info.Time.Add(time.Second)
			if err := tk.st.Storage().SetAlarm(next); err != nil {
				return err
			}
			if at, ok, err := tk.st.Storage().GetAlarm(); err != nil || !ok || !at.Equal(next) {
				return fmt.Errorf("GetAlarm after SetAlarm in handler = %v, %v, %v", at, ok, err)
			}
		}
		return nil
	})
	r.set(t, "a", t0.Add(time.Second))
	for range 5 {
		advance(t, r.rt, r.fc, time.Second)
	}
	f := r.wantFires(t, 3)
	for i, fire := range f {
		want := t0.Add(time.Duration(i+1) * time.Second)
		if !fire.at.Equal(want) || !fire.info.Time.Equal(want) || fire.seenOK || fire.info.IsRetry {
			t.Errorf("delivery %d = %+v, want at %v, alarm unset inside", i, fire, want)
		}
	}
	r.wantAlarm(t, "a", time.Time{})
	if st := r.rt.AlarmStats(); st.Delivered != 3 || st.Failed != 0 {
		t.Fatalf("AlarmStats = %+v, want 3 delivered", st)
	}
}

// Ensure a failing alarm is retried 6 times, 2 s after the first failure
// and twice as long each time, then dropped; between attempts the alarm
// stays set, since its deletion persists only on success. All on fake time.
func TestAlarm_RetrySchedule(t *testing.T) {
	r := newAlarmRig(t, durable.Options{AlarmRetryJitter: -1}, func(*Ticker, context.Context, durable.AlarmInfo) error {
		return errors.New("not today")
	})
	at := t0.Add(time.Second)
	r.set(t, "a", at)
	advance(t, r.rt, r.fc, time.Second)
	wantAt := at
	for retry := range 7 {
		f := r.wantFires(t, retry+1)
		got := f[retry]
		if !got.at.Equal(wantAt) || got.info.RetryCount != retry || got.info.IsRetry != (retry > 0) || !got.info.Time.Equal(at) {
			t.Fatalf("attempt %d = %+v; want at %v with RetryCount %d", retry, got, wantAt, retry)
		}
		if retry == 6 {
			break
		}
		r.wantAlarm(t, "a", at) // the failed handler's delete was rolled back
		delay := 2 * time.Second << retry
		wantAt = wantAt.Add(delay)
		if next := r.rt.AlarmStats().Next; !next.Equal(wantAt) {
			t.Fatalf("after attempt %d the next delivery is at %v, want %v", retry, next, wantAt)
		}
		advance(t, r.rt, r.fc, delay-time.Millisecond)
		r.wantFires(t, retry+1)
		advance(t, r.rt, r.fc, time.Millisecond)
	}
	if !wantAt.Equal(t0.Add(127 * time.Second)) {
		t.Fatalf("last attempt at %v, want t0+127s", wantAt)
	}
	// Dropped: deleted from storage, counted, never delivered again.
	r.wantAlarm(t, "a", time.Time{})
	st := r.rt.AlarmStats()
	if st.Dropped != 1 || st.Failed != 7 || st.Delivered != 0 || st.Scheduled != 0 {
		t.Fatalf("AlarmStats = %+v; want 7 failed, 1 dropped", st)
	}
	advance(t, r.rt, r.fc, time.Hour)
	r.wantFires(t, 7)
}

// Ensure the retry delays get up to 25% of jitter by default.
func TestAlarm_RetryJitter(t *testing.T) {
	r := newAlarmRig(t, durable.Options{}, func(*Ticker, context.Context, durable.AlarmInfo) error {
		return errors.New("not today")
	})
	r.set(t, "a", t0)
	settle(t, r.rt)
	jittered := 0
	for retry := range 6 {
		now := r.fc.Now()
		next := r.rt.AlarmStats().Next
		base := 2 * time.Second << retry
		if d := next.Sub(now); d < base || d > base+base/4 {
			t.Fatalf("retry %d after %v, want %v to %v", retry+1, d, base, base+base/4)
		} else if d != base {
			jittered++
		}
		r.fc.Set(next)
		settle(t, r.rt)
		r.wantFires(t, retry+2)
	}
	if jittered == 0 {
		t.Fatal("no retry delay had jitter")
	}
	if st := r.rt.AlarmStats(); st.Dropped != 1 {
		t.Fatalf("AlarmStats = %+v, want the alarm dropped", st)
	}
}

// Ensure Options.AlarmRetries bounds the retries.
func TestAlarm_RetriesOption(t *testing.T) {
	for _, tc := range []struct {
		retries, attempts int
	}{{-1, 1}, {2, 3}} {
		t.Run(fmt.Sprint(tc.retries), func(t *testing.T) {
			r := newAlarmRig(t, durable.Options{AlarmRetries: tc.retries, AlarmRetryDelay: time.Second, AlarmRetryJitter: -1},
				func(*Ticker, context.Context, durable.AlarmInfo) error { return errors.New("no") })
			r.set(t, "a", t0)
			settle(t, r.rt)
			for range 10 {
				advance(t, r.rt, r.fc, time.Minute)
			}
			r.wantFires(t, tc.attempts)
			if st := r.rt.AlarmStats(); st.Dropped != 1 {
				t.Fatalf("AlarmStats = %+v, want 1 dropped", st)
			}
		})
	}
}

// Ensure an alarm that fails, panics or aborts is retried and, once it
// succeeds, deleted.
func TestAlarm_RetryThenSucceed(t *testing.T) {
	r := newAlarmRig(t, durable.Options{AlarmRetryJitter: -1}, func(tk *Ticker, ctx context.Context, info durable.AlarmInfo) error {
		switch info.RetryCount {
		case 0:
			return errors.New("error")
		case 1:
			panic("panic")
		case 2:
			tk.st.Abort("abort")
		}
		return nil
	})
	r.set(t, "a", t0)
	settle(t, r.rt)
	for _, d := range []time.Duration{2 * time.Second, 4 * time.Second, 8 * time.Second} {
		advance(t, r.rt, r.fc, d)
	}
	f := r.wantFires(t, 4)
	for i, fire := range f {
		if fire.info.RetryCount != i || fire.info.IsRetry != (i > 0) || fire.seenOK {
			t.Errorf("attempt %d = %+v", i, fire)
		}
	}
	r.wantAlarm(t, "a", time.Time{})
	if st := r.rt.AlarmStats(); st.Delivered != 1 || st.Failed != 3 || st.Dropped != 0 {
		t.Fatalf("AlarmStats = %+v; want 1 delivered after 3 failures", st)
	}
	if got := r.env.built.Load(); got != 3 {
		t.Fatalf("constructed %d times, want 3 (the panic and the abort reset the object)", got)
	}
}

// Ensure DeleteAlarm in a failing handler cancels the retries, and a new
// alarm set by a failing handler that committed it (an outgoing call)
// replaces the failed one.
func TestAlarm_HandlerChangesAlarmThenFails(t *testing.T) {
	r := newAlarmRig(t, durable.Options{AlarmRetryJitter: -1}, func(tk *Ticker, ctx context.Context, info durable.AlarmInfo) error {
		if !info.Time.Equal(t0) {
			return nil // the new alarm succeeds
		}
		name, _ := tk.st.Name()
		switch name {
		case "delete":
			if err := tk.st.Storage().DeleteAlarm(); err != nil {
				return err
			}
			if err := tk.st.Storage().Sync(ctx); err != nil {
				return err
			}
		case "move":
			if err := tk.st.Storage().SetAlarm(t0.Add(time.Hour)); err != nil {
				return err
			}
			if err := tk.st.Storage().Sync(ctx); err != nil {
				return err
			}
		}
		return errors.New("fail after committing")
	})
	r.set(t, "delete", t0)
	r.set(t, "move", t0)
	settle(t, r.rt)
	r.wantAlarm(t, "delete", time.Time{})
	r.wantAlarm(t, "move", t0.Add(time.Hour))
	advance(t, r.rt, r.fc, 10*time.Minute)
	r.wantFires(t, 2) // no retry of either
	advance(t, r.rt, r.fc, time.Hour)
	f := r.wantFires(t, 3)
	if f[2].name != "move" || f[2].info.IsRetry {
		t.Fatalf("third delivery = %+v, want move's new alarm, not a retry", f[2])
	}
}

// Ensure DeleteAlarm in a handler that then fails cancels the retries
// (the deletion itself is rolled back with the rest of the turn, and done
// anyway), unless the handler set a new alarm after it.
func TestAlarm_DeleteInFailingHandlerCancelsRetries(t *testing.T) {
	r := newAlarmRig(t, durable.Options{AlarmRetryJitter: -1}, func(tk *Ticker, ctx context.Context, info durable.AlarmInfo) error {
		if err := tk.st.Storage().DeleteAlarm(); err != nil {
			return err
		}
		if name, _ := tk.st.Name(); name == "reset" {
			if err := tk.st.Storage().SetAlarm(info.Time.Add(time.Minute)); err != nil {
				return err
			}
		}
		return errors.New("fail after deleting")
	})
	r.set(t, "cancel", t0)
	r.set(t, "reset", t0)
	settle(t, r.rt)
	r.wantAlarm(t, "cancel", time.Time{})
	r.wantAlarm(t, "reset", t0) // rolled back: retried
	advance(t, r.rt, r.fc, 2*time.Second)
	f := r.wantFires(t, 3)
	if f[2].name != "reset" || f[2].info.RetryCount != 1 {
		t.Fatalf("third delivery = %+v, want reset's first retry", f[2])
	}
	if st := r.rt.AlarmStats(); st.Dropped != 0 || st.Failed != 3 {
		t.Fatalf("AlarmStats = %+v; want 3 failed, none dropped", st)
	}
}

// Ensure a delivery that fails through no fault of the handler (here the
// object's queue is full) is retried without using up the retries: with
// no retries allowed, the alarm still fires once the object has room.
func TestAlarm_OverloadedObjectRetriesWithoutCounting(t *testing.T) {
	r := newAlarmRig(t, durable.Options{MaxQueue: 1, AlarmRetries: -1, AlarmRetryJitter: -1}, nil)
	r.env.held, r.env.release = make(chan struct{}, 2), make(chan struct{})
	r.set(t, "a", t0.Add(time.Second))
	stub := r.ns.GetByName("a")
	var wg sync.WaitGroup
	for range 2 { // one call holds the turn, one fills the queue
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := durable.Do0(context.Background(), stub, (*Ticker).Hold); err != nil {
				t.Error(err)
			}
		}()
	}
	<-r.env.held
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	waitFor(t, "a full queue", func() bool {
		// A call with a cancelled ctx never waits: it reports a full queue
		// or its ctx's error.
		return durable.IsOverloaded(durable.Do0(cancelled, stub, (*Ticker).Probe))
	})
	advance(t, r.rt, r.fc, time.Second)
	if st := r.rt.AlarmStats(); st.Failed != 1 || st.Dropped != 0 || st.Scheduled != 1 {
		t.Fatalf("AlarmStats = %+v; want 1 failure, retry scheduled", st)
	}
	close(r.env.release)
	wg.Wait()
	advance(t, r.rt, r.fc, 2*time.Second)
	f := r.wantFires(t, 1)
	if f[0].info.RetryCount != 0 {
		t.Fatalf("delivery = %+v; an overload is not a handler failure", f[0])
	}
}

// Ensure an object never runs two alarm handlers at once, nor an alarm
// handler alongside its other handlers, while many objects fire in
// parallel.
func TestAlarm_OneHandlerAtATime(t *testing.T) {
	const objects, rounds = 20, 30
	var inside sync.Map // name -> *atomic.Int32
	busy := func(name string) *atomic.Int32 {
		v, _ := inside.LoadOrStore(name, new(atomic.Int32))
		return v.(*atomic.Int32)
	}
	var overlaps, maxParallel, parallel atomic.Int32
	var fired sync.Map // name -> *atomic.Int32
	r := newAlarmRig(t, durable.Options{}, func(tk *Ticker, ctx context.Context, info durable.AlarmInfo) error {
		name, _ := tk.st.Name()
		if busy(name).Add(1) != 1 {
			overlaps.Add(1)
		}
		p := parallel.Add(1)
		for m := maxParallel.Load(); p > m && !maxParallel.CompareAndSwap(m, p); m = maxParallel.Load() {
		}
		time.Sleep(100 * time.Microsecond) // widen the window for an overlap
		parallel.Add(-1)
		busy(name).Add(-1)
		n, _ := fired.LoadOrStore(name, new(atomic.Int32))
		if n.(*atomic.Int32).Add(1) < rounds {
			return tk.st.Storage().SetAlarm(info.Time) // in the past: at once
		}
		return nil
	})
	r.env.probe = func(name string) {
		if busy(name).Load() != 0 {
			overlaps.Add(1)
		}
	}
	var wg sync.WaitGroup
	for i := range objects {
		name := fmt.Sprint("o", i)
		r.set(t, name, t0)
		wg.Add(1)
		go func() { // other calls on the same object meanwhile
			defer wg.Done()
			for range rounds {
				if err := durable.Do0(context.Background(), r.ns.GetByName(name), (*Ticker).Probe); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	settle(t, r.rt)
	if got := len(r.env.Fires()); got != objects*rounds {
		t.Fatalf("%d deliveries, want %d", got, objects*rounds)
	}
	if overlaps.Load() != 0 {
		t.Fatalf("%d overlaps of an alarm handler with another handler of its object", overlaps.Load())
	}
	t.Logf("up to %d alarm handlers ran in parallel", maxParallel.Load())
}

// Ensure an alarm wakes an evicted object.
func TestAlarm_FiresForEvictedObject(t *testing.T) {
	r := newAlarmRig(t, durable.Options{}, nil)
	r.set(t, "a", t0.Add(time.Hour))
	if n := r.rt.EvictIdle(); n != 1 || r.rt.Stats().Live != 0 {
		t.Fatalf("evicted %d, live %d", n, r.rt.Stats().Live)
	}
	advance(t, r.rt, r.fc, time.Hour)
	r.wantFires(t, 1)
	if got := r.env.built.Load(); got != 2 {
		t.Fatalf("constructed %d times, want 2", got)
	}
}

// Ensure alarms survive a restart, wait for their namespace to be
// registered, and that starting opens no object database.
func TestAlarm_SurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	const objects = 50
	fc := clock.NewFake(t0)
	rt, err := durable.Open(durable.Options{Dir: dir, Clock: fc, IdleTimeout: noEviction})
	if err != nil {
		t.Fatal(err)
	}
	env := &tickerEnv{clock: fc}
	ns := durable.MustRegister(rt, "Ticker", newTicker, env)
	for i := range objects {
		at := t0.Add(time.Hour + time.Duration(i)*time.Second)
		if err := durable.Do1(t.Context(), ns.GetByName(fmt.Sprint("o", i)), (*Ticker).Set, at); err != nil {
			t.Fatal(err)
		}
	}
	if err := rt.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}

	fc = clock.NewFake(t0.Add(time.Hour + objects/2*time.Second))
	rt = openRuntime(t, durable.Options{Dir: dir, Clock: fc, IdleTimeout: noEviction})
	if st := rt.AlarmStats(); st.Scheduled != objects {
		t.Fatalf("after restart AlarmStats = %+v, want %d scheduled", st, objects)
	}
	advance(t, rt, fc, time.Second) // the namespace is not registered: nothing fires
	env = &tickerEnv{clock: fc}
	ns = durable.MustRegister(rt, "Ticker", newTicker, env)
	settle(t, rt)
	due := objects/2 + 2
	if got := len(env.Fires()); got != due {
		t.Fatalf("%d alarms fired on registration, want the %d due", got, due)
	}
	if live := rt.Stats().Live; live != int64(due) {
		t.Fatalf("%d objects live, want %d: startup must not open objects whose alarm is not due", live, due)
	}
	advance(t, rt, fc, time.Hour)
	if got := len(env.Fires()); got != objects {
		t.Fatalf("%d alarms fired, want %d", got, objects)
	}
	for _, f := range env.Fires() {
		var i int
		fmt.Sscanf(f.name, "o%d", &i)
		if want := t0.Add(time.Hour + time.Duration(i)*time.Second); !f.info.Time.Equal(want) {
			t.Errorf("%s fired for %v, want %v", f.name, f.info.Time, want)
		}
	}
	_ = ns
}

// indexRows reads the node's alarm index of dir: namespace/id -> time.
func indexRows(t *testing.T, dir string) map[string]time.Time {
	t.Helper()
	conn, err := storage.OpenConn(filepath.Join(dir, ".alarms.sqlite"), sqlite.OpenReadOnly)
	if err != nil {
		t.Fatal(err)
	}
	defer storage.CloseConn(conn)
	rows := map[string]time.Time{}
	err = sqlitex.ExecuteTransient(conn, "SELECT ns, hex(id), at FROM alarms", &sqlitex.ExecOptions{
		ResultFunc: func(s *sqlite.Stmt) error {
			rows[s.ColumnText(0)+"/"+strings.ToLower(s.ColumnText(1))] = time.Unix(0, s.ColumnInt64(2)).UTC()
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

func execIndex(t *testing.T, dir, query string, args ...any) {
	t.Helper()
	conn, err := storage.OpenConn(filepath.Join(dir, ".alarms.sqlite"), sqlite.OpenReadWrite)
	if err != nil {
		t.Fatal(err)
	}
	defer storage.CloseConn(conn)
	if err := sqlitex.Execute(conn, query, &sqlitex.ExecOptions{Args: args}); err != nil {
		t.Fatal(err)
	}
}

// Ensure the index is a hint: an entry earlier than the object's alarm, or
// one whose object has no alarm any more, delivers nothing and is
// repaired; the object's own alarm still fires on time.
func TestAlarm_StaleIndexEntries(t *testing.T) {
	dir := t.TempDir()
	fc := clock.NewFake(t0)
	rt, err := durable.Open(durable.Options{Dir: dir, Clock: fc, Durability: durable.NoSync, IdleTimeout: noEviction})
	if err != nil {
		t.Fatal(err)
	}
	env := &tickerEnv{clock: fc}
	ns := durable.MustRegister(rt, "Ticker", newTicker, env)
	ctx := t.Context()
	if err := durable.Do1(ctx, ns.GetByName("early"), (*Ticker).Set, t0.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := durable.Do1(ctx, ns.GetByName("gone"), (*Ticker).Set, t0.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := durable.Do0(ctx, ns.GetByName("gone"), (*Ticker).Delete); err != nil {
		t.Fatal(err)
	}
	earlyID, goneID := ns.GetByName("early").ID().String(), ns.GetByName("gone").ID().String()
	if err := rt.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	rows := indexRows(t, dir)
	if len(rows) != 1 || !rows["Ticker/"+earlyID].Equal(t0.Add(2*time.Hour)) {
		t.Fatalf("index after shutdown = %v, want only early's alarm", rows)
	}
	// Make the index lie: early's row an hour early, a row for gone.
	hour := t0.Add(time.Hour).UnixNano()
	execIndex(t, dir, "UPDATE alarms SET at = ?", hour)
	execIndex(t, dir, "INSERT INTO alarms (ns, id, at) VALUES ('Ticker', unhex(?), ?)", goneID, hour)

	rt = openRuntime(t, durable.Options{Dir: dir, Clock: fc, Durability: durable.NoSync, IdleTimeout: noEviction})
	env = &tickerEnv{clock: fc}
	durable.MustRegister(rt, "Ticker", newTicker, env)
	advance(t, rt, fc, time.Hour)
	if f := env.Fires(); len(f) != 0 {
		t.Fatalf("stale index entries delivered alarms: %+v", f)
	}
	if st := rt.AlarmStats(); st.Scheduled != 1 || !st.Next.Equal(t0.Add(2*time.Hour)) {
		t.Fatalf("AlarmStats = %+v; want early's real alarm scheduled", st)
	}
	advance(t, rt, fc, time.Hour)
	if f := env.Fires(); len(f) != 1 || f[0].name != "early" || !f[0].info.Time.Equal(t0.Add(2*time.Hour)) {
		t.Fatalf("deliveries = %+v, want early's at t0+2h", f)
	}
	if err := rt.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if rows := indexRows(t, dir); len(rows) != 0 {
		t.Fatalf("index after the alarms fired = %v, want empty", rows)
	}
}

// Ensure an object's commit that sets an alarm is never synced before the
// index entry announcing it is committed (and fsynced) in the index: a
// crash at any point leaves no stored alarm that the index misses.
func TestAlarm_IndexEntryPrecedesCommit(t *testing.T) {
	dir := t.TempDir()
	const objects = 30
	var mu sync.Mutex
	checked, missing := 0, 0
	var checkErr error
	// Every write of a Ticker object is its alarm, so when its WAL is
	// synced the index must already announce the alarm.
	check := func(files []string) {
		// The runtime keeps the index to itself (exclusive locking, its
		// WAL index in its own memory), so read a copy of the index and
		// its WAL as they are on file now: what a crash would leave.
		conn, err := snapshotIndex(t, dir)
		if err != nil {
			mu.Lock()
			checkErr = err
			mu.Unlock()
			return
		}
		defer storage.CloseConn(conn)
		for _, f := range files {
			if !strings.Contains(f, "Ticker") {
				continue
			}
			id := strings.TrimSuffix(filepath.Base(f), ".sqlite-wal")
			n := 0
			err := sqlitex.Execute(conn, "SELECT count(*) FROM alarms WHERE ns = 'Ticker' AND id = unhex(?)", &sqlitex.ExecOptions{
				Args:       []any{id},
				ResultFunc: func(s *sqlite.Stmt) error { n = s.ColumnInt(0); return nil },
			})
			mu.Lock()
			checked++
			if err != nil {
				checkErr = err
			} else if n == 0 {
				missing++
			}
			mu.Unlock()
		}
	}
	syncFile := func(f *os.File) error {
		check([]string{f.Name()})
		return f.Sync()
	}
	syncFS := func(fs []*os.File) error {
		var names []string
		for _, f := range fs {
			names = append(names, f.Name())
		}
		check(names)
		for _, f := range fs {
			if err := f.Sync(); err != nil {
				return err
			}
		}
		return nil
	}
	rt, err := durable.OpenWithSyncHooks(durable.Options{Dir: dir}, syncFile, syncFS, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	ns := durable.MustRegister(rt, "Ticker", newTicker, &tickerEnv{clock: clock.Real{}})
	var wg sync.WaitGroup
	for i := range objects {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := durable.Do1(context.Background(), ns.GetByName(fmt.Sprint("o", i)), (*Ticker).Set, time.Now().Add(time.Hour)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if checkErr != nil {
		t.Fatal(checkErr)
	}
	if checked < objects {
		t.Fatalf("checked %d syncs, want at least %d", checked, objects)
	}
	if missing != 0 {
		t.Fatalf("%d of %d object syncs happened before the index announced the alarm", missing, checked)
	}
}

// snapshotIndex copies the alarm index of the data folder dir and its WAL
// into a new folder and opens the copy read-only.
func snapshotIndex(t *testing.T, dir string) (*sqlite.Conn, error) {
	snap, err := os.MkdirTemp(t.TempDir(), "index")
	if err != nil {
		return nil, err
	}
	for _, suffix := range []string{"", "-wal"} {
		data, err := os.ReadFile(filepath.Join(dir, ".alarms.sqlite"+suffix))
		if errors.Is(err, os.ErrNotExist) && suffix != "" {
			continue
		}
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(snap, ".alarms.sqlite"+suffix), data, 0o644); err != nil {
			return nil, err
		}
	}
	// storage.OpenConn, never the driver's: opening and closing
	// connections concurrently with the runtime's races in the driver.
	return storage.OpenConn(filepath.Join(snap, ".alarms.sqlite"), sqlite.OpenReadOnly)
}

// Ensure Shutdown lets a running alarm handler finish, and leaves no
// goroutine behind (TestMain checks).
func TestAlarm_ShutdownWaitsForHandler(t *testing.T) {
	dir := t.TempDir()
	fc := clock.NewFake(t0)
	started, release := make(chan struct{}), make(chan struct{})
	env := &tickerEnv{clock: fc, handle: func(*Ticker, context.Context, durable.AlarmInfo) error {
		close(started)
		<-release
		return nil
	}}
	rt, err := durable.Open(durable.Options{Dir: dir, Clock: fc, Durability: durable.NoSync, IdleTimeout: noEviction})
	if err != nil {
		t.Fatal(err)
	}
	ns := durable.MustRegister(rt, "Ticker", newTicker, env)
	if err := durable.Do1(t.Context(), ns.GetByName("a"), (*Ticker).Set, t0); err != nil {
		t.Fatal(err)
	}
	<-started
	done := make(chan error, 1)
	go func() { done <- rt.Shutdown(context.Background()) }()
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned (%v) while a handler ran", err)
	case <-time.After(20 * time.Millisecond):
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	rt = openRuntime(t, durable.Options{Dir: dir, Clock: fc, Durability: durable.NoSync, IdleTimeout: noEviction})
	if st := rt.AlarmStats(); st.Scheduled != 0 {
		t.Fatalf("after restart AlarmStats = %+v; the alarm that succeeded must be gone", st)
	}
}

// Ensure bad alarm options are refused.
func TestAlarm_BadOptions(t *testing.T) {
	for _, opts := range []durable.Options{
		{AlarmRetryDelay: -time.Second},
		{AlarmConcurrency: -1},
	} {
		opts.Dir = t.TempDir()
		if rt, err := durable.Open(opts); err == nil {
			rt.Close()
			t.Errorf("Open(%+v) succeeded", opts)
		}
	}
}
