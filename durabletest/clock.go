package durabletest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/durable-go/durable"
	"github.com/durable-go/durable/internal/clock"
	"github.com/durable-go/durable/internal/hook"
)

// Clock is a fake durable.Clock for tests. Its time moves only when
// Advance or Set is called, so a test reaches an alarm due in a week, an
// object's idle timeout or a WebSocket's hibernation at once, without
// sleeping and without races against the wall clock.
//
// Pass it in durable.Options.Clock to NewRuntime. Moving the clock runs
// what falls due in order of due time: eviction of idle objects (which
// hibernates their WebSockets) happens inside the call; alarm handlers run
// on the runtime's workers, and Advance waits for them before moving on,
// so that an alarm set by a handler for a time still within the advance
// fires within it too.
//
// A Clock is safe for concurrent use.
type Clock struct {
	fake *clock.Fake
	step sync.Mutex // serialises Advance and Set

	mu  sync.Mutex // guards rts
	rts []*durable.Runtime
}

var _ durable.Clock = (*Clock)(nil)

// NewClock returns a Clock set to start, or to the wall clock's time if
// start is zero (so that code which still reads time.Now agrees with it at
// first).
func NewClock(start time.Time) *Clock {
	if start.IsZero() {
		start = time.Now()
	}
	return &Clock{fake: clock.NewFake(start)}
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time { return c.fake.Now() }

// AfterFunc schedules f to run once the clock has moved d past Now. f runs
// inside the Advance or Set call that moves it there, on the caller's
// goroutine. It implements durable.Clock.
func (c *Clock) AfterFunc(d time.Duration, f func()) durable.Timer {
	return c.fake.AfterFunc(d, f)
}

// Advance moves the clock forward by d; see Set. Advance(ctx, 0) just
// waits for the alarms due now.
func (c *Clock) Advance(ctx context.Context, d time.Duration) error {
	if d < 0 {
		return fmt.Errorf("durabletest: Clock.Advance(%v): negative duration", d)
	}
	c.step.Lock()
	defer c.step.Unlock()
	return c.setLocked(ctx, c.fake.Now().Add(d))
}

// Set moves the clock forward to t (never backwards: an earlier t leaves
// it where it is). It stops at each time something falls due on the way:
// it runs what is due (evictions, timeouts, the start of alarm deliveries),
// then waits until the alarm handlers made due in the runtimes opened by
// NewRuntime with this clock have returned, before going on. An error means
// ctx ended (after DefaultTimeout if it has no deadline) while alarm
// handlers were still running: the clock stays at their time.
//
// An alarm handler that itself waits for the clock to move therefore
// blocks Set until ctx ends.
func (c *Clock) Set(ctx context.Context, t time.Time) error {
	c.step.Lock()
	defer c.step.Unlock()
	return c.setLocked(ctx, t)
}

func (c *Clock) setLocked(ctx context.Context, t time.Time) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	if err := c.settle(ctx); err != nil {
		return err
	}
	for {
		next, ok := c.fake.Next()
		if !ok || next.After(t) {
			break
		}
		c.fake.Set(next)
		if err := c.settle(ctx); err != nil {
			return err
		}
	}
	c.fake.Set(t)
	return c.settle(ctx)
}

// settle waits until no alarm delivery is due or running in the clock's
// runtimes.
func (c *Clock) settle(ctx context.Context) error {
	c.mu.Lock()
	rts := slices.Clone(c.rts)
	c.mu.Unlock()
	for _, rt := range rts {
		if err := poll(ctx, func() bool { return hook.AlarmsRunning(rt) == 0 }); err != nil {
			return fmt.Errorf("durabletest: clock at %v: alarm handlers still running: %w",
				c.fake.Now().Format(time.RFC3339Nano), err)
		}
	}
	return nil
}

// attach makes Advance wait for rt's alarms; detach stops it.
func (c *Clock) attach(rt *durable.Runtime) {
	c.mu.Lock()
	c.rts = append(c.rts, rt)
	c.mu.Unlock()
}

func (c *Clock) detach(rt *durable.Runtime) {
	c.mu.Lock()
	c.rts = slices.DeleteFunc(c.rts, func(r *durable.Runtime) bool { return r == rt })
	c.mu.Unlock()
}
