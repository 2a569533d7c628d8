package socket

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/durable-go/durable/internal/clock"
	"github.com/gobwas/ws"
)

type connState uint8

const (
	statePending connState = iota // accepted in a turn, not upgraded yet
	stateOpen
	stateClosing // our close frame is queued or written
	stateClosed  // torn down
)

// maxBatch and maxBatchBytes bound the frames one write system call
// carries (at least one frame).
const (
	maxBatch      = 64
	maxBatchBytes = 1 << 20
)

// outFrame is one frame waiting to be written.
type outFrame struct {
	hdr     [10]byte
	hlen    uint8
	close   bool
	payload []byte
	gate    *Gate
}

// frameBatch holds frames: the queue of a socket, or the frames a writer
// takes from it for one system call. Batches are pooled, so that queueing
// and writing a frame allocate nothing, and a socket with nothing queued
// holds none.
type frameBatch struct {
	frames []outFrame
	bufs   net.Buffers // the writer's iovecs
}

// maxPooledFrames bounds the batches kept for reuse (a long queue of a
// slow peer is let go).
const maxPooledFrames = 4 * maxBatch

var batchPool = sync.Pool{New: func() any { return &frameBatch{frames: make([]outFrame, 0, 8)} }}

func getBatch() *frameBatch { return batchPool.Get().(*frameBatch) }

func putBatch(b *frameBatch) {
	if cap(b.frames) > maxPooledFrames {
		return
	}
	clear(b.frames)
	b.frames = b.frames[:0]
	clear(b.bufs[:cap(b.bufs)])
	b.bufs = b.bufs[:0]
	batchPool.Put(b)
}

// Conn is one accepted WebSocket. Its identity, tags and attachment live
// as long as the socket, across activations of its object.
type Conn struct {
	hub      *Hub
	reg      *Registry
	id       uint64
	tags     []string
	protocol string
	value    any

	// Set by Attach before the socket is read or written, then read-only.
	nc  net.Conn
	raw syscall.RawConn
	pre []byte // bytes read past the handshake; the reader's alone

	mu         sync.Mutex // guards the fields below
	state      connState
	listed     bool // in its registry
	attached   bool
	torn       bool
	peerClosed bool // the peer's close frame arrived
	closeSent  bool // our close frame was written
	failing    bool // we fail the connection: drop it once our close frame is out
	linger     bool // drain the peer's input before closing (it broke the protocol)
	reading    bool // a reader goroutine runs (poller mode)
	readAgain  bool // the poller reported c while it was being read
	readDone   bool // nothing more is to be read (poller mode)
	writing    bool // a writer goroutine runs
	attachment []byte
	autoAt     time.Time
	out        *frameBatch // frames queued, in order; nil if none
	outBytes   int
	acceptGate *Gate
	lastGate   *Gate // the last gate watched, to skip repeats
	closeTimer clock.Timer
}

// ID returns a number unique among the hub's sockets, growing in accept order.
func (c *Conn) ID() uint64 { return c.id }

// Value returns the value made by AcceptOptions.Wrap.
func (c *Conn) Value() any { return c.value }

// Key returns the registry key of the socket's object.
func (c *Conn) Key() string { return c.reg.key }

// Tags returns a copy of the socket's tags.
func (c *Conn) Tags() []string { return slices.Clone(c.tags) }

// Protocol returns the negotiated subprotocol, or "".
func (c *Conn) Protocol() string { return c.protocol }

// SetAttachment stores b (an encoded value, at most MaxAttachment bytes;
// nil clears it) with the socket. It survives hibernation and dies with
// the socket. The Conn keeps b: do not modify it afterwards.
func (c *Conn) SetAttachment(b []byte) error {
	if len(b) > MaxAttachment {
		return &LimitError{Limit: LimitAttachment, Max: MaxAttachment, Got: int64(len(b))}
	}
	c.mu.Lock()
	c.attachment = b
	c.mu.Unlock()
	return nil
}

// Attachment returns the stored attachment (nil if none). Do not modify it.
func (c *Conn) Attachment() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.attachment
}

// AutoResponseTime returns when the runtime last answered an auto-response
// request on this socket (zero if never).
func (c *Conn) AutoResponseTime() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.autoAt
}

// IsOpen reports whether frames can still be sent on the socket.
func (c *Conn) IsOpen() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state == statePending || c.state == stateOpen
}

func (c *Conn) openLocked() bool { return c.state == statePending || c.state == stateOpen }

// Send queues a data message behind gate g (nil: behind nothing but the
// frames queued before it). The Conn keeps data: do not modify it
// afterwards. It fails with ErrClosed on a closed socket, a *LimitError for
// a message past MaxMessage, and ErrSendBufferFull (closing the socket)
// when too much is queued already.
func (c *Conn) Send(typ MessageType, data []byte, g *Gate) error {
	if int64(len(data)) > c.hub.cfg.MaxMessage {
		return &LimitError{Limit: LimitMessage, Max: c.hub.cfg.MaxMessage, Got: int64(len(data))}
	}
	c.mu.Lock()
	if !c.openLocked() {
		c.mu.Unlock()
		return ErrClosed
	}
	if c.outBytes+len(data) > c.hub.cfg.SendBuffer {
		ev := c.failLocked(ClosePolicyViolation, ErrSendBufferFull)
		fx := c.effectsLocked()
		c.mu.Unlock()
		fx.run(c)
		c.deliverAsync(ev)
		return ErrSendBufferFull
	}
	watch := c.enqueueLocked(byte(typ), data, false, g)
	fx := c.effectsLocked()
	c.mu.Unlock()
	c.watch(watch)
	fx.run(c)
	return nil
}

// Close starts the closing handshake with code and reason, behind gate g.
// The socket leaves its registry at once; no Close or Error event follows.
func (c *Conn) Close(code int, reason string, g *Gate) error {
	if len(reason) > MaxCloseReason {
		return &LimitError{Limit: LimitCloseReason, Max: MaxCloseReason, Got: int64(len(reason))}
	}
	c.mu.Lock()
	if !c.openLocked() {
		c.mu.Unlock()
		return ErrClosed
	}
	watch := c.beginCloseLocked(code, reason, g)
	fx := c.effectsLocked()
	c.mu.Unlock()
	c.watch(watch)
	fx.run(c)
	return nil
}

// CloseNow closes the socket with code and reason ahead of any pending
// output gate, and reports err to the object. It is for the runtime's own
// failures (for example an overloaded object).
func (c *Conn) CloseNow(code int, err error) {
	c.mu.Lock()
	ev := c.failLocked(code, err)
	fx := c.effectsLocked()
	c.mu.Unlock()
	fx.run(c)
	c.deliverAsync(ev)
}

// closeBody encodes a close frame's payload.
func closeBody(code int, reason string) []byte {
	if code == 0 {
		return nil
	}
	b := make([]byte, 2+len(reason))
	binary.BigEndian.PutUint16(b, uint16(code))
	copy(b[2:], reason)
	return b
}

// beginCloseLocked moves an open socket to closing and queues its close
// frame. It returns a gate to watch (see enqueueLocked).
func (c *Conn) beginCloseLocked(code int, reason string, g *Gate) *Gate {
	c.state = stateClosing
	c.unlistLocked()
	return c.enqueueLocked(0x8, closeBody(code, reason), true, g)
}

// failLocked fails an open socket: the close frame with code goes out
// ahead of held output (which is dropped), then the connection is dropped.
// It returns the Error event to deliver, or nil if the socket was not open.
func (c *Conn) failLocked(code int, err error) *event {
	if !c.openLocked() {
		return nil
	}
	c.failing = true
	// Queued frames are moot: the socket is failing. The close frame goes
	// out next (after a batch being written, if any).
	c.dropQueueLocked()
	c.beginCloseLocked(code, reasonOf(err), nil)
	return &event{kind: evError, err: &CloseError{Code: code, Err: err}}
}

func reasonOf(err error) string {
	s := strings.TrimPrefix(err.Error(), "websocket: ")
	if len(s) > MaxCloseReason {
		s = s[:MaxCloseReason]
	}
	return s
}

// enqueueLocked appends a frame. If g is pending and not yet watched by
// this socket, it returns g: the caller must call c.watch(g) after
// unlocking.
func (c *Conn) enqueueLocked(op byte, payload []byte, isClose bool, g *Gate) *Gate {
	f := outFrame{payload: payload, gate: g, close: isClose}
	f.hdr[0] = 0x80 | op
	n := len(payload)
	switch {
	case n < 126:
		f.hdr[1] = byte(n)
		f.hlen = 2
	case n < 1<<16:
		f.hdr[1] = 126
		binary.BigEndian.PutUint16(f.hdr[2:], uint16(n))
		f.hlen = 4
	default:
		f.hdr[1] = 127
		binary.BigEndian.PutUint64(f.hdr[2:], uint64(n))
		f.hlen = 10
	}
	if c.out == nil {
		c.out = getBatch()
	}
	c.out.frames = append(c.out.frames, f)
	c.outBytes += n
	if g.Pending() && c.lastGate != g {
		c.lastGate = g
		return g
	}
	return nil
}

// dropQueueLocked forgets every queued frame. c.mu is held.
func (c *Conn) dropQueueLocked() {
	if c.out != nil {
		putBatch(c.out)
		c.out = nil
	}
	c.outBytes = 0
}

// deleteQueuedLocked removes the queued frames for which del is true.
// c.mu is held.
func (c *Conn) deleteQueuedLocked(del func(f outFrame) bool) {
	if c.out == nil {
		return
	}
	for _, f := range c.out.frames {
		if del(f) {
			c.outBytes -= len(f.payload)
		}
	}
	c.out.frames = slices.DeleteFunc(c.out.frames, del)
}

// watch arranges for c to write (or drop) its frames held by g once g
// resolves (gateResolved).
func (c *Conn) watch(g *Gate) {
	if g == nil {
		return
	}
	g.watch(c)
}

// gateResolved is called once g, which holds frames of c, is resolved:
// open (err nil) or dropped.
func (c *Conn) gateResolved(g *Gate, err error) {
	if err == nil {
		c.kick()
		return
	}
	c.mu.Lock()
	if c.state == statePending && c.acceptGate == g {
		// The accept itself was dropped: the socket never existed.
		c.mu.Unlock()
		c.teardown()
		return
	}
	c.deleteQueuedLocked(func(f outFrame) bool { return f.gate == g })
	ev := c.failLocked(CloseInternalError, err)
	fx := c.effectsLocked()
	c.mu.Unlock()
	fx.run(c)
	c.deliverAsync(ev)
}

// effects are what a state change asks for once c.mu is released.
type effects struct {
	startWriter bool
	teardown    bool
}

// effectsLocked decides whether a writer must start. c.mu is held.
func (c *Conn) effectsLocked() effects {
	var fx effects
	if c.writing || c.torn || !c.attached || c.out == nil || len(c.out.frames) == 0 || c.out.frames[0].gate.Pending() {
		return fx
	}
	c.writing = true
	c.hub.writers.Add(1)
	c.hub.wg.Add(1)
	fx.startWriter = true
	return fx
}

func (fx effects) run(c *Conn) {
	if fx.startWriter {
		go func() {
			defer c.hub.wg.Done()
			defer c.hub.writers.Done()
			c.writeLoop()
		}()
	}
	if fx.teardown {
		c.teardown()
	}
}

// kick starts a writer if frames are ready.
func (c *Conn) kick() {
	c.mu.Lock()
	fx := c.effectsLocked()
	c.mu.Unlock()
	fx.run(c)
}

// takeLocked moves the frames that may be written now (at most maxBatch
// frames and about maxBatchBytes) from the queue to a batch for the
// writer, reusing b (which is empty) if it is not nil. c.mu is held.
func (c *Conn) takeLocked(b *frameBatch) *frameBatch {
	q := c.out
	if q == nil {
		return b
	}
	n, take, size, dropped := 0, 0, 0, false
	for n < len(q.frames) && take < maxBatch && size < maxBatchBytes {
		f := &q.frames[n]
		if f.gate.Pending() {
			break
		}
		n++
		if f.gate.dropped() {
			dropped = true
			continue
		}
		take++
		size += len(f.payload)
	}
	if n == len(q.frames) && !dropped {
		// The common case: the whole queue goes, in its own batch.
		c.out = nil
		if b != nil {
			putBatch(b)
		}
		return q
	}
	if b == nil {
		b = getBatch()
	}
	for i := range n {
		f := &q.frames[i]
		if f.gate.dropped() {
			c.outBytes -= len(f.payload)
		} else {
			b.frames = append(b.frames, *f)
		}
		*f = outFrame{}
	}
	q.frames = q.frames[n:]
	if len(q.frames) == 0 {
		putBatch(q)
		c.out = nil
	}
	return b
}

// writeLoop writes ready frames until none is left.
func (c *Conn) writeLoop() {
	c.hub.writerYield()
	var b *frameBatch
	defer func() {
		if b != nil {
			putBatch(b)
		}
	}()
	for {
		c.mu.Lock()
		b = c.takeLocked(b)
		if b == nil || len(b.frames) == 0 || c.torn {
			c.writing = false
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()

		size, wroteClose := 0, false
		for i := range b.frames {
			f := &b.frames[i]
			b.bufs = append(b.bufs, f.hdr[:f.hlen])
			if len(f.payload) > 0 {
				b.bufs = append(b.bufs, f.payload)
			}
			size += len(f.payload)
			wroteClose = wroteClose || f.close
		}
		c.nc.SetWriteDeadline(time.Now().Add(c.hub.cfg.WriteTimeout))
		iov := b.bufs
		_, err := b.bufs.WriteTo(c.nc) // consumes b.bufs
		clear(b.frames)
		b.frames = b.frames[:0]
		clear(iov)
		b.bufs = iov[:0]

		c.mu.Lock()
		c.outBytes -= size
		if err != nil {
			c.writing = false
			c.mu.Unlock()
			c.writeFailed(err)
			return
		}
		var fx effects
		if wroteClose {
			c.closeSent = true
			if c.peerClosed || c.failing {
				fx.teardown = true
			} else if c.closeTimer == nil && !c.torn {
				c.closeTimer = c.hub.cfg.Clock.AfterFunc(c.hub.cfg.CloseTimeout, c.closeTimedOut)
			}
		}
		if fx.teardown {
			c.writing = false
			c.mu.Unlock()
			fx.run(c)
			return
		}
		c.mu.Unlock()
	}
}

func (c *Conn) closeTimedOut() { c.teardown() }

func (c *Conn) writeFailed(err error) {
	c.mu.Lock()
	wasOpen := c.openLocked()
	c.mu.Unlock()
	c.teardown()
	if !wasOpen {
		return
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = ErrTimeout
	}
	c.deliverAsync(&event{kind: evError, err: &CloseError{Err: err}})
}

// Attach gives a pending socket its upgraded connection and any bytes the
// client sent after its request; frames queued so far go out, and reading
// starts. It fails with ErrClosed (closing nc) if the socket was closed
// meanwhile or the hub is closed.
func (c *Conn) Attach(nc net.Conn, pre []byte) error {
	var raw syscall.RawConn
	if sc, ok := nc.(syscall.Conn); ok {
		raw, _ = sc.SyscallConn()
	}
	h := c.hub
	h.mu.Lock()
	closed := h.closed
	h.mu.Unlock()
	c.mu.Lock()
	if c.torn || closed {
		c.mu.Unlock()
		if closed {
			// The hub shut down between the handshake and now: say so
			// (1001) rather than drop a connection the peer thinks open.
			nc.SetWriteDeadline(time.Now().Add(h.cfg.ShutdownGrace))
			ws.WriteFrame(nc, ws.NewCloseFrame(closeBody(CloseGoingAway, "server shutting down")))
		}
		nc.Close()
		c.teardown()
		return ErrClosed
	}
	c.nc, c.raw, c.pre = nc, raw, pre
	c.attached = true
	if c.state == statePending {
		c.state = stateOpen
	}
	fx := c.effectsLocked()
	c.mu.Unlock()
	fx.run(c)
	h.startReading(c)
	return nil
}

// Abandon drops a pending socket whose upgrade failed. If its accepting
// turn's output was released, the object gets a Close event with
// CloseAbnormal; if it was dropped, the socket silently disappears.
func (c *Conn) Abandon() {
	c.mu.Lock()
	wasPending := c.state == statePending
	g := c.acceptGate
	c.mu.Unlock()
	c.teardown()
	if wasPending {
		g.Then(func(err error) {
			if err == nil {
				c.deliverAsync(&event{kind: evClose, code: CloseAbnormal})
			}
		})
	}
}

// shutdown starts closing the socket for a hub shutdown: no event.
func (c *Conn) shutdown() {
	c.mu.Lock()
	if !c.attached || !c.openLocked() {
		c.mu.Unlock()
		if !c.attached {
			c.teardown()
		}
		return
	}
	c.failing = true
	c.beginCloseLocked(CloseGoingAway, "server shutting down", nil)
	// Frames behind pending gates would hold the close frame back.
	c.deleteQueuedLocked(func(f outFrame) bool { return f.gate.Pending() })
	fx := c.effectsLocked()
	c.mu.Unlock()
	fx.run(c)
}

// lingerTimeout and lingerMax bound how long and how much a connection
// failed for a protocol error is drained before it is closed, so that the
// peer (still sending) reads our close frame instead of a reset.
const (
	lingerTimeout = 2 * time.Second
	lingerMax     = MaxMessage + 1<<20
)

// teardown closes the connection and forgets the socket. It is idempotent.
func (c *Conn) teardown() {
	c.mu.Lock()
	if c.torn {
		c.mu.Unlock()
		return
	}
	linger := c.linger
	c.torn = true
	c.state = stateClosed
	c.unlistLocked()
	c.dropQueueLocked()
	if c.closeTimer != nil {
		c.closeTimer.Stop()
	}
	nc := c.nc
	c.mu.Unlock()
	h := c.hub
	if p := h.pollerIfAny(); p != nil {
		p.forget(c)
	}
	h.mu.Lock()
	delete(h.conns, c)
	h.mu.Unlock()
	if nc == nil {
		return
	}
	if tc, ok := nc.(*net.TCPConn); ok && linger && h.goroutine(false, func() { lingerClose(tc) }) {
		return
	}
	nc.Close()
}

// lingerClose half-closes tc, discards what the peer still sends for a
// while, then closes it.
func lingerClose(tc *net.TCPConn) {
	tc.CloseWrite()
	tc.SetReadDeadline(time.Now().Add(lingerTimeout))
	io.CopyN(io.Discard, tc, lingerMax)
	tc.Close()
}

// event is a Close or Error event for the object.
type event struct {
	kind   int
	code   int
	reason string
	clean  bool
	err    error
}

const (
	evClose = iota + 1
	evError
)

func (c *Conn) deliver(ev *event) {
	if ev == nil {
		return
	}
	switch ev.kind {
	case evClose:
		c.reg.handler.Close(c, ev.code, ev.reason, ev.clean)
	case evError:
		c.reg.handler.Error(c, ev.err)
	}
}

// deliverAsync delivers ev from a goroutine of the hub (none after Close).
func (c *Conn) deliverAsync(ev *event) {
	if ev == nil {
		return
	}
	c.hub.goroutine(false, func() { c.deliver(ev) })
}
