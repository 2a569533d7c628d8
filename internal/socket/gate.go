package socket

import (
	"sync"
	"sync/atomic"
)

const (
	gatePending int32 = iota
	gateOpen
	gateDropped
)

// Gate holds frames until the writes that precede them are durable. A nil
// *Gate is open. The root package makes one per turn that sends, opens it
// once the turn's writes are durable, or drops it if they failed.
type Gate struct {
	state atomic.Int32
	mu    sync.Mutex // guards then, err
	then  []func(error)
	err   error
}

// NewGate returns a pending Gate.
func NewGate() *Gate { return &Gate{} }

// Open releases everything held by g. Only the first Open or Drop counts.
func (g *Gate) Open() { g.resolve(nil) }

// Drop discards everything held by g: sockets that had frames behind it are
// closed with CloseInternalError. err says why (nil means ErrOutputLost).
func (g *Gate) Drop(err error) {
	if err == nil {
		err = ErrOutputLost
	}
	g.resolve(err)
}

func (g *Gate) resolve(err error) {
	if g == nil {
		return
	}
	g.mu.Lock()
	if g.state.Load() != gatePending {
		g.mu.Unlock()
		return
	}
	g.err = err
	if err == nil {
		g.state.Store(gateOpen)
	} else {
		g.state.Store(gateDropped)
	}
	fs := g.then
	g.then = nil
	g.mu.Unlock()
	for _, f := range fs {
		f(err)
	}
}

// Then calls f once g is resolved: with nil if it opened, else with the
// drop error. If g is already resolved (or nil) f runs at once.
func (g *Gate) Then(f func(err error)) {
	if g == nil {
		f(nil)
		return
	}
	g.mu.Lock()
	if g.state.Load() == gatePending {
		g.then = append(g.then, f)
		g.mu.Unlock()
		return
	}
	err := g.err
	g.mu.Unlock()
	f(err)
}

// Pending reports whether g is neither open nor dropped.
func (g *Gate) Pending() bool { return g != nil && g.state.Load() == gatePending }

// dropped reports whether g was dropped.
func (g *Gate) dropped() bool { return g != nil && g.state.Load() == gateDropped }
