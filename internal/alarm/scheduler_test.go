package alarm_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/durable-go/durable/internal/alarm"
	"github.com/durable-go/durable/internal/clock"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// done is a Ticket that is already durable; failed one that failed.
type done struct{}

func (done) Wait(context.Context) error { return nil }

type failed struct{}

func (failed) Wait(context.Context) error { return errors.New("fsync failed") }

// fakeObjects stands in for the runtime: each key's stored alarm, changed
// through Prepare/Committed like a real commit, and a handler outcome.
type fakeObjects struct {
	s *alarm.Scheduler
	c *clock.Fake

	mu         sync.Mutex // guards the fields below
	stored     map[alarm.Key]time.Time
	deliveries []alarm.Delivery
	fail       map[alarm.Key]int // deliveries left to fail
	rearm      map[alarm.Key]int // deliveries left that set the alarm again, for the same time
}

func key(i int) alarm.Key {
	var k alarm.Key
	k.NS = "ns"
	k.ID[0], k.ID[1] = byte(i>>8), byte(i)
	return k
}

func (o *fakeObjects) deliver(ctx context.Context, d alarm.Delivery) alarm.Result {
	o.mu.Lock()
	o.deliveries = append(o.deliveries, d)
	at, ok := o.stored[d.Key]
	var r alarm.Result
	if ok && !at.After(o.c.Now()) {
		r.Alarm = at
		switch {
		case d.Drop:
			ok = false
		case o.fail[d.Key] > 0:
			o.fail[d.Key]--
			r.Err = errors.New("handler failed")
		default:
			ok = false
			r.Ran = true
			if o.rearm[d.Key] > 0 {
				o.rearm[d.Key]--
				ok = true // due again at once, as a handler re-arming for now
			}
		}
	}
	o.mu.Unlock()
	if r.Err == nil {
		o.commit(d.Key, at, ok)
	} else {
		o.commit(d.Key, r.Alarm, true) // the rollback's read-only commit
	}
	return r
}

// commit sets key's stored alarm the way a turn does.
func (o *fakeObjects) commit(k alarm.Key, at time.Time, ok bool) {
	ch, err := o.s.Prepare(k, at, ok)
	if err != nil {
		panic(err)
	}
	o.mu.Lock()
	if ok {
		o.stored[k] = at
	} else {
		delete(o.stored, k)
	}
	o.mu.Unlock()
	o.s.Committed(ch, done{}, nil)
}

func (o *fakeObjects) Deliveries() []alarm.Delivery {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]alarm.Delivery(nil), o.deliveries...)
}

func openScheduler(t *testing.T, path string, fc *clock.Fake, o *fakeObjects) *alarm.Scheduler {
	t.Helper()
	s, err := alarm.Open(alarm.Config{
		Path:    path,
		NoSync:  true,
		Clock:   fc,
		Policy:  alarm.Policy{Retries: 3, Delay: time.Second},
		Deliver: o.deliver,
	})
	if err != nil {
		t.Fatal(err)
	}
	o.s, o.c = s, fc
	t.Cleanup(func() { s.Close() })
	return s
}

func newObjects() *fakeObjects {
	return &fakeObjects{stored: map[alarm.Key]time.Time{}, fail: map[alarm.Key]int{}, rearm: map[alarm.Key]int{}}
}

func waitIdle(t *testing.T, s *alarm.Scheduler) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for s.Stats().Running != 0 {
		if time.Now().After(deadline) {
			t.Fatal("deliveries never finished")
		}
		time.Sleep(time.Millisecond)
	}
}

// Ensure alarms are delivered in time order, only once their namespace is
// ready, and each once.
func TestScheduler_DeliversInOrder(t *testing.T) {
	fc := clock.NewFake(t0)
	o := newObjects()
	s := openScheduler(t, filepath.Join(t.TempDir(), "index"), fc, o)
	s.Ready("ns")
	for i := range 10 {
		o.commit(key(i), t0.Add(time.Duration(10-i)*time.Second), true)
	}
	for range 10 {
		fc.Advance(time.Second)
		waitIdle(t, s)
	}
	d := o.Deliveries()
	if len(d) != 10 {
		t.Fatalf("%d deliveries, want 10", len(d))
	}
	for i, dl := range d {
		if want := key(9 - i); dl.Key != want || dl.Retry != 0 || dl.Drop {
			t.Fatalf("delivery %d = %+v, want key %v", i, dl, want)
		}
	}
	if st := s.Stats(); st.Delivered != 10 || st.Scheduled != 0 {
		t.Fatalf("Stats = %+v", st)
	}
}

// rearmRun delivers, on one worker, the alarms of objects 0-9, each of
// which re-arms itself for the same (past) time 3 times, and of object 10,
// which re-arms for ever until the others are done. It returns the
// objects' numbers in delivery order.
func rearmRun(t *testing.T, crowded bool) []int {
	fc := clock.NewFake(t0)
	o := newObjects()
	s, err := alarm.Open(alarm.Config{
		Path:    filepath.Join(t.TempDir(), "index"),
		NoSync:  true,
		Clock:   fc,
		Workers: 1, // deliveries in a strict sequence
		Room: func() int {
			if crowded {
				return 0
			}
			return 1000
		},
		Deliver: o.deliver,
	})
	if err != nil {
		t.Fatal(err)
	}
	o.s, o.c = s, fc
	defer s.Close()
	for i := range rearmObjects {
		o.rearm[key(i)] = rearmRounds - 1
		o.commit(key(i), t0.Add(time.Second), true)
	}
	o.rearm[key(rearmObjects)] = 1 << 30
	o.commit(key(rearmObjects), t0.Add(time.Second), true)
	s.Ready("ns")
	fc.Advance(time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for {
		o.mu.Lock()
		left := 0
		for i := range rearmObjects {
			if _, ok := o.stored[key(i)]; ok {
				left++
			}
		}
		o.mu.Unlock()
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d objects still hold alarms after %d deliveries", left, len(o.Deliveries()))
		}
		time.Sleep(time.Millisecond)
	}
	o.mu.Lock()
	o.rearm[key(rearmObjects)] = 0
	o.mu.Unlock()
	waitIdle(t, s)
	var seq []int
	for _, d := range o.Deliveries() {
		seq = append(seq, int(d.Key.ID[0])<<8|int(d.Key.ID[1]))
	}
	return seq
}

const rearmObjects, rearmRounds = 10, 4

// Ensure that while memory is crowded (Config.Room is below the alarms
// due), an alarm an object
// sets for a time already due, from its own handler, is delivered ahead
// of alarms that fell due by the clock (so that a backlog of due alarms
// does not cycle through every object, evicting each before its next
// alarm), but never more than alarm.WarmBurst in a row while those wait;
// and that otherwise alarms go in arrival order.
func TestScheduler_PrefersObjectsThatJustRan(t *testing.T) {
	seq := rearmRun(t, true)
	// The endless object never runs more than 1+WarmBurst times in a row
	// (its cold delivery, then warm ones) while another object's first
	// alarm waits.
	firsts := 0 // bounded objects delivered so far
	seen := map[int]bool{}
	run := 0 // consecutive deliveries of the endless object
	for i, n := range seq {
		if n == rearmObjects {
			run++
			if firsts < rearmObjects && run > 1+alarm.WarmBurst {
				t.Fatalf("endless object delivered %d times in a row while cold alarms waited: %v", run, seq[:i+1])
			}
			continue
		}
		run = 0
		if !seen[n] {
			firsts++
			seen[n] = true
		}
	}
	// Without the endless object in the way, each bounded object's
	// rounds are consecutive.
	bounded := withoutEndless(t, seq)
	for i := 0; i < len(bounded); i += rearmRounds {
		for j := i; j < i+rearmRounds; j++ {
			if bounded[j] != bounded[i] {
				t.Fatalf("crowded: object %d's deliveries are interleaved with others: %v", bounded[i], bounded)
			}
		}
	}

	// Not crowded: arrival order, so the bounded objects take turns.
	bounded = withoutEndless(t, rearmRun(t, false))
	for i := 1; i < rearmObjects; i++ {
		if bounded[i] == bounded[0] {
			t.Fatalf("not crowded: object %d delivered again before every other object's first alarm: %v", bounded[0], bounded)
		}
	}
}

// withoutEndless drops rearmRun's endless object from seq and checks the
// count of the others' deliveries.
func withoutEndless(t *testing.T, seq []int) []int {
	t.Helper()
	var bounded []int
	for _, n := range seq {
		if n != rearmObjects {
			bounded = append(bounded, n)
		}
	}
	if len(bounded) != rearmObjects*rearmRounds {
		t.Fatalf("%d deliveries to the bounded objects, want %d: %v", len(bounded), rearmObjects*rearmRounds, seq)
	}
	return bounded
}

// Ensure a failing alarm is retried with backoff and dropped after the
// policy's retries.
func TestScheduler_RetryAndDrop(t *testing.T) {
	fc := clock.NewFake(t0)
	o := newObjects()
	s := openScheduler(t, filepath.Join(t.TempDir(), "index"), fc, o)
	s.Ready("ns")
	o.fail[key(1)] = 100
	o.commit(key(1), t0, true)
	waitIdle(t, s)
	for _, d := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second} {
		if got, want := s.Stats().Next, fc.Now().Add(d); !got.Equal(want) {
			t.Fatalf("next delivery at %v, want %v", got, want)
		}
		fc.Advance(d)
		waitIdle(t, s)
	}
	d := o.Deliveries()
	if len(d) != 5 || !d[4].Drop || d[3].Retry != 3 {
		t.Fatalf("deliveries = %+v; want 4 attempts then a drop", d)
	}
	if _, ok := o.stored[key(1)]; ok {
		t.Fatal("dropped alarm still stored")
	}
	if st := s.Stats(); st.Dropped != 1 || st.Failed != 4 || st.Scheduled != 0 {
		t.Fatalf("Stats = %+v", st)
	}
}

// Ensure the index announces every stored alarm no later than it is due
// (Prepare writes it before the commit), follows raised and deleted alarms
// once their commits are durable, and is read back at the next Open.
func TestScheduler_IndexFollowsCommits(t *testing.T) {
	path := filepath.Join(t.TempDir(), "index")
	fc := clock.NewFake(t0)
	o := newObjects()
	s := openScheduler(t, path, fc, o)
	s.Ready("ns")
	for i := range 5 {
		o.commit(key(i), t0.Add(time.Hour), true)
	}
	o.commit(key(0), t0.Add(2*time.Hour), true)    // raised: lazily
	o.commit(key(1), t0.Add(30*time.Minute), true) // lowered: before the commit
	o.commit(key(2), time.Time{}, false)           // deleted: lazily
	// A commit whose durability failed: the index keeps the earlier row.
	ch, err := s.Prepare(key(3), t0.Add(3*time.Hour), true)
	if err != nil {
		t.Fatal(err)
	}
	s.Committed(ch, failed{}, nil)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	fc2 := clock.NewFake(t0)
	o2 := newObjects()
	s2 := openScheduler(t, path, fc2, o2)
	if st := s2.Stats(); st.Scheduled != 4 {
		t.Fatalf("reopened Stats = %+v, want 4 scheduled", st)
	}
	s2.Ready("ns")
	want := map[alarm.Key]time.Time{
		key(0): t0.Add(2 * time.Hour),
		key(1): t0.Add(30 * time.Minute),
		key(3): t0.Add(time.Hour), // kept: the later value never became durable
		key(4): t0.Add(time.Hour),
	}
	for k, at := range want {
		o2.stored[k] = at
	}
	fc2.Advance(3 * time.Hour)
	waitIdle(t, s2)
	got := map[alarm.Key]bool{}
	for _, d := range o2.Deliveries() {
		got[d.Key] = true
	}
	if len(got) != 4 {
		t.Fatalf("delivered %v, want the 4 indexed keys", got)
	}
}

// Ensure Prepare of an alarm earlier than the index row waits for the
// index, and that concurrent commits of many keys share index commits.
func TestScheduler_PrepareGroupCommit(t *testing.T) {
	fc := clock.NewFake(t0)
	o := newObjects()
	s := openScheduler(t, filepath.Join(t.TempDir(), "index"), fc, o)
	s.Ready("ns")
	var wg sync.WaitGroup
	const n = 2000
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o.commit(key(i), t0.Add(time.Hour), true)
		}()
	}
	wg.Wait()
	st := s.Stats()
	if st.IndexWrites < n || st.IndexCommits >= n {
		t.Fatalf("Stats = %+v; want %d writes in fewer commits", st, n)
	}
	t.Logf("%d index writes in %d commits", st.IndexWrites, st.IndexCommits)
}

// Ensure Close stops every goroutine even with alarms due and deliveries
// blocked, and Prepare then fails.
func TestScheduler_Close(t *testing.T) {
	fc := clock.NewFake(t0)
	block := make(chan struct{})
	var started sync.WaitGroup
	started.Add(1)
	var once sync.Once
	s, err := alarm.Open(alarm.Config{
		Path:  filepath.Join(t.TempDir(), "index"),
		Clock: fc,
		Deliver: func(ctx context.Context, d alarm.Delivery) alarm.Result {
			once.Do(started.Done)
			select {
			case <-block:
			case <-ctx.Done():
			}
			return alarm.Result{Err: ctx.Err()}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Ready("ns")
	for i := range 100 {
		ch, err := s.Prepare(key(i), t0, true)
		if err != nil {
			t.Fatal(err)
		}
		s.Committed(ch, done{}, nil)
	}
	started.Wait()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Prepare(key(1), t0, true); !errors.Is(err, alarm.ErrClosed) {
		t.Fatalf("Prepare after Close: %v, want ErrClosed", err)
	}
}

func TestPolicy_Backoff(t *testing.T) {
	p := alarm.Policy{Delay: 2 * time.Second}
	var got []string
	for r := 1; r <= 6; r++ {
		got = append(got, p.Backoff(r).String())
	}
	if fmt.Sprint(got) != "[2s 4s 8s 16s 32s 1m4s]" {
		t.Fatalf("Backoff = %v", got)
	}
	p.Jitter, p.Rand = 0.25, func() float64 { return 0.999999 }
	if d := p.Backoff(1); d <= 2*time.Second || d > 2500*time.Millisecond {
		t.Fatalf("Backoff with jitter = %v, want (2s, 2.5s]", d)
	}
	if d := (alarm.Policy{Delay: time.Hour}).Backoff(100); d != 24*time.Hour {
		t.Fatalf("Backoff(100) = %v, want the 24h cap", d)
	}
}

// TestScheduler_WaitOffWorker: a delivery whose writes are slow to become
// durable (Result.Wait blocks) does not hold its worker: with one worker,
// later alarms are delivered meanwhile; the slow alarm is not delivered
// again before its Wait returns, its outcome counts once it does, and
// Close waits for it.
func TestScheduler_WaitOffWorker(t *testing.T) {
	fc := clock.NewFake(t0)
	o := newObjects()
	slow := key(0)
	gate := make(chan struct{})
	waited := make(chan struct{})
	s, err := alarm.Open(alarm.Config{
		Path:    filepath.Join(t.TempDir(), "index"),
		Clock:   fc,
		Workers: 1,
		Deliver: func(ctx context.Context, d alarm.Delivery) alarm.Result {
			r := o.deliver(ctx, d)
			if d.Key != slow {
				return r
			}
			return alarm.Result{Wait: func() alarm.Result {
				<-gate
				close(waited)
				return r
			}}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	o.s, o.c = s, fc
	s.Ready("ns")
	o.commit(slow, t0, true)
	for i := 1; i <= 5; i++ {
		o.commit(key(i), t0.Add(time.Second), true)
	}
	fc.Set(t0)
	deadline := time.Now().Add(10 * time.Second)
	for len(o.Deliveries()) < 1 {
		if time.Now().After(deadline) {
			t.Fatal("the slow alarm was not delivered")
		}
		time.Sleep(time.Millisecond)
	}
	// The slow delivery waits; the one worker must still deliver the rest.
	fc.Set(t0.Add(time.Second))
	for len(o.Deliveries()) < 6 {
		if time.Now().After(deadline) {
			t.Fatalf("%d deliveries while one waited for durability, want 6", len(o.Deliveries()))
		}
		time.Sleep(time.Millisecond)
	}
	if st := s.Stats(); st.Delivered != 5 || st.Running != 1 {
		t.Fatalf("while the slow one waits: %+v, want 5 delivered and 1 running", st)
	}
	close(gate)
	<-waited
	for s.Stats().Delivered != 6 {
		if time.Now().After(deadline) {
			t.Fatalf("after Wait returned: %+v, want 6 delivered", s.Stats())
		}
		time.Sleep(time.Millisecond)
	}
	for _, d := range o.Deliveries() {
		if d.Key == slow && d.Retry != 0 {
			t.Fatalf("the slow alarm was delivered again: %+v", d)
		}
	}
	if n := len(o.Deliveries()); n != 6 {
		t.Fatalf("%d deliveries, want 6", n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestScheduler_CloseWaitsForWait: Close returns only after a pending
// Result.Wait has returned.
func TestScheduler_CloseWaitsForWait(t *testing.T) {
	fc := clock.NewFake(t0)
	entered := make(chan struct{})
	var finished bool
	var mu sync.Mutex
	s, err := alarm.Open(alarm.Config{
		Path:  filepath.Join(t.TempDir(), "index"),
		Clock: fc,
		Deliver: func(ctx context.Context, d alarm.Delivery) alarm.Result {
			return alarm.Result{Wait: func() alarm.Result {
				close(entered)
				time.Sleep(20 * time.Millisecond)
				mu.Lock()
				finished = true
				mu.Unlock()
				return alarm.Result{}
			}}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Ready("ns")
	ch, err := s.Prepare(key(1), t0, true)
	if err != nil {
		t.Fatal(err)
	}
	s.Committed(ch, done{}, nil)
	<-entered
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !finished {
		t.Fatal("Close returned before the pending Wait did")
	}
}
