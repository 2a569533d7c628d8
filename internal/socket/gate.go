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
	mu    sync.Mutex // guards then, conns, err
	then  []func(error)
	conns *connList // sockets with frames held: told by gateResolved
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
	fs, conns := g.then, g.conns
	g.then, g.conns = nil, nil
	g.mu.Unlock()
	if conns != nil {
		for _, c := range conns.c {
			c.gateResolved(g, err)
		}
		conns.put()
	}
	for _, f := range fs {
		f(err)
	}
}

// connList is a pooled list of sockets.
type connList struct{ c []*Conn }

var connListPool = sync.Pool{New: func() any { return &connList{c: make([]*Conn, 0, 16)} }}

func (l *connList) put() {
	if cap(l.c) > 1024 {
		return
	}
	clear(l.c)
	l.c = l.c[:0]
	connListPool.Put(l)
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

// watch calls c.gateResolved once g is resolved (at once if it is). It is
// Then without a closure per socket.
func (g *Gate) watch(c *Conn) {
	g.mu.Lock()
	if g.state.Load() == gatePending {
		if g.conns == nil {
			g.conns = connListPool.Get().(*connList)
		}
		g.conns.c = append(g.conns.c, c)
		g.mu.Unlock()
		return
	}
	err := g.err
	g.mu.Unlock()
	c.gateResolved(g, err)
}

// Pending reports whether g is neither open nor dropped.
func (g *Gate) Pending() bool { return g != nil && g.state.Load() == gatePending }

// dropped reports whether g was dropped.
func (g *Gate) dropped() bool { return g != nil && g.state.Load() == gateDropped }
