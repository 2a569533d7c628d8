package durable

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"reflect"
	"time"

	"github.com/durable-go/durable/internal/alarm"
	"github.com/durable-go/durable/internal/durability"
	"github.com/durable-go/durable/internal/storage"
)

// Alarmer is implemented by objects that handle alarms. An object sets its
// alarm with Storage.SetAlarm; when the alarm's time comes the runtime
// calls Alarm as one of the object's turns, constructing the object first
// if it is not in memory (after an eviction or a restart).
//
// Alarm is never called concurrently with the object's other handlers, nor
// with another Alarm of the same object. Delivery is at least once: if the
// handler returns an error, panics or calls State.Abort, its writes are
// rolled back, the alarm stays set and is retried with backoff (see
// Options.AlarmRetries); if the process dies during the handler, the alarm
// fires again after the restart.
//
// Inside Alarm (and in turns interleaved with it), Storage.GetAlarm reports
// no alarm until the handler sets a new one; the alarm's deletion persists
// only when the handler succeeds. Setting an alarm inside the handler
// schedules the next one.
type Alarmer interface {
	Alarm(ctx context.Context, info AlarmInfo) error
}

// AlarmInfo describes one delivery of an alarm.
type AlarmInfo struct {
	// Time is the time the alarm was set for.
	Time time.Time
	// RetryCount is how many deliveries of this alarm failed before this
	// one: 0 on the first delivery.
	RetryCount int
	// IsRetry reports RetryCount > 0.
	IsRetry bool
}

// Defaults of the alarm fields of Options (Cloudflare's retry schedule:
// 2, 4, 8, 16, 32 and 64 s, each up to 25% longer).
const (
	// DefaultAlarmRetries is how often a failing alarm is retried before
	// it is dropped.
	DefaultAlarmRetries = 6
	// DefaultAlarmRetryDelay is the wait before the first retry; each
	// further retry waits twice as long.
	DefaultAlarmRetryDelay = 2 * time.Second
	// DefaultAlarmRetryJitter is the largest random fraction added to each
	// retry's wait.
	DefaultAlarmRetryJitter = 0.25
	// DefaultAlarmConcurrency bounds the alarms delivered at once.
	DefaultAlarmConcurrency = alarm.DefaultWorkers
)

// ErrNoAlarmHandler is returned by Storage.SetAlarm on an object whose type
// does not implement Alarmer (setting one in the constructor is allowed;
// such an alarm is deleted when it fires).
var ErrNoAlarmHandler = errors.New("durable: object type has no Alarm method")

// alarmIndexFile is the scheduler's index in the data folder.
const alarmIndexFile = ".alarms.sqlite"

var alarmerType = reflect.TypeFor[Alarmer]()

// SetAlarm sets the object's alarm to t, replacing the one set before (an
// object has at most one). A t in the past is stored as now: the alarm
// fires as soon as possible. Like every write, the alarm belongs to the
// turn's transaction: it takes effect only if the turn commits, and the
// reply waits until it is durable.
//
// It fails with ErrNoAlarmHandler if the object's type does not implement
// Alarmer, except in the constructor, and with an *ArgError for the zero
// time or a time past the year 2261.
func (s *Storage) SetAlarm(t time.Time) error {
	a := s.a
	if t.IsZero() {
		return &ArgError{Arg: "alarm time", Reason: "zero time"}
	}
	db, err := a.database()
	if err != nil {
		return err
	}
	if a.inst != nil && !a.c.typ.Implements(alarmerType) {
		return fmt.Errorf("%w: %s (%v)", ErrNoAlarmHandler, a.c.name, a.c.typ)
	}
	if now := a.c.rt.opts.Clock.Now(); t.Before(now) {
		t = now
	}
	a.touchAlarm()
	if err := db.SetAlarm(t); err != nil {
		return err
	}
	a.knowAlarm(t, true)
	a.c.m.alarmsSet.Add(1) // metrics.go
	return nil
}

// GetAlarm returns the time of the object's alarm and whether one is set.
// Times come back in UTC with nanosecond precision. Inside the Alarm
// handler the alarm that is firing reads as unset.
func (s *Storage) GetAlarm() (time.Time, bool, error) {
	a := s.a
	db, err := a.database()
	if err != nil {
		return time.Time{}, false, err
	}
	a.mu.Lock()
	masked := a.alarm.firing && !a.alarm.changed
	a.mu.Unlock()
	if masked {
		return time.Time{}, false, nil
	}
	return db.Alarm()
}

// DeleteAlarm deletes the object's alarm, if any, as part of the turn's
// transaction. Called in the Alarm handler, it also cancels the retries of
// the alarm that is firing: if the handler then fails, its writes are
// rolled back, but the alarm is deleted rather than retried (unless the
// handler set a new alarm after deleting).
func (s *Storage) DeleteAlarm() error {
	a := s.a
	db, err := a.database()
	if err != nil {
		return err
	}
	a.touchAlarm()
	if err := db.DeleteAlarm(); err != nil {
		return err
	}
	a.knowAlarm(time.Time{}, false)
	a.mu.Lock()
	if a.alarm.firing {
		a.alarm.deleted = true
	}
	a.mu.Unlock()
	return nil
}

// AlarmStats are counters of a runtime's alarm scheduler.
type AlarmStats struct {
	// Scheduled counts alarms (and retries) waiting for their time,
	// including those of namespaces not registered yet.
	Scheduled int
	// Running counts alarms due and not yet delivered or being delivered.
	Running int
	// Next is the time of the earliest scheduled alarm; zero if none.
	Next time.Time
	// Delivered counts Alarm handler runs that succeeded.
	Delivered uint64
	// Failed counts deliveries that failed (error, panic, Abort, or the
	// object could not be constructed).
	Failed uint64
	// Dropped counts alarms given up after Options.AlarmRetries retries.
	Dropped uint64
	// IndexWrites counts rows written to or deleted from the node's alarm
	// index; IndexCommits the transactions (and fsyncs) that carried them.
	IndexWrites  uint64
	IndexCommits uint64
}

// AlarmStats returns the counters of the runtime's alarm scheduler.
func (rt *Runtime) AlarmStats() AlarmStats {
	st := rt.alarms.Stats()
	return AlarmStats{
		Scheduled:    st.Scheduled,
		Running:      st.Running,
		Next:         st.Next,
		Delivered:    st.Delivered,
		Failed:       st.Failed,
		Dropped:      st.Dropped,
		IndexWrites:  st.IndexWrites,
		IndexCommits: st.IndexCommits,
	}
}

// alarmState is an activation's alarm bookkeeping, guarded by
// activation.mu.
type alarmState struct {
	dirty   bool      // the open transaction may have changed the alarm
	known   bool      // at, ok is the alarm as of the open transaction
	at      time.Time // (saves reading it back at commit)
	ok      bool
	firing  bool // the Alarm handler is running
	changed bool // the alarm was set or deleted since the handler started
	deleted bool // the handler's last change was DeleteAlarm
}

// touchAlarm records that the open transaction changes the alarm; call it
// before the change.
func (a *activation) touchAlarm() {
	a.mu.Lock()
	a.alarm.dirty = true
	a.alarm.known = false
	if a.alarm.firing {
		a.alarm.changed = true
		a.alarm.deleted = false
	}
	a.mu.Unlock()
}

// knowAlarm records the alarm as the open transaction has it now.
func (a *activation) knowAlarm(at time.Time, ok bool) {
	a.mu.Lock()
	a.alarm.known, a.alarm.at, a.alarm.ok = true, at, ok
	a.mu.Unlock()
}

// forgetAlarmUnless is deferred by TransactionSync: unless the savepoint
// was released (kept), it was rolled back (an error or a panic), the alarm
// may have reverted, and the commit must read it back.
func (a *activation) forgetAlarmUnless(kept bool) {
	if kept {
		return
	}
	a.mu.Lock()
	a.alarm.known = false
	a.mu.Unlock()
}

func (a *activation) alarmKey() alarm.Key { return alarm.Key{NS: a.c.name, ID: a.id.raw} }

// commitDB commits the open transaction of the activation's database. If
// the transaction may have changed the alarm, the node's alarm index is
// first made to hold an entry no later than the new alarm (so that no
// crash can leave a stored alarm the index does not announce), and the
// scheduler learns the new alarm once the COMMIT is done.
func (a *activation) commitDB(db objectDB) (durability.Ticket, error) {
	a.mu.Lock()
	st := a.alarm
	a.alarm.dirty, a.alarm.known = false, false
	a.mu.Unlock()
	sdb, isStorage := db.(*storage.DB)
	if !st.dirty || !isStorage {
		return db.Commit()
	}
	at, ok := st.at, st.ok
	if !st.known || !sdb.InTx() { // unknown, or rolled back since
		var err error
		if at, ok, err = sdb.Alarm(); err != nil {
			return durability.Ticket{}, err
		}
	}
	ch, err := a.c.rt.alarms.Prepare(a.alarmKey(), at, ok)
	if err != nil {
		return durability.Ticket{}, err
	}
	ticket, err := db.Commit()
	a.c.rt.alarms.Committed(ch, ticket, err)
	return ticket, err
}

// openAlarms validates the alarm options and starts the scheduler.
func openAlarms(rt *Runtime) error {
	o := &rt.opts
	switch {
	case o.AlarmRetries == 0:
		o.AlarmRetries = DefaultAlarmRetries
	case o.AlarmRetries < 0:
		o.AlarmRetries = 0
	}
	switch {
	case o.AlarmRetryDelay == 0:
		o.AlarmRetryDelay = DefaultAlarmRetryDelay
	case o.AlarmRetryDelay < 0:
		return errors.New("durable: Options: negative AlarmRetryDelay")
	}
	switch {
	case math.IsNaN(o.AlarmRetryJitter) || math.IsInf(o.AlarmRetryJitter, 0):
		return errors.New("durable: Options: AlarmRetryJitter is not a number")
	case o.AlarmRetryJitter == 0:
		o.AlarmRetryJitter = DefaultAlarmRetryJitter
	case o.AlarmRetryJitter < 0:
		o.AlarmRetryJitter = 0
	}
	switch {
	case o.AlarmConcurrency == 0:
		o.AlarmConcurrency = DefaultAlarmConcurrency
	case o.AlarmConcurrency < 0:
		return errors.New("durable: Options: negative AlarmConcurrency")
	}
	s, err := alarm.Open(alarm.Config{
		Path:   filepath.Join(o.Dir, alarmIndexFile),
		NoSync: o.Durability == NoSync,
		Clock:  o.Clock,
		Policy: alarm.Policy{
			Retries: o.AlarmRetries,
			Delay:   o.AlarmRetryDelay,
			Jitter:  o.AlarmRetryJitter,
		},
		Workers: o.AlarmConcurrency,
		Logger:  rt.log,
		Room:    rt.eng.Room,
		Deliver: rt.deliverAlarm,
	})
	if err != nil {
		return fmt.Errorf("durable: open: %w", err)
	}
	rt.alarms = s
	return nil
}

// deliverAlarm runs one alarm delivery as a turn of its object.
func (rt *Runtime) deliverAlarm(ctx context.Context, d alarm.Delivery) alarm.Result {
	rt.mu.Lock()
	c := rt.namespaces[d.Key.NS]
	rt.mu.Unlock()
	if c == nil {
		return alarm.Result{Err: fmt.Errorf("durable: alarm of unregistered namespace %q", d.Key.NS)}
	}
	id := ID{raw: d.Key.ID, ns: c.name}
	var res alarm.Result
	wait, pending := c.invokeAsync(ctx, kindAlarm, id, func() string { return "Alarm" }, func(ctx context.Context, inst any) error {
		return c.runAlarm(ctx, inst, d, &res, false)
	})
	outcome := func() alarm.Result {
		if err := wait(ctx); err != nil {
			if !d.Drop {
				c.m.alarmsFailed.Add(1) // metrics.go
			}
			res.Err = err
			res.Ran = false
			res.Infra = IsOverloaded(err) || errors.Is(err, ErrDurability) || errors.Is(err, durability.ErrClosed)
		}
		return res
	}
	if !pending {
		return outcome()
	}
	return alarm.Result{Wait: outcome}
}

// runAlarm is the body of an alarm turn. It reads the stored alarm (the
// truth the index only hints at) and, if it is due, runs the handler; on
// success it deletes the alarm unless the handler changed it. The turn's
// commit tells the scheduler what the object's alarm is now. force runs a
// stored alarm that is not due yet (durabletest's FireAlarm).
func (c *nsCore) runAlarm(ctx context.Context, inst any, d alarm.Delivery, res *alarm.Result, force bool) error {
	t := turnFrom(ctx)
	a := t.a
	db, err := a.database()
	if err != nil {
		return err
	}
	a.touchAlarm() // whatever happens, the commit reports the stored alarm
	at, ok, err := db.Alarm()
	if err != nil {
		return err
	}
	a.knowAlarm(at, ok)
	if !ok || (!force && at.After(c.rt.opts.Clock.Now())) {
		return nil // the index entry was stale or early
	}
	res.Alarm = at
	if d.Drop {
		if d.Alarm.IsZero() || d.Alarm.Equal(at) {
			return a.deleteAlarm(db)
		}
		return nil
	}
	h, isAlarmer := inst.(Alarmer)
	if !isAlarmer {
		c.rt.log.Warn("alarm of an object without an Alarm method deleted",
			"namespace", c.name, "id", a.id.String(), "alarm", at)
		return a.deleteAlarm(db)
	}
	a.mu.Lock()
	a.alarm.firing, a.alarm.changed, a.alarm.deleted = true, false, false
	a.mu.Unlock()
	c.m.alarmFired(d.Retry, at, c.rt.opts.Clock.Now(), force) // metrics.go
	defer func() {
		a.mu.Lock()
		res.Cancel = a.alarm.firing && a.alarm.deleted // the handler failed after deleting
		a.alarm.firing = false
		a.mu.Unlock()
	}()
	if err := h.Alarm(ctx, AlarmInfo{Time: at, RetryCount: d.Retry, IsRetry: d.Retry > 0}); err != nil {
		return err
	}
	res.Ran = true
	a.mu.Lock()
	changed := a.alarm.changed
	a.alarm.firing = false
	a.mu.Unlock()
	if changed {
		return nil // the handler set a new alarm or deleted this one
	}
	return a.deleteAlarm(db)
}

// deleteAlarm deletes the stored alarm in the open transaction.
func (a *activation) deleteAlarm(db *storage.DB) error {
	a.touchAlarm()
	if err := db.DeleteAlarm(); err != nil {
		return err
	}
	a.knowAlarm(time.Time{}, false)
	return nil
}
