package engine

import (
	"cmp"
	"context"
	"errors"
	"hash/maphash"
	"log/slog"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/durable-go/durable/internal/clock"
)

// Errors returned by the engine. The root package re-exports them.
var (
	// ErrOverloaded means the object's queue is full; the call was not made.
	ErrOverloaded = errors.New("durable: object overloaded: too many calls queued")
	// ErrClosed means the runtime is shutting down or shut down.
	ErrClosed = errors.New("durable: runtime closed")
)

// DefaultMaxQueue bounds the calls waiting for one object's turn.
const DefaultMaxQueue = 4096

// DefaultSweepInterval is how often idle objects are looked for when no
// activation asks for a shorter idle time.
const DefaultSweepInterval = time.Second

const shardCount = 64

// Activation is the live state of one object between its construction and
// its eviction or reset. The root package implements it.
type Activation interface {
	// IdleTimeout is how long the activation may stay idle (no call held,
	// queued or running) before it is evicted. A negative value never evicts.
	IdleTimeout() time.Duration
	// Busy reports work that keeps the object in memory although no call
	// runs (for example a WaitUntil function).
	Busy() bool
	// Close releases the activation. It is called once, after the object
	// was evicted (cause nil) or reset (cause says why), never during a turn
	// of that activation except for a forced reset.
	Close(cause error)
}

// Shrinker is implemented by activations that can give memory back while
// they stay live (the caches of an open database). The sweep calls Shrink,
// holding the object's turn, once the object has been idle for
// Config.ShrinkAfter, and again only after the object was used since.
type Shrinker interface {
	Shrink()
}

// DefaultShrinkAfter is how long an object stays idle before it is shrunk.
// Shrinking costs the next turn a little (an open database prepares its
// statements again), so it waits for a pause longer than most objects'
// gaps between calls, and well before the default idle eviction.
const DefaultShrinkAfter = 2 * time.Second

// Config configures an Engine.
type Config struct {
	Clock    clock.Clock // nil means the real clock
	MaxQueue int         // 0 means DefaultMaxQueue
	// SweepInterval bounds how late an idle object is evicted; 0 means
	// DefaultSweepInterval.
	SweepInterval time.Duration
	// MaxLive bounds the live activations: past it, the least recently
	// used idle objects are evicted (down to 90% of MaxLive) whatever
	// their idle time, so that open databases cannot exhaust the
	// process's file descriptors. 0 means no bound.
	MaxLive int
	// ShrinkAfter is how long an object stays idle before its activation
	// is shrunk (Shrinker); 0 means DefaultShrinkAfter, negative never.
	ShrinkAfter time.Duration
	Logger      *slog.Logger // nil discards
}

// Engine is the registry of live objects: it hands out each object's turn
// and evicts idle objects. It starts no goroutine of its own: eviction runs
// from a clock timer.
type Engine struct {
	cfg    Config
	seed   maphash.Seed
	shards [shardCount]shard

	closed   atomic.Bool
	inflight atomic.Int64
	drained  chan struct{} // capacity 1: inflight reached 0 after close

	sweepMu    sync.Mutex // guards sweepTimer, sweepStopped
	sweepTimer clock.Timer
	sweepStop  bool

	evictions atomic.Uint64
	shrinks   atomic.Uint64
	live      atomic.Int64
	uses      atomic.Uint64 // counts Leave calls; orders objects by last use

	trimming atomic.Bool    // a trim to MaxLive is under way
	closers  sync.WaitGroup // goroutines closing trimmed activations
	// closing counts evicted activations not closed yet: they still hold
	// their files, so WaitRoom counts them against MaxLive. roomCh is
	// closed (and replaced) whenever one of them finishes closing.
	closing atomic.Int64
	roomMu  sync.Mutex
	roomCh  chan struct{}
}

type shard struct {
	mu sync.Mutex // guards m, closing
	m  map[string]*Object
	// closing holds the keys of evicted activations still closing; the
	// channel is closed when they are done. No slot is made for such a key
	// before then, so an object never runs two activations (and never
	// opens its database twice) at once.
	closing map[string]chan struct{}
}

// New returns an Engine and arms its eviction timer.
func New(cfg Config) *Engine {
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.MaxQueue == 0 {
		cfg.MaxQueue = DefaultMaxQueue
	}
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = DefaultSweepInterval
	}
	if cfg.ShrinkAfter == 0 {
		cfg.ShrinkAfter = DefaultShrinkAfter
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	e := &Engine{cfg: cfg, seed: maphash.MakeSeed(), drained: make(chan struct{}, 1)}
	for i := range e.shards {
		e.shards[i].m = make(map[string]*Object)
	}
	e.armSweep()
	return e
}

// Clock returns the engine's clock.
func (e *Engine) Clock() clock.Clock { return e.cfg.Clock }

// Object is the slot of one object ID: its turn and, while it is live, its
// activation. A slot exists only while the object is in use or live.
type Object struct {
	e     *Engine
	key   string
	shard *shard

	lock     turnLock
	refs     atomic.Int32  // incremented under shard.mu
	lastUsed atomic.Int64  // clock time in unix nanoseconds
	useSeq   atomic.Uint64 // Engine.uses at the last Leave: the order of use for trim
	shrunk   atomic.Int64  // lastUsed when the activation was last shrunk

	actMu sync.Mutex // guards act
	act   Activation
}

// Key returns the object's registry key.
func (o *Object) Key() string { return o.key }

// Enter finds or creates the slot for key and pins it in memory until
// Leave. Every Enter must be matched by one Leave.
func (e *Engine) Enter(key string) (*Object, error) {
	e.inflight.Add(1)
	if e.closed.Load() {
		e.leaveInflight()
		return nil, ErrClosed
	}
	sh := &e.shards[maphash.String(e.seed, key)%shardCount]
	sh.mu.Lock()
	for {
		ch := sh.closing[key]
		if ch == nil {
			break
		}
		sh.mu.Unlock()
		<-ch
		sh.mu.Lock()
	}
	o := sh.m[key]
	if o == nil {
		o = &Object{e: e, key: key, shard: sh}
		o.lock.max = e.cfg.MaxQueue
		sh.m[key] = o
	}
	o.refs.Add(1)
	sh.mu.Unlock()
	return o, nil
}

// Leave unpins the slot.
func (o *Object) Leave() {
	o.lastUsed.Store(o.e.cfg.Clock.Now().UnixNano())
	o.useSeq.Store(o.e.uses.Add(1))
	o.refs.Add(-1)
	o.e.leaveInflight()
}

func (e *Engine) leaveInflight() {
	if e.inflight.Add(-1) == 0 && e.closed.Load() {
		select {
		case e.drained <- struct{}{}:
		default:
		}
	}
}

// Acquire takes the object's turn. front is for a handler resuming after an
// outgoing call: it queues ahead of new events and is never refused.
func (o *Object) Acquire(ctx context.Context, front bool) (uint64, error) {
	return o.lock.acquire(ctx, front)
}

// Release gives the turn to the next waiter. It returns false if tok no
// longer holds the turn (the turn was taken away by ForceReset).
func (o *Object) Release(tok uint64) bool { return o.lock.release(tok) }

// Queued returns how many calls wait for the turn.
func (o *Object) Queued() int { return o.lock.queued() }

// Activation returns the live activation or nil. Call it holding the turn.
func (o *Object) Activation() Activation {
	o.actMu.Lock()
	defer o.actMu.Unlock()
	return o.act
}

// SetActivation installs a newly constructed activation. Call it holding
// the turn.
func (o *Object) SetActivation(a Activation) {
	o.actMu.Lock()
	grew := o.act == nil && a != nil
	o.act = a
	o.actMu.Unlock()
	if grew {
		if n := o.e.live.Add(1); o.e.cfg.MaxLive > 0 && n > int64(o.e.cfg.MaxLive) {
			o.e.trim()
		}
	}
}

// trim evicts the least recently used idle objects until 90% of MaxLive
// are live. Choosing the victims is quick and happens here; closing them
// (their databases) happens on a goroutine that Shutdown waits for. Only
// one trim chooses at a time; callers that find one choosing go on.
func (e *Engine) trim() {
	// WaitRoom calls trim while evicted objects close, with nothing to
	// choose yet: return before scanning every live object (and before
	// waking the waiters, which would call it again at once).
	if e.closed.Load() || e.live.Load() <= e.trimLevel() || !e.trimming.CompareAndSwap(false, true) {
		return
	}
	excess := int(e.live.Load() - e.trimLevel())
	type candidate struct {
		sh   *shard
		key  string
		used uint64
	}
	var cands []candidate
	for i := range e.shards {
		sh := &e.shards[i]
		sh.mu.Lock()
		for k, o := range sh.m {
			if o.refs.Load() == 0 && o.lock.idle() {
				cands = append(cands, candidate{sh, k, o.useSeq.Load()})
			}
		}
		sh.mu.Unlock()
	}
	slices.SortFunc(cands, func(a, b candidate) int { return cmp.Compare(a.used, b.used) })
	var victims []victim
	for _, c := range cands {
		if len(victims) >= excess {
			break
		}
		c.sh.mu.Lock()
		if v, ok := c.sh.detachLocked(c.key); ok {
			victims = append(victims, v)
		}
		c.sh.mu.Unlock()
	}
	// The victims move from live to closing: the next activation past
	// the bound may start another trim while these close, and WaitRoom
	// holds new activations back while live and closing ones together
	// are at the bound.
	e.closing.Add(int64(len(victims)))
	e.live.Add(-int64(len(victims)))
	e.evictions.Add(uint64(len(victims)))
	if len(victims) > 0 {
		e.closers.Add(1)
		go func() {
			defer e.closers.Done()
			e.closeVictims(victims)
		}()
	}
	e.trimming.Store(false)
	e.roomChanged() // waiters re-check, whether or not there were victims
}

// trimLevel is the number of live objects a trim evicts down to: 90% of
// MaxLive, so that each trim makes room for several activations.
func (e *Engine) trimLevel() int64 { return int64(e.cfg.MaxLive) * 9 / 10 }

// Room returns how many more objects can be activated before live ones
// and evicted ones still closing reach trimLevel, where trims start
// evicting; math.MaxInt without MaxLive.
func (e *Engine) Room() int {
	if e.cfg.MaxLive <= 0 {
		return math.MaxInt
	}
	return int(max(0, e.trimLevel()-e.live.Load()-e.closing.Load()))
}

// WaitRoom is called before an object is activated. With MaxLive set, it
// waits while live activations and evicted ones still closing (which hold
// their files too) are at MaxLive, starting a trim if needed, so that a
// burst of activations cannot run ahead of the closes and exhaust file
// descriptors. It never waits when nothing is closing or being chosen for
// eviction: if every live object is busy, the activation goes past the
// bound rather than stall.
func (e *Engine) WaitRoom(ctx context.Context) error {
	limit := int64(e.cfg.MaxLive)
	if limit <= 0 {
		return nil
	}
	for {
		e.roomMu.Lock()
		if e.roomCh == nil {
			e.roomCh = make(chan struct{})
		}
		ch := e.roomCh
		e.roomMu.Unlock()
		live := e.live.Load()
		if live+e.closing.Load() < limit {
			return nil
		}
		if live >= e.trimLevel() {
			e.trim()
		}
		if e.closing.Load() == 0 && !e.trimming.Load() {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// closed1 records that one evicted activation finished closing.
func (e *Engine) closed1() {
	e.closing.Add(-1)
	e.roomChanged()
}

// roomChanged wakes the activations waiting in WaitRoom.
func (e *Engine) roomChanged() {
	e.roomMu.Lock()
	if e.roomCh != nil {
		close(e.roomCh)
		e.roomCh = nil
	}
	e.roomMu.Unlock()
}

// detachLocked takes the activation of key out of the shard if the object
// is live and idle (no call holds, waits for or pins it; nothing keeps it
// busy), and marks key as closing. sh.mu is held.
func (sh *shard) detachLocked(key string) (victim, bool) {
	o := sh.m[key]
	if o == nil || o.refs.Load() != 0 || !o.lock.idle() {
		return victim{}, false
	}
	o.actMu.Lock()
	a := o.act
	if a == nil || a.Busy() {
		o.actMu.Unlock()
		return victim{}, false
	}
	o.act = nil
	o.actMu.Unlock()
	delete(sh.m, key)
	return victim{sh, key, a, sh.startClosingLocked(key)}, true
}

// retire counts detached activations as evicted and closes them.
func (e *Engine) retire(vs []victim) {
	if len(vs) == 0 {
		return
	}
	e.closing.Add(int64(len(vs)))
	e.live.Add(-int64(len(vs)))
	e.evictions.Add(uint64(len(vs)))
	e.closeVictims(vs)
}

// victim is an evicted activation to close; key is marked closing in sh.
type victim struct {
	sh   *shard
	key  string
	a    Activation
	done chan struct{}
}

// closeParallel bounds the activations closed at once. Closing waits for
// the object's last commit to be durable, so closing one after another
// would let evicted-but-open databases pile up behind the fsyncs.
const closeParallel = 64

// closeVictims closes vs, up to closeParallel at a time, and returns when
// all are closed. vs are counted in e.closing.
func (e *Engine) closeVictims(vs []victim) {
	if len(vs) == 1 {
		vs[0].a.Close(nil)
		vs[0].sh.doneClosing(vs[0].key, vs[0].done)
		e.closed1()
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(len(vs), closeParallel) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < len(vs); i = int(next.Add(1)) - 1 {
				vs[i].a.Close(nil)
				vs[i].sh.doneClosing(vs[i].key, vs[i].done)
				e.closed1()
			}
		}()
	}
	wg.Wait()
}

// Reset drops the activation, if it is still a, and closes it with cause.
// Call it holding the turn. The next call constructs the object again.
func (o *Object) Reset(a Activation, cause error) {
	o.actMu.Lock()
	if a == nil || o.act != a {
		o.actMu.Unlock()
		return
	}
	o.act = nil
	o.actMu.Unlock()
	o.e.live.Add(-1)
	a.Close(cause)
}

// ForceReset takes the turn away from tok (a holder that is stuck), drops
// activation a and closes it, then lets the next waiter in. It reports
// whether tok still held the turn.
func (o *Object) ForceReset(tok uint64, a Activation, cause error) bool {
	o.lock.mu.Lock()
	held := o.lock.owner == tok
	o.lock.mu.Unlock()
	if !held {
		return false
	}
	o.Reset(a, cause)
	return o.lock.release(tok)
}

// Live returns the number of live activations.
func (e *Engine) Live() int64 { return e.live.Load() }

// Slots returns the number of object slots in memory.
func (e *Engine) Slots() int {
	n := 0
	for i := range e.shards {
		sh := &e.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

// Evictions returns how many activations were evicted for idleness.
func (e *Engine) Evictions() uint64 { return e.evictions.Load() }

// Shrinks returns how many times an idle object was shrunk (Shrinker).
func (e *Engine) Shrinks() uint64 { return e.shrinks.Load() }

func (e *Engine) armSweep() {
	e.sweepMu.Lock()
	defer e.sweepMu.Unlock()
	if e.sweepStop {
		return
	}
	e.sweepTimer = e.cfg.Clock.AfterFunc(e.cfg.SweepInterval, func() {
		e.Sweep()
		e.armSweep()
	})
}

// Sweep evicts every object idle for longer than its activation's idle
// timeout, and drops unused slots. It runs by itself every SweepInterval.
func (e *Engine) Sweep() {
	e.sweep(false)
}

// EvictAll evicts every object that is not in use now, whatever its idle
// time. Tests use it to force hibernation.
func (e *Engine) EvictAll() int {
	return e.sweep(true)
}

// Evict evicts the object key if it is live and not in use now. It
// reports whether it did.
func (e *Engine) Evict(key string) bool {
	sh := &e.shards[maphash.String(e.seed, key)%shardCount]
	sh.mu.Lock()
	v, ok := sh.detachLocked(key)
	sh.mu.Unlock()
	if ok {
		e.retire([]victim{v})
	}
	return ok
}

// startClosingLocked marks key as closing (see shard.closing).
func (sh *shard) startClosingLocked(key string) chan struct{} {
	if sh.closing == nil {
		sh.closing = make(map[string]chan struct{})
	}
	ch := make(chan struct{})
	sh.closing[key] = ch
	return ch
}

// doneClosing ends what startClosingLocked began.
func (sh *shard) doneClosing(key string, ch chan struct{}) {
	sh.mu.Lock()
	delete(sh.closing, key)
	sh.mu.Unlock()
	close(ch)
}

func (e *Engine) sweep(all bool) int {
	now := e.cfg.Clock.Now().UnixNano()
	shrinkAfter := int64(e.cfg.ShrinkAfter)
	shrink := !all && shrinkAfter > 0 && !e.closed.Load()
	var victims []victim
	var shrinks []*Object
	for i := range e.shards {
		sh := &e.shards[i]
		sh.mu.Lock()
		for k, o := range sh.m {
			if o.refs.Load() != 0 || !o.lock.idle() {
				continue
			}
			o.actMu.Lock()
			if a := o.act; a != nil {
				idle := a.IdleTimeout()
				last := o.lastUsed.Load()
				if a.Busy() || (!all && (idle < 0 || now-last < int64(idle))) {
					if _, ok := a.(Shrinker); ok && shrink && now-last >= shrinkAfter && o.shrunk.Load() != last {
						// Pinned like Enter does, so that it stays put
						// and Shutdown waits for the shrink.
						e.inflight.Add(1)
						o.refs.Add(1)
						shrinks = append(shrinks, o)
					}
					o.actMu.Unlock()
					continue
				}
				victims = append(victims, victim{sh, k, a, sh.startClosingLocked(k)})
				o.act = nil
			}
			o.actMu.Unlock()
			delete(sh.m, k)
		}
		sh.mu.Unlock()
	}
	e.retire(victims)
	for _, o := range shrinks {
		o.shrink()
	}
	return len(victims)
}

// canceled is a context that is done: acquiring the turn with it takes the
// turn only if it is free.
var canceled = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// shrink shrinks o's activation if its turn is free, then unpins o
// without counting as a use (unlike Leave).
func (o *Object) shrink() {
	defer func() {
		o.refs.Add(-1)
		o.e.leaveInflight()
	}()
	last := o.lastUsed.Load()
	tok, err := o.lock.acquire(canceled, false)
	if err != nil {
		return // an event got there first
	}
	defer o.lock.release(tok)
	if s, ok := o.Activation().(Shrinker); ok {
		s.Shrink()
		o.shrunk.Store(last)
		o.e.shrinks.Add(1)
	}
}

// Shutdown refuses new calls, waits for calls in flight to finish (or ctx
// to end), then closes every activation. It is safe to call more than once.
func (e *Engine) Shutdown(ctx context.Context) error {
	e.closed.Store(true)
	var err error
	for e.inflight.Load() > 0 {
		t := time.NewTimer(10 * time.Millisecond)
		select {
		case <-e.drained:
		case <-t.C:
		case <-ctx.Done():
			err = context.Cause(ctx)
		}
		t.Stop()
		if err != nil {
			break
		}
	}
	e.sweepMu.Lock()
	e.sweepStop = true
	if e.sweepTimer != nil {
		e.sweepTimer.Stop()
	}
	e.sweepMu.Unlock()
	e.closers.Wait()
	if err != nil {
		return err
	}
	e.sweep(true)
	return nil
}
