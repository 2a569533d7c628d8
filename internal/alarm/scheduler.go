package alarm

import (
	"container/heap"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/durable-go/durable/internal/clock"
)

// maxInfraBackoff caps the backoff of deliveries that fail through no fault
// of the handler, which are retried for ever: 2 s << 9 = 1,024 s.
const maxInfraBackoff = 10

// DefaultWorkers is the number of alarms a Scheduler delivers at once.
// Deliveries spend most of their time waiting for fsyncs, so it is well
// above the number of cores.
const DefaultWorkers = 128

// maxWaitingPerWorker bounds the deliveries waiting for their writes to
// become durable off the workers (Result.Wait), per worker. Each pins its
// object in memory; past the bound workers wait themselves.
const maxWaitingPerWorker = 8

// ErrClosed is returned by Prepare once the Scheduler is closed.
var ErrClosed = errors.New("alarm: scheduler closed")

// Delivery is one call of Config.Deliver.
type Delivery struct {
	Key Key
	// Retry counts the failed deliveries of this alarm so far: 0 on the
	// first delivery.
	Retry int
	// Drop means the alarm failed more often than Policy.Retries allows:
	// the delivery must delete the stored alarm, if it is due and equal to
	// Alarm (any due alarm if Alarm is zero), without running the handler.
	Drop  bool
	Alarm time.Time
}

// Result is what Config.Deliver reports.
type Result struct {
	// Alarm is the stored alarm time the delivery found due; zero if the
	// object had no alarm due (the index row was early or stale).
	Alarm time.Time
	// Ran reports that the handler ran and succeeded.
	Ran bool
	// Err is non-nil if the delivery failed; the alarm is then retried.
	Err error
	// Cancel reports that the failed handler deleted its alarm: the
	// deletion was rolled back with the rest, but the alarm is not
	// retried (it is deleted without running the handler).
	Cancel bool
	// Infra reports a failure of the runtime rather than of the handler
	// (the object was overloaded, a write could not be made durable): the
	// alarm is retried with backoff, without using up Policy.Retries.
	Infra bool
	// Wait, if set, means the delivery's turn has ended but its writes
	// are not durable yet: the Scheduler calls Wait once, off the worker,
	// and its Result is the delivery's outcome. The worker meanwhile
	// starts the next delivery, so that slow fsyncs do not make alarms
	// due in the meantime late.
	Wait func() Result
}

// Ticket stands for an object's commit; Wait returns nil once the commit
// is durable. durability.Ticket implements it.
type Ticket interface {
	Wait(ctx context.Context) error
}

// Config configures a Scheduler.
type Config struct {
	// Path is the index file, created if missing.
	Path string
	// NoSync writes the index without fsync (it then survives a process
	// crash, not a power loss), matching a runtime that does not fsync.
	NoSync bool
	// Clock is the time source; nil means the wall clock.
	Clock clock.Clock
	// Policy is the retry schedule.
	Policy Policy
	// Workers bounds concurrent deliveries; 0 means DefaultWorkers.
	Workers int
	// Logger receives failures, retries and drops; nil discards them.
	Logger *slog.Logger
	// Room reports how many more objects fit in memory before others are
	// evicted to make room; while fewer than the alarms due by the clock,
	// deliveries to objects that just ran go first (see enqueueLocked).
	// Nil means memory is unbounded.
	Room func() int
	// Deliver runs an alarm as a turn of its object (see the package
	// doc). It is called from the Scheduler's workers, never twice at once
	// for one key; ctx is cancelled by Close.
	Deliver func(ctx context.Context, d Delivery) Result
}

// Stats are counters of a Scheduler.
type Stats struct {
	// Scheduled counts alarms waiting for their time, including alarms
	// (or retries) of namespaces not registered yet.
	Scheduled int
	// Running counts deliveries due and not finished.
	Running int
	// Next is the time of the earliest scheduled delivery; zero if none.
	Next time.Time
	// Delivered counts handler runs that succeeded.
	Delivered uint64
	// Failed counts deliveries that failed (handler error, panic, abort,
	// or the object could not be reached).
	Failed uint64
	// Dropped counts alarms given up after Policy.Retries retries.
	Dropped uint64
	// IndexWrites counts rows written to or deleted from the index;
	// IndexCommits the transactions (each one fsync) that carried them.
	IndexWrites  uint64
	IndexCommits uint64
}

// state is where an entry is in its delivery cycle.
type state uint8

const (
	stateIdle      state = iota // no delivery planned
	stateScheduled              // in the heap, or parked until its namespace is ready
	stateRunning                // in the run queue or being delivered
)

// entry is the scheduler's knowledge of one object's alarm.
type entry struct {
	key Key

	// Delivery.
	state   state
	due     time.Time // when to deliver, while scheduled
	hi      int       // position in the heap; -1 if not in it
	parked  bool      // scheduled, waiting for its namespace
	retry   int       // failed deliveries of the current alarm
	infra   int       // failed deliveries of it that were the runtime's fault
	drop    bool      // the next delivery drops the alarm
	dropAt  time.Time // the alarm to drop
	changed bool      // a commit changed the alarm while running
	seq     uint64    // arrival order in the run queues

	// The object's alarm as of its latest commit that touched it.
	last   time.Time
	lastOK bool

	// The index row. While writes are queued (idxB != nil) the durable
	// row is the applied one or any queued value: pendMax is the latest
	// queued time, pendDel reports a queued deletion.
	idx       time.Time // latest value written or queued for the row
	idxOK     bool      // idx is a row (false: no row, or unknown)
	applied   time.Time // the row as of the last applied write
	appliedOK bool
	pendMax   time.Time
	pendDel   bool
	idxB      *batch // the batch carrying the latest write; nil once applied
	inflight  int    // alarm commits between Prepare and their durability
	uncertain bool   // a commit failed to become durable: the stored alarm is unknown
}

// indexCovers reports whether every state the index can be in after a
// crash has a row for e no later than at.
func (e *entry) indexCovers(at time.Time) bool {
	return e.appliedOK && !e.applied.After(at) &&
		(e.idxB == nil || (!e.pendDel && !e.pendMax.After(at)))
}

// batch is one index transaction.
type batch struct {
	ops  []op
	pos  map[Key]int // position of each key's op in ops
	done chan struct{}
	err  error // set before done is closed
}

func newBatch() *batch { return &batch{pos: make(map[Key]int), done: make(chan struct{})} }

// resolve is a commit waiting to be durable.
type resolve struct {
	e   *entry
	t   Ticket
	err error
}

// Scheduler delivers alarms on time and keeps the index. It is safe for
// concurrent use.
type Scheduler struct {
	cfg Config
	idx *index
	log *slog.Logger

	ctx    context.Context // of deliveries; cancelled by Close
	cancel context.CancelFunc

	wgWork  sync.WaitGroup // workers
	wgRes   sync.WaitGroup // resolver
	wgWrite sync.WaitGroup // index writer

	mu        sync.Mutex // guards every field below and the entries
	entries   map[Key]*entry
	heap      entryHeap
	parked    map[string][]*entry // by namespace, until Ready
	parkedN   int
	ready     map[string]bool
	coldq     []*entry   // due by the clock, waiting for a worker
	warmq     []*entry   // due as set by a commit of the (live) object itself
	warmRun   int        // warmq entries taken in a row while coldq waited
	enqueued  uint64     // entries ever queued: the arrival order (entry.seq)
	running   int        // deliveries in progress
	waiting   int        // of which waiting for durability off a worker
	workCond  *sync.Cond // a queue grew, or stopped
	cur       *batch     // index writes being gathered
	writeCond *sync.Cond // cur has ops, or writeStop
	resq      []resolve
	resCond   *sync.Cond // resq has items, or resStop
	timer     clock.Timer
	timerAt   time.Time
	timerGen  uint64 // invalidates fired timers that lost the race with a re-arm
	stopped   bool   // no new deliveries
	resStop   bool
	writeStop bool
	closed    bool

	delivered, failed, dropped uint64
	indexWrites, indexCommits  uint64
}

// Open reads the index at cfg.Path (creating it if missing) and starts the
// scheduler. Loaded alarms wait until Ready names their namespace.
func Open(cfg Config) (*Scheduler, error) {
	if cfg.Deliver == nil {
		return nil, errors.New("alarm: Config.Deliver is nil")
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Workers <= 0 {
		cfg.Workers = DefaultWorkers
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Policy.Retries < 0 || cfg.Policy.Delay < 0 || cfg.Policy.Jitter < 0 {
		return nil, errors.New("alarm: negative retry policy")
	}
	idx, rows, err := openIndex(cfg.Path, !cfg.NoSync)
	if err != nil {
		return nil, err
	}
	s := &Scheduler{
		cfg:     cfg,
		idx:     idx,
		log:     cfg.Logger,
		entries: make(map[Key]*entry, len(rows)),
		parked:  make(map[string][]*entry),
		ready:   make(map[string]bool),
		cur:     newBatch(),
	}
	s.workCond = sync.NewCond(&s.mu)
	s.writeCond = sync.NewCond(&s.mu)
	s.resCond = sync.NewCond(&s.mu)
	for _, r := range rows {
		e := &entry{
			key: r.key, hi: -1,
			state: stateScheduled, due: r.at, parked: true,
			last: r.at, lastOK: true, // assumed until a delivery reads the truth
			idx: r.at, idxOK: true,
			applied: r.at, appliedOK: true,
		}
		s.entries[r.key] = e
		s.parked[r.key.NS] = append(s.parked[r.key.NS], e)
		s.parkedN++
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	for range cfg.Workers {
		s.wgWork.Add(1)
		go s.work()
	}
	s.wgRes.Add(1)
	go s.resolveLoop()
	s.wgWrite.Add(1)
	go s.writeLoop()
	return s, nil
}

// Ready tells the scheduler that namespace ns can take deliveries: its
// alarms are scheduled, and those already due run at once.
func (s *Scheduler) Ready(ns string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ready[ns] {
		return
	}
	s.ready[ns] = true
	now := s.cfg.Clock.Now()
	for _, e := range s.parked[ns] {
		if e.parked {
			e.parked = false
			s.parkedN--
			s.scheduleAtLocked(e, e.due, now, false)
		}
	}
	delete(s.parked, ns)
}

// Change is an alarm commit in progress, from Prepare to Committed.
type Change struct {
	e  *entry
	at time.Time
	ok bool
}

// Prepare must be called before committing a transaction of object k
// that changed its alarm (or may have: a delivery's transaction); at, ok is
// the alarm the transaction leaves (ok false: none). It returns once the
// index holds a row <= at for k, so the commit may proceed; after the
// commit, call Committed with the result. An error means the index could
// not be written: do not commit.
func (s *Scheduler) Prepare(k Key, at time.Time, ok bool) (*Change, error) {
	s.mu.Lock()
	if s.writeStop {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	e := s.entries[k]
	if e == nil {
		e = &entry{key: k, hi: -1}
		s.entries[k] = e
	}
	e.inflight++
	var wait *batch
	switch {
	case !ok || e.indexCovers(at):
		// Nothing to wait for: no alarm needs announcing, or whatever the
		// index holds after a crash announces this one in time.
	case e.idxOK && !e.idx.After(at):
		wait = e.idxB // the queued write that announces it
	default:
		s.writeLocked(e, op{e: e, at: at})
		e.idx, e.idxOK = at, true
		wait = e.idxB
	}
	s.mu.Unlock()
	if wait != nil {
		<-wait.done
		if wait.err != nil {
			s.mu.Lock()
			e.inflight--
			s.maybeForgetLocked(e)
			s.mu.Unlock()
			return nil, fmt.Errorf("alarm: write index: %w", wait.err)
		}
	}
	return &Change{e: e, at: at, ok: ok}, nil
}

// Committed reports the outcome of the commit c was prepared for: err is
// the commit's error (nothing was committed), t the ticket that becomes
// durable with it. The schedule follows the new alarm at once; the index
// follows once t is durable.
func (s *Scheduler) Committed(c *Change, t Ticket, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := c.e
	if err != nil {
		e.inflight--
		s.lazyLocked(e)
		return
	}
	e.last, e.lastOK = c.at, c.ok
	if e.state == stateRunning {
		e.changed = true
	} else {
		e.retry = 0
		s.scheduleLastLocked(e, s.cfg.Clock.Now(), true)
	}
	if s.resStop {
		e.inflight--
		return
	}
	s.resq = append(s.resq, resolve{e: e, t: t})
	s.resCond.Signal()
}

// Stop ends deliveries: no alarm is started after it returns (deliveries
// in progress finish). Commits may still be prepared until Close.
func (s *Scheduler) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	s.stopped = true
	s.timerGen++
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	s.workCond.Broadcast()
}

// Close stops the scheduler: it cancels the deliveries in progress and
// waits for them, writes the index rows whose commits are durable, and
// closes the index. It is idempotent.
func (s *Scheduler) Close() error {
	s.Stop()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wgWork.Wait()
	s.mu.Lock()
	s.resStop = true
	s.resCond.Broadcast()
	s.mu.Unlock()
	s.wgRes.Wait()
	s.mu.Lock()
	s.writeStop = true
	s.writeCond.Broadcast()
	s.mu.Unlock()
	s.wgWrite.Wait()
	return s.idx.close()
}

// Stats returns the scheduler's counters.
func (s *Scheduler) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{
		Scheduled:    len(s.heap) + s.parkedN,
		Running:      len(s.coldq) + len(s.warmq) + s.running,
		Delivered:    s.delivered,
		Failed:       s.failed,
		Dropped:      s.dropped,
		IndexWrites:  s.indexWrites,
		IndexCommits: s.indexCommits,
	}
	if len(s.heap) > 0 {
		st.Next = s.heap[0].due
	}
	return st
}

// Keys returns the objects the scheduler knows may have an alarm: every
// row of its index and every alarm committed since it opened, in no
// order. The index file itself is private to the scheduler while it
// runs (see openIndex): readers of a live data folder ask here.
func (s *Scheduler) Keys() []Key {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]Key, 0, len(s.entries))
	for k := range s.entries {
		keys = append(keys, k)
	}
	return keys
}

// work is one delivery worker.
func (s *Scheduler) work() {
	defer s.wgWork.Done()
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		for len(s.coldq)+len(s.warmq) == 0 && !s.stopped {
			s.workCond.Wait()
		}
		if s.stopped {
			return
		}
		e := s.nextLocked()
		s.running++
		d := Delivery{Key: e.key, Retry: e.retry, Drop: e.drop, Alarm: e.dropAt}
		e.drop = false
		s.mu.Unlock()
		r := s.cfg.Deliver(s.ctx, d)
		if r.Wait != nil {
			s.mu.Lock()
			async := s.waiting < s.cfg.Workers*maxWaitingPerWorker
			if async {
				s.waiting++
				// The worker itself is counted in wgWork, so Add cannot
				// race with Close's Wait reaching zero.
				s.wgWork.Add(1)
			}
			s.mu.Unlock()
			if async {
				go func() {
					defer s.wgWork.Done()
					r := r.Wait()
					s.mu.Lock()
					defer s.mu.Unlock()
					s.waiting--
					s.running--
					s.completeLocked(e, d, r)
				}()
				s.mu.Lock()
				continue
			}
			r = r.Wait() // too many waiting already: wait here
		}
		s.mu.Lock()
		s.running--
		s.completeLocked(e, d, r)
	}
}

// completeLocked decides what follows a delivery.
func (s *Scheduler) completeLocked(e *entry, d Delivery, r Result) {
	e.state = stateIdle
	if s.stopped {
		return // the index keeps the alarm for the next start
	}
	now := s.cfg.Clock.Now()
	// Log attributes, built only on the paths that log (this runs under
	// s.mu for every delivery).
	attrs := func(kv ...any) []any {
		return append([]any{"namespace", e.key.NS, "id", hex.EncodeToString(e.key.ID[:])}, kv...)
	}
	switch {
	case d.Drop:
		if r.Err != nil {
			s.log.Error("alarm: could not drop a failed alarm; it will be retried after a restart",
				attrs("err", r.Err)...)
			return
		}
		s.scheduleLastLocked(e, now, true)
	case r.Err == nil:
		if r.Ran {
			s.delivered++
		}
		e.retry, e.infra = 0, 0
		if e.changed { // the delivery's commit told us the stored alarm
			s.scheduleLastLocked(e, now, true)
		}
	default:
		s.failed++
		if e.changed && !(e.lastOK && !r.Alarm.IsZero() && e.last.Equal(r.Alarm)) {
			// The alarm was replaced or deleted meanwhile: the new one
			// takes over, and the failed one is not retried.
			e.retry, e.infra = 0, 0
			s.scheduleLastLocked(e, now, true)
			return
		}
		if r.Cancel {
			s.log.Info("alarm: failed after deleting itself; not retried", attrs("alarm", r.Alarm, "err", r.Err)...)
			e.retry, e.infra = 0, 0
			e.drop = true
			e.dropAt = r.Alarm
			s.enqueueLocked(e, true)
			return
		}
		if r.Infra {
			e.infra++
			delay := s.cfg.Policy.Backoff(min(e.infra, maxInfraBackoff))
			s.log.Warn("alarm: could not be delivered, will retry",
				attrs("alarm", r.Alarm, "attempt", e.infra, "in", delay, "err", r.Err)...)
			s.scheduleAtLocked(e, now.Add(delay), now, false)
			return
		}
		e.retry++
		if e.retry > s.cfg.Policy.Retries {
			s.dropped++
			s.log.Error("alarm: dropped after failing too often",
				attrs("alarm", r.Alarm, "attempts", e.retry, "err", r.Err)...)
			e.retry = 0
			e.drop = true
			e.dropAt = r.Alarm
			s.enqueueLocked(e, true)
			return
		}
		delay := s.cfg.Policy.Backoff(e.retry)
		s.log.Warn("alarm: failed, will retry",
			attrs("alarm", r.Alarm, "retry", e.retry, "in", delay, "err", r.Err)...)
		s.scheduleAtLocked(e, now.Add(delay), now, false)
	}
}

// scheduleLastLocked schedules the object's latest committed alarm, or
// unschedules it if there is none. e must not be running; warm says the
// object has just run (see enqueueLocked).
func (s *Scheduler) scheduleLastLocked(e *entry, now time.Time, warm bool) {
	if !e.lastOK {
		s.unscheduleLocked(e)
		e.state = stateIdle
		s.maybeForgetLocked(e)
		return
	}
	s.scheduleAtLocked(e, e.last, now, warm)
}

// scheduleAtLocked plans a delivery of e at at. e must not be running;
// warm says the object has just run (see enqueueLocked).
func (s *Scheduler) scheduleAtLocked(e *entry, at time.Time, now time.Time, warm bool) {
	e.due = at
	e.state = stateScheduled
	if !s.ready[e.key.NS] {
		if e.hi >= 0 {
			heap.Remove(&s.heap, e.hi)
		}
		if !e.parked {
			e.parked = true
			s.parkedN++
			s.parked[e.key.NS] = append(s.parked[e.key.NS], e)
		}
		return
	}
	if !at.After(now) {
		s.enqueueLocked(e, warm)
		return
	}
	if e.hi >= 0 {
		heap.Fix(&s.heap, e.hi)
	} else {
		heap.Push(&s.heap, e)
	}
	s.armLocked(now)
}

// unscheduleLocked takes e out of the heap or the parked list.
func (s *Scheduler) unscheduleLocked(e *entry) {
	if e.hi >= 0 {
		heap.Remove(&s.heap, e.hi)
	}
	if e.parked {
		e.parked = false // Ready skips it
		s.parkedN--
	}
}

// warmBurst is how many warm deliveries (see enqueueLocked) the workers
// take in a row while cold ones wait and would overflow memory.
const warmBurst = 8

// enqueueLocked hands e to the workers. A warm entry is due because the
// object itself, just now in memory, committed an alarm whose time has
// come (an alarm handler re-arming for now, say); the others fell due by
// the clock, and their objects may have left memory. Workers take entries
// in arrival order, except while more cold entries wait than objects fit
// in memory besides those there now (Config.Room): then they prefer warm
// entries, up to warmBurst in a row while cold ones wait. Taking them
// strictly in turn would then cycle through more objects than
// Options.MaxLiveObjects and evict each one before its next alarm, so
// that nearly every delivery paid for an activation; with room to spare,
// arrival order keeps more objects' deliveries in flight at once (more
// commits share each fsync).
func (s *Scheduler) enqueueLocked(e *entry, warm bool) {
	s.unscheduleLocked(e)
	e.state = stateRunning
	e.changed = false
	s.enqueued++
	e.seq = s.enqueued
	if warm {
		s.warmq = append(s.warmq, e)
	} else {
		s.coldq = append(s.coldq, e)
	}
	s.workCond.Signal()
}

// nextLocked takes the next entry to deliver; one must be queued.
func (s *Scheduler) nextLocked() *entry {
	q := &s.coldq
	switch {
	case len(s.warmq) == 0:
	case len(s.coldq) == 0:
		q = &s.warmq
	case s.cfg.Room == nil || len(s.coldq) <= s.cfg.Room():
		s.warmRun = 0
		if s.warmq[0].seq < s.coldq[0].seq {
			q = &s.warmq
		}
	case s.warmRun < warmBurst:
		q = &s.warmq
		s.warmRun++
	default:
		s.warmRun = 0
	}
	e := (*q)[0]
	(*q)[0] = nil
	*q = (*q)[1:]
	return e
}

// armLocked makes sure the timer fires by the earliest due time.
func (s *Scheduler) armLocked(now time.Time) {
	if s.stopped || len(s.heap) == 0 {
		return // an armed timer finds nothing due and stops
	}
	at := s.heap[0].due
	if s.timer != nil && !at.Before(s.timerAt) {
		return
	}
	if s.timer != nil {
		s.timer.Stop()
	}
	s.timerGen++
	gen := s.timerGen
	s.timerAt = at
	s.timer = s.cfg.Clock.AfterFunc(at.Sub(now), func() { s.fire(gen) })
}

// fire runs when the timer goes off: it hands every due alarm to the
// workers and re-arms the timer.
func (s *Scheduler) fire(gen uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if gen != s.timerGen || s.stopped {
		return
	}
	s.timer = nil
	now := s.cfg.Clock.Now()
	for len(s.heap) > 0 && !s.heap[0].due.After(now) {
		s.enqueueLocked(s.heap[0], false)
	}
	s.armLocked(now)
}

// writeLocked queues an index write for e.
func (s *Scheduler) writeLocked(e *entry, o op) {
	b := s.cur
	if i, ok := b.pos[e.key]; ok {
		b.ops[i] = o
	} else {
		b.pos[e.key] = len(b.ops)
		b.ops = append(b.ops, o)
	}
	if e.idxB == nil {
		e.pendMax, e.pendDel = time.Time{}, false
	}
	if o.del {
		e.pendDel = true
	} else if o.at.After(e.pendMax) {
		e.pendMax = o.at
	}
	e.idxB = b
	s.writeCond.Signal()
}

// lazyLocked lets e's index row follow the object's alarm, once every
// alarm commit of the object is durable: the row is raised to a later
// alarm or deleted. (Moving it earlier is Prepare's job.)
func (s *Scheduler) lazyLocked(e *entry) {
	if e.inflight > 0 || e.uncertain || s.writeStop {
		s.maybeForgetLocked(e)
		return
	}
	switch {
	case e.lastOK && (!e.idxOK || !e.idx.Equal(e.last)):
		s.writeLocked(e, op{e: e, at: e.last})
		e.idx, e.idxOK = e.last, true
	case !e.lastOK && e.idxOK:
		s.writeLocked(e, op{e: e, del: true})
		e.idxOK = false
	}
	s.maybeForgetLocked(e)
}

// maybeForgetLocked drops e from memory once nothing refers to it: no
// alarm, no delivery, no index row or write, no commit in flight.
func (s *Scheduler) maybeForgetLocked(e *entry) {
	if e.state == stateIdle && !e.lastOK && !e.idxOK && e.idxB == nil &&
		e.inflight == 0 && !e.uncertain && s.entries[e.key] == e {
		delete(s.entries, e.key)
	}
}

// resolveLoop waits for alarm commits to become durable, then lets the
// index follow them.
func (s *Scheduler) resolveLoop() {
	defer s.wgRes.Done()
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		for len(s.resq) == 0 && !s.resStop {
			s.resCond.Wait()
		}
		if len(s.resq) == 0 {
			return
		}
		items := s.resq
		s.resq = nil
		s.mu.Unlock()
		for i := range items {
			// Tickets of one object become durable in order, and the
			// durability layer fails them rather than hang.
			items[i].err = items[i].t.Wait(context.Background())
		}
		s.mu.Lock()
		now := s.cfg.Clock.Now()
		for _, it := range items {
			e := it.e
			e.inflight--
			if it.err != nil {
				// The commit may or may not have reached the disk: have a
				// delivery read the truth, no later than the index row.
				e.uncertain = true
				if e.idxOK && e.state != stateRunning && (e.state != stateScheduled || e.due.After(e.idx)) {
					s.scheduleAtLocked(e, e.idx, now, false)
				}
				continue
			}
			if e.inflight == 0 {
				e.uncertain = false
			}
			s.lazyLocked(e)
		}
	}
}

// writeLoop applies queued index writes, one transaction (and one fsync)
// for all the writes queued while the previous one ran.
func (s *Scheduler) writeLoop() {
	defer s.wgWrite.Done()
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		for len(s.cur.ops) == 0 && !s.writeStop {
			s.writeCond.Wait()
		}
		if len(s.cur.ops) == 0 {
			return
		}
		b := s.cur
		s.cur = newBatch()
		s.mu.Unlock()
		err := s.idx.apply(b.ops)
		s.mu.Lock()
		b.err = err
		if err != nil {
			s.log.Error("alarm: index write failed", "path", s.idx.path, "rows", len(b.ops), "err", err)
		} else {
			s.indexCommits++
			s.indexWrites += uint64(len(b.ops))
		}
		for _, o := range b.ops {
			e := o.e
			if err != nil {
				// The row is unknown: the next Prepare writes again.
				e.appliedOK = false
				if e.idxB == b {
					e.idxOK = false
				}
			} else {
				e.applied, e.appliedOK = o.at, !o.del
			}
			if e.idxB == b {
				e.idxB = nil
				s.maybeForgetLocked(e)
			}
		}
		close(b.done)
	}
}

// entryHeap orders scheduled entries by due time.
type entryHeap []*entry

func (h entryHeap) Len() int           { return len(h) }
func (h entryHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h entryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].hi = i
	h[j].hi = j
}
func (h *entryHeap) Push(x any) {
	e := x.(*entry)
	e.hi = len(*h)
	*h = append(*h, e)
}
func (h *entryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.hi = -1
	return e
}
