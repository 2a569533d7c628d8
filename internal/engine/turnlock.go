package engine

import (
	"context"
	"sync"
)

// turnLock is the object's turn: a FIFO lock whose holder is identified by a
// token, so that a holder whose turn was taken away (a reset after a
// BlockConcurrencyWhile timeout) cannot release someone else's turn.
//
// Waiters queue in arrival order (E-order); a handler resuming after an
// outgoing call queues in front of new events. The back queue is bounded:
// past max, acquire fails at once with ErrOverloaded instead of blocking.
type turnLock struct {
	mu    sync.Mutex // guards the fields below
	owner uint64     // token of the holder; 0 when free
	next  uint64     // last token handed out
	front []*waiter  // resuming turns, FIFO
	back  []*waiter  // new events, FIFO
	max   int        // bound on len(back)
}

type waiter struct {
	ch chan uint64 // receives the token when the turn is handed over
}

var waiterPool = sync.Pool{New: func() any { return &waiter{ch: make(chan uint64, 1)} }}

// acquire takes the turn, queueing behind earlier callers. front puts the
// caller ahead of new events and ignores the bound. If ctx ends first the
// caller leaves the queue and gets ctx's error.
func (l *turnLock) acquire(ctx context.Context, front bool) (uint64, error) {
	l.mu.Lock()
	if l.owner == 0 && len(l.front) == 0 && len(l.back) == 0 {
		l.next++
		l.owner = l.next
		tok := l.owner
		l.mu.Unlock()
		return tok, nil
	}
	if !front && l.max > 0 && len(l.back) >= l.max {
		l.mu.Unlock()
		return 0, ErrOverloaded
	}
	if ctx.Err() != nil {
		// A caller that has given up already takes no place in the queue
		// (not even for a moment: it could make another call overloaded).
		l.mu.Unlock()
		return 0, context.Cause(ctx)
	}
	w := waiterPool.Get().(*waiter)
	if front {
		l.front = append(l.front, w)
	} else {
		l.back = append(l.back, w)
	}
	l.mu.Unlock()

	select {
	case tok := <-w.ch:
		waiterPool.Put(w)
		return tok, nil
	case <-ctx.Done():
	}
	l.mu.Lock()
	if removeWaiter(&l.front, w) || removeWaiter(&l.back, w) {
		l.mu.Unlock()
		waiterPool.Put(w)
		return 0, context.Cause(ctx)
	}
	l.mu.Unlock()
	// The turn was handed to us while we gave up: pass it on.
	tok := <-w.ch
	waiterPool.Put(w)
	l.release(tok)
	return 0, context.Cause(ctx)
}

// release hands the turn to the next waiter, or frees it. It reports false
// (and does nothing) if tok no longer holds the turn.
func (l *turnLock) release(tok uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if tok == 0 || l.owner != tok {
		return false
	}
	var w *waiter
	switch {
	case len(l.front) > 0:
		w = l.front[0]
		l.front[0] = nil
		l.front = l.front[1:]
	case len(l.back) > 0:
		w = l.back[0]
		l.back[0] = nil
		l.back = l.back[1:]
	}
	if w == nil {
		l.owner = 0
		return true
	}
	l.next++
	l.owner = l.next
	w.ch <- l.owner
	return true
}

// idle reports whether nobody holds or waits for the turn.
func (l *turnLock) idle() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.owner == 0 && len(l.front) == 0 && len(l.back) == 0
}

// queued returns the number of waiters.
func (l *turnLock) queued() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.front) + len(l.back)
}

func removeWaiter(q *[]*waiter, w *waiter) bool {
	for i, x := range *q {
		if x == w {
			copy((*q)[i:], (*q)[i+1:])
			(*q)[len(*q)-1] = nil
			*q = (*q)[:len(*q)-1]
			return true
		}
	}
	return false
}
