package durable

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/durable-go/durable/internal/durability"
	"github.com/durable-go/durable/internal/engine"
	"github.com/durable-go/durable/internal/socket"
	"github.com/durable-go/durable/internal/storage"
)

// objectDB is what a turn needs of an object's database.
type objectDB interface {
	// Commit commits the turn's implicit transaction and returns the
	// ticket that releases its output (or the ticket of the last earlier
	// commit if the turn wrote nothing).
	Commit() (durability.Ticket, error)
	// Rollback discards the turn's writes.
	Rollback() error
	// Close closes the database.
	Close() error
}

// activation is one live instance of an object, from its construction to
// its eviction or reset. It implements engine.Activation.
type activation struct {
	c     *nsCore
	o     *engine.Object
	id    ID
	inst  any
	state *State

	ctx    context.Context // cancelled when the activation closes
	cancel context.CancelFunc

	pending atomic.Int32 // WaitUntil functions running

	mu     sync.Mutex // guards db, closed, cause, broken, turn, alarm
	db     objectDB
	closed bool
	cause  error // why it closed
	broken error // set by a failed BlockConcurrencyWhile or Abort: reset at turn end
	turn   *turn // the turn running now, nil between turns
	alarm  alarmState
	// rowsRead and rowsWritten are the database's metering as of the last
	// harvestRows (metrics.go); guarded by mu.
	rowsRead, rowsWritten int64
}

var _ engine.Activation = (*activation)(nil)

// Hibernatable is implemented by objects that must not be evicted after the
// short idle time (DefaultIdleTimeout): returning false keeps an idle object
// in memory for Options.PinnedIdleTimeout instead.
type Hibernatable interface {
	Hibernatable() bool
}

func (a *activation) IdleTimeout() time.Duration {
	if h, ok := a.inst.(Hibernatable); ok && !h.Hibernatable() {
		return a.c.rt.opts.PinnedIdleTimeout
	}
	return a.c.rt.opts.IdleTimeout
}

func (a *activation) Busy() bool { return a.pending.Load() > 0 }

var _ engine.Shrinker = (*activation)(nil)

// Shrink gives back what the object's open database can do without while
// idle (its caches and prepared statements); the engine calls it between
// turns once the object has been idle for a while. The next turn rebuilds
// what it needs.
func (a *activation) Shrink() {
	a.mu.Lock()
	idle := !a.closed && a.turn == nil
	a.mu.Unlock()
	if db := a.storageDB(); db != nil && idle {
		db.ReleaseMemory()
	}
}

func (a *activation) Close(cause error) {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return
	}
	a.closed = true
	a.cause = cause
	db := a.db
	a.db = nil
	a.mu.Unlock()
	a.cancel()
	a.c.m.closed(a.inst != nil, cause) // metrics.go; inst is set once constructed
	if db != nil {
		a.harvestRows(db)
		if err := db.Close(); err != nil {
			a.c.rt.log.Warn("close object database", "namespace", a.c.name, "id", a.id.String(), "err", err)
		}
	}
	if cause != nil {
		a.c.rt.log.Warn("object reset", resetAttrs(a.c.name, a.id, cause)...)
	}
}

// closedErr returns why the activation is closed, or nil.
func (a *activation) closedErr() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.closed {
		return nil
	}
	if a.cause != nil {
		return fmt.Errorf("%w: %w", ErrObjectReset, a.cause)
	}
	return ErrObjectReset
}

func (a *activation) setBroken(err error) {
	a.mu.Lock()
	if a.broken == nil {
		a.broken = err
	}
	a.mu.Unlock()
}

// commit commits the current turn's writes.
func (a *activation) commit() (durability.Ticket, error) {
	a.mu.Lock()
	db := a.db
	a.mu.Unlock()
	if db == nil {
		return durability.Ticket{}, nil
	}
	ticket, err := a.commitDB(db) // alarm.go
	a.harvestRows(db)
	return ticket, err
}

// waitDurable waits for ticket during a turn (before an outgoing call, in
// Storage.Sync). If ctx ends first it returns ctx's cause: the writes may
// yet become durable. If they cannot be made durable, the object is
// marked to be reset when the turn ends and the error wraps ErrDurability.
func (a *activation) waitDurable(ctx context.Context, ticket durability.Ticket) error {
	err := ticket.Wait(ctx)
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return context.Cause(ctx)
	}
	err = fmt.Errorf("%w: %w", ErrDurability, err)
	a.setBroken(err)
	return err
}

// storageDB returns the object's database if it is open, else nil.
func (a *activation) storageDB() *storage.DB {
	a.mu.Lock()
	defer a.mu.Unlock()
	db, _ := a.db.(*storage.DB)
	return db
}

// inSavepoint reports whether a TransactionSync callback is running.
func (a *activation) inSavepoint() bool {
	db := a.storageDB()
	return db != nil && db.InSavepoint()
}

// lastTicket returns the ticket of the database's last commit.
func (a *activation) lastTicket() durability.Ticket {
	if db := a.storageDB(); db != nil {
		return db.Last()
	}
	return durability.Ticket{}
}

func (a *activation) rollback() {
	a.mu.Lock()
	db := a.db
	a.mu.Unlock()
	if db != nil {
		if err := db.Rollback(); err != nil {
			a.setBroken(err)
		}
	}
}

// turnKey is the context key under which a handler's ctx carries its turn.
type turnKey struct{}

// turn is one event being handled by an object. Its ctx lets outgoing
// calls find it, give up the object's turn while they wait and take it back.
type turn struct {
	o *engine.Object
	a *activation

	mu       sync.Mutex // guards tok, block, out, released
	tok      uint64     // the engine turn token held
	block    int        // BlockConcurrencyWhile depth
	out      int        // outgoing calls in flight
	released bool       // the engine turn is given up during outgoing calls
	tx       int        // Storage.Transaction depth
	stale    atomic.Bool
	// held holds WebSocket output until the turn's writes are durable
	// (websocket.go); guarded by mu.
	held *socket.Gate
}

func turnFrom(ctx context.Context) *turn {
	t, _ := ctx.Value(turnKey{}).(*turn)
	return t
}

// yield is called before an outgoing call made with the handler's ctx. The
// writes so far are committed and made durable (the output gate holds the
// call until then); then, unless BlockConcurrencyWhile is active, the
// object's turn is given up so other events can run while the call waits.
func (t *turn) yield(ctx context.Context) error {
	if t.stale.Load() {
		return t.a.closedErr()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tx == 0 && t.a.inSavepoint() {
		return fmt.Errorf("%w: an outgoing call inside TransactionSync (use Storage.Transaction to call out inside a transaction)", ErrInTransaction)
	}
	t.out++
	if t.out > 1 {
		return nil // a concurrent outgoing call already yielded
	}
	var ticket durability.Ticket
	var err error
	if t.tx > 0 {
		// Inside Transaction its writes stay open across the call; the
		// turn's earlier writes were committed when it began: the call
		// leaves once they are durable. Held output stays held until the
		// transaction's writes are committed and durable too.
		if err = t.a.waitDurable(ctx, t.a.lastTicket()); err != nil {
			t.out--
			return err
		}
		return nil // BlockConcurrencyWhile is active: the turn is kept
	}
	ticket, err = t.a.commit()
	if err != nil {
		t.out--
		err = commitError(err)
		t.a.setBroken(err)
		return err
	}
	if err = t.a.waitDurable(ctx, ticket); err != nil {
		t.out--
		return err
	}
	t.settleHeldLocked(nil) // the writes before the call are durable: release output
	if t.block == 0 {
		t.o.Release(t.tok)
		t.released = true
	}
	return nil
}

// inTx reports whether a Storage.Transaction is open in the turn.
func (t *turn) inTx() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.tx > 0
}

// resume takes the turn back after an outgoing call.
func (t *turn) resume() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.out--
	if t.out > 0 || !t.released || t.stale.Load() {
		if t.stale.Load() {
			return t.a.closedErr()
		}
		return nil
	}
	tok, err := t.o.Acquire(context.Background(), true)
	if err != nil {
		t.stale.Store(true)
		return err
	}
	if t.o.Activation() != engine.Activation(t.a) {
		// The object was reset while we waited: this handler is a zombie.
		t.o.Release(tok)
		t.stale.Store(true)
		return t.a.closedErr()
	}
	t.tok = tok
	t.released = false
	return nil
}

// blockWhile runs fn with the object's turn held even across outgoing
// calls. If fn runs past the runtime's BlockConcurrencyTimeout the object is
// reset at once and other events proceed; fn's ctx is cancelled.
func (t *turn) blockWhile(ctx context.Context, fn func(ctx context.Context) error) error {
	return t.hold(ctx, true, fn)
}

// hold runs fn with the object's turn held even across outgoing calls, as
// blockWhile does; an error from fn resets the object only if resetOnErr.
func (t *turn) hold(ctx context.Context, resetOnErr bool, fn func(ctx context.Context) error) error {
	t.mu.Lock()
	t.block++
	tok := t.tok
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		t.block--
		t.mu.Unlock()
	}()
	rt := t.a.c.rt
	bctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var timedOut atomic.Bool
	a := t.a
	timer := rt.opts.Clock.AfterFunc(rt.opts.BlockConcurrencyTimeout, func() {
		timedOut.Store(true)
		// Reset first, then wake the handler: when it ends its turn, the
		// activation is closed with ErrBlockTimeout as the cause, whichever
		// of end's checks it meets (waking it first let it end the turn
		// as if nothing happened, its error turned into a RemoteError).
		t.o.ForceReset(tok, a, ErrBlockTimeout)
		t.stale.Store(true)
		cancel(ErrBlockTimeout)
	})
	err := fn(bctx)
	timer.Stop()
	if timedOut.Load() {
		return fmt.Errorf("%w: %w", ErrObjectReset, ErrBlockTimeout)
	}
	if err != nil && resetOnErr {
		a.setBroken(err)
	}
	return err
}

// abortSignal is the panic value of State.Abort.
type abortSignal struct{ reason string }

// invokeKind delivers one event of kind to the object id: it takes the
// object's turn (constructing the object if needed), runs fn on the
// caller's goroutine, commits the turn's writes and, once they are durable,
// returns fn's error. name names the method for error messages. The event,
// and its failure, are counted (metrics.go); RPC calls use invoke.
func (c *nsCore) invokeKind(ctx context.Context, kind callKind, id ID, name func() string, fn func(ctx context.Context, inst any) error) (err error) {
	k := c.m.counters(id, kind) // metrics.go
	k.calls.Add(1)
	defer k.finish(&err)
	if caller := turnFrom(ctx); caller != nil {
		if err := caller.yield(ctx); err != nil {
			return err
		}
		defer func() {
			if rerr := caller.resume(); rerr != nil && err == nil {
				err = rerr
			}
		}()
	}
	wait, _, err := c.runTurn(ctx, id, name, fn)
	if err != nil {
		return err
	}
	return wait(ctx)
}

// invokeAsync is invokeKind for a caller outside any turn (the alarm
// scheduler) that wants its goroutine back once the turn has ended, before
// its writes are durable: the call's outcome comes from the returned
// function, which waits for them. It must be called exactly once; until
// then the object stays pinned in memory. pending is false when waiting
// would not block (the writes are durable already, or the call failed).
func (c *nsCore) invokeAsync(ctx context.Context, kind callKind, id ID, name func() string, fn func(ctx context.Context, inst any) error) (wait func(context.Context) error, pending bool) {
	k := c.m.counters(id, kind) // metrics.go
	k.calls.Add(1)
	w, ticket, err := c.runTurn(ctx, id, name, fn)
	return func(ctx context.Context) error {
		if err == nil {
			err = w(ctx)
		}
		k.finish(&err)
		return err
	}, err == nil && !ticket.Durable()
}

// runTurn runs one event's turn: it enters the object (constructing it if
// needed), runs fn under the turn and ends the turn. Unless it returns an
// error first, the returned wait must be called: it waits until the turn's
// writes are durable, releases the turn's held output and returns the
// call's outcome; the object stays pinned until then. ticket is the one
// wait waits for.
func (c *nsCore) runTurn(ctx context.Context, id ID, name func() string, fn func(ctx context.Context, inst any) error) (wait func(context.Context) error, ticket durability.Ticket, err error) {
	o, err := c.rt.eng.Enter(c.objectKey(id))
	if err != nil {
		return nil, ticket, err
	}
	pinned := true
	defer func() {
		if pinned {
			o.Leave()
		}
	}()
	tok, err := o.Acquire(ctx, false)
	if err != nil {
		if errors.Is(err, ErrOverloaded) {
			return nil, ticket, fmt.Errorf("%w: %s %s (%d queued)", ErrOverloaded, c.name, id.String()[:12], o.Queued())
		}
		return nil, ticket, err
	}
	t := &turn{o: o, tok: tok}

	a, _ := o.Activation().(*activation)
	if a != nil {
		a.mu.Lock()
		broken := a.broken
		a.mu.Unlock()
		if broken != nil { // an Abort outside a turn
			o.Reset(a, broken)
			a = nil
		}
	}
	if a == nil {
		a, err = c.activate(ctx, t, id)
		if err != nil {
			t.o.Release(t.tok)
			t.settleHeld(err)
			return nil, ticket, err
		}
	}
	t.a = a
	a.mu.Lock()
	a.turn = t
	a.mu.Unlock()

	tctx := context.WithValue(ctx, turnKey{}, t)
	herr, panicErr := runHandler(tctx, fn, a.inst)

	ticket, ferr := t.end(herr, panicErr)
	if ferr != nil {
		t.settleHeld(ferr)
		return nil, ticket, ferr
	}
	if panicErr != nil {
		t.settleHeld(panicErr)
		return nil, ticket, &RemoteError{Namespace: c.name, ID: id.String(), Method: name(), Message: panicErr.Error(), Panic: true}
	}
	pinned = false
	return func(ctx context.Context) error {
		defer o.Leave()
		if werr := ticket.Wait(ctx); werr != nil {
			if ctx.Err() != nil {
				t.settleHeldAfter(ticket)
				return context.Cause(ctx)
			}
			t.settleHeld(werr)
			// The file is poisoned: every later commit would fail too.
			// Reset the object before its next event.
			err := fmt.Errorf("%w: %w", ErrDurability, werr)
			t.a.setBroken(err)
			return err
		}
		t.settleHeld(nil)
		if herr != nil {
			return toRemote(c.name, id, name(), herr)
		}
		return nil
	}, ticket, nil
}

// end finishes a turn: it commits (or, after an error, rolls back) the
// turn's writes, resets the object if the turn broke it, and gives up the
// turn. It returns the ticket the reply must wait for.
func (t *turn) end(herr, panicErr error) (durability.Ticket, error) {
	a := t.a
	a.mu.Lock()
	if a.turn == t {
		a.turn = nil
	}
	broken := a.broken
	a.mu.Unlock()
	if t.stale.Load() {
		// The turn was taken away (timeout) or the object reset while an
		// outgoing call waited; whatever this handler did is discarded.
		return durability.Ticket{}, a.closedErr()
	}
	if cerr := a.closedErr(); cerr != nil {
		t.release()
		return durability.Ticket{}, cerr
	}
	var ticket durability.Ticket
	var err error
	switch {
	case panicErr != nil || broken != nil:
		a.rollback()
		cause := panicErr
		if cause == nil {
			cause = broken
		}
		t.o.Reset(a, cause)
		t.release()
		if panicErr != nil {
			if as, ok := panicErr.(*abortError); ok {
				return ticket, fmt.Errorf("%w: %w", ErrObjectReset, as)
			}
			return ticket, nil // reported as a RemoteError with Panic set
		}
		return ticket, fmt.Errorf("%w: %w", ErrObjectReset, broken)
	case herr != nil:
		a.rollback()
		ticket, err = a.commit() // nothing to commit: the ticket of earlier writes
	default:
		ticket, err = a.commit()
	}
	if err != nil {
		a.rollback()
		t.o.Reset(a, err)
		t.release()
		return ticket, commitError(err)
	}
	t.release()
	return ticket, nil
}

func (t *turn) release() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.released {
		t.o.Release(t.tok)
		t.released = true
	}
}

// abortError is how Abort's reason travels.
type abortError struct{ reason string }

func (e *abortError) Error() string { return "aborted: " + e.reason }

// runHandler calls fn, turning a panic into panicErr.
func runHandler(ctx context.Context, fn func(context.Context, any) error, inst any) (herr, panicErr error) {
	defer func() {
		if p := recover(); p != nil {
			if as, ok := p.(abortSignal); ok {
				panicErr = &abortError{reason: as.reason}
				return
			}
			panicErr = &panicError{value: p, stack: debug.Stack()}
		}
	}()
	return fn(ctx, inst), nil
}

type panicError struct {
	value any
	stack []byte
}

func (e *panicError) Error() string { return fmt.Sprint(e.value) }

// activate constructs the object inside turn t.
func (c *nsCore) activate(ctx context.Context, t *turn, id ID) (*activation, error) {
	// Past Options.MaxLiveObjects, wait for evicted objects to close
	// their databases first.
	if err := c.rt.eng.WaitRoom(ctx); err != nil {
		return nil, err
	}
	start := time.Now()
	a := &activation{c: c, o: t.o, id: id}
	a.ctx, a.cancel = context.WithCancel(c.rt.bgCtx)
	a.state = &State{a: a}
	t.a = a
	a.mu.Lock()
	a.turn = t
	a.mu.Unlock()
	tctx := context.WithValue(ctx, turnKey{}, t)
	var inst any
	err := t.blockWhile(tctx, func(ctx context.Context) error {
		var perr error
		var cerr error
		cerr, perr = runHandler(ctx, func(context.Context, any) error {
			var err error
			inst, err = c.construct(a.state)
			return err
		}, nil)
		if perr != nil {
			return perr
		}
		return cerr
	})
	a.mu.Lock()
	a.turn = nil
	a.mu.Unlock()
	if err == nil {
		// The constructor's writes commit on their own, so that a failing
		// first call cannot roll back the object's setup. Replies of later
		// turns wait for this commit too (tickets are ordered per file).
		if _, err = a.commit(); err != nil {
			err = fmt.Errorf("%w: %w", ErrDurability, err)
		}
	}
	c.m.activated(time.Since(start), err == nil) // metrics.go
	if err == nil {
		a.inst = inst
		t.o.SetActivation(a)
		return a, nil
	}
	a.rollback()
	a.Close(err)
	if t.stale.Load() {
		return nil, err
	}
	var rerr *RemoteError
	if errors.As(err, &rerr) {
		return nil, err
	}
	_, isPanic := err.(*panicError)
	return nil, &RemoteError{Namespace: c.name, ID: id.String(), Method: "constructor", Message: err.Error(), Panic: isPanic}
}

// toRemote wraps an error returned by a handler.
func toRemote(ns string, id ID, method string, err error) error {
	var re *RemoteError
	if errors.As(err, &re) {
		// An error that came back from a nested call travels on as it is.
		return err
	}
	return &RemoteError{Namespace: ns, ID: id.String(), Method: method, Message: err.Error(),
		Overloaded: IsOverloaded(err), Retryable: IsRetryable(err)}
}
