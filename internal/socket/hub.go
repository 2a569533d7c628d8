package socket

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/durable-go/durable/internal/clock"
)

// Limits (Cloudflare's).
const (
	MaxPerObject        = 32768    // sockets per object
	MaxTags             = 10       // tags per socket
	MaxTagLength        = 256      // characters of one tag
	MaxAttachment       = 16384    // bytes of an encoded attachment
	MaxAutoResponse     = 2048     // characters of an auto-response request or response
	MaxMessage          = 32 << 20 // bytes of a message, in or out
	MaxCloseReason      = 123      // bytes of a close reason (RFC 6455: control frames hold 125)
	DefaultSendBuffer   = 64 << 20 // bytes queued for one socket before it is closed
	DefaultReadTimeout  = 60 * time.Second
	DefaultWriteTimeout = 30 * time.Second
	DefaultCloseTimeout = 5 * time.Second
	// DefaultShutdownGrace bounds how long Close waits for close frames to
	// be written before it drops the connections.
	DefaultShutdownGrace = 2 * time.Second
)

// MessageType is the type of a data message.
type MessageType int

// Message types (their RFC 6455 opcodes).
const (
	Text   MessageType = 1
	Binary MessageType = 2
)

// Handler receives the events of one object's sockets. Message is called
// for each data message, in order per socket, and returns once it is
// handled (the next message of that socket is read only then); Close and
// Error are called at most once per socket, after its last Message, and
// only when the object did not close the socket itself. Calls for
// different sockets may be concurrent.
type Handler interface {
	Message(c *Conn, typ MessageType, data []byte)
	Close(c *Conn, code int, reason string, wasClean bool)
	Error(c *Conn, err error)
}

// Config configures a Hub. Zero fields take the defaults above.
type Config struct {
	Clock         clock.Clock  // nil: the wall clock
	Logger        *slog.Logger // nil: discard
	MaxPerObject  int
	MaxMessage    int64
	SendBuffer    int
	ReadTimeout   time.Duration // a peer that stalls mid-frame this long is dropped
	WriteTimeout  time.Duration // a write that makes no progress this long drops the peer
	CloseTimeout  time.Duration // wait for the peer's close frame after ours
	ShutdownGrace time.Duration
	// PerConnReader gives each socket a blocking reader goroutine instead
	// of the epoll poller. It is forced where epoll is missing.
	PerConnReader bool
}

// Hub owns every WebSocket of a runtime. It is safe for concurrent use.
type Hub struct {
	cfg    Config
	log    *slog.Logger
	ctx    context.Context // cancelled by Close: event deliveries give up
	cancel context.CancelFunc
	nextID atomic.Uint64

	mu     sync.Mutex // guards regs, conns, closed, poll, idle
	regs   map[string]*Registry
	conns  map[*Conn]struct{} // every socket not yet torn down
	closed bool
	poll   *poller
	idle   []*reader // idle reader goroutines of the poller, last idle last

	wg      sync.WaitGroup // every goroutine of the hub
	writers sync.WaitGroup // writer goroutines

	readers      atomic.Int32 // sockets being read by the poller's readers
	messages     atomic.Int64 // data messages read
	noYieldUntil atomic.Int64 // writers do not yield before messages reaches this
}

// A writer yields (runtime.Gosched) before its first write if sockets are
// being read meanwhile, so that their readers go first: they are likely to
// queue more frames for the same socket (the next turns of the object),
// which then leave in the same system call, and the peer reads them at
// once too. With no reader at work there is nothing to wait for. Under
// sustained input the yield can last long: the global run queue, where
// Gosched puts the writer, is served after the local one, while readers
// keep handling messages. So when more than maxYieldMessages messages were
// read during one yield, writers stop yielding for the next
// yieldPauseMessages messages. (Counting messages rather than time keeps
// the process being descheduled by the OS from looking like load.)
const (
	maxYieldMessages   = 128
	yieldPauseMessages = 1 << 16
)

func (h *Hub) writerYield() {
	m0 := h.messages.Load()
	if h.readers.Load() == 0 || m0 < h.noYieldUntil.Load() {
		return
	}
	runtime.Gosched()
	if m1 := h.messages.Load(); m1-m0 > maxYieldMessages {
		h.noYieldUntil.Store(m1 + yieldPauseMessages)
	}
}

// NewHub returns a Hub. It starts no goroutine until a socket is attached.
func NewHub(cfg Config) *Hub {
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.MaxPerObject = cmp.Or(cfg.MaxPerObject, MaxPerObject)
	cfg.MaxMessage = cmp.Or(cfg.MaxMessage, MaxMessage)
	cfg.SendBuffer = cmp.Or(cfg.SendBuffer, DefaultSendBuffer)
	cfg.ReadTimeout = cmp.Or(cfg.ReadTimeout, DefaultReadTimeout)
	cfg.WriteTimeout = cmp.Or(cfg.WriteTimeout, DefaultWriteTimeout)
	cfg.CloseTimeout = cmp.Or(cfg.CloseTimeout, DefaultCloseTimeout)
	cfg.ShutdownGrace = cmp.Or(cfg.ShutdownGrace, DefaultShutdownGrace)
	if !pollSupported {
		cfg.PerConnReader = true
	}
	h := &Hub{cfg: cfg, log: cfg.Logger, regs: make(map[string]*Registry), conns: make(map[*Conn]struct{})}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	return h
}

// Context is cancelled when the hub closes; event deliveries use it.
func (h *Hub) Context() context.Context { return h.ctx }

// Clock returns the hub's clock.
func (h *Hub) Clock() clock.Clock { return h.cfg.Clock }

// Count returns the number of sockets not yet torn down.
func (h *Hub) Count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.conns)
}

// Objects calls fn with the key of every object that has open sockets
// (listed: accepted and not closing) and their number. fn runs outside the
// hub's locks.
func (h *Hub) Objects(fn func(key string, open int)) {
	h.mu.Lock()
	regs := make([]*Registry, 0, len(h.regs))
	for _, r := range h.regs {
		regs = append(regs, r)
	}
	h.mu.Unlock()
	for _, r := range regs {
		r.mu.Lock()
		n := len(r.conns)
		if r.dead {
			n = 0
		}
		r.mu.Unlock()
		if n > 0 {
			fn(r.key, n)
		}
	}
}

// goroutine runs f in a goroutine owned by the hub. It reports false (and
// does not run f) once the hub is closed, unless force is set.
func (h *Hub) goroutine(force bool, f func()) bool {
	h.mu.Lock()
	if h.closed && !force {
		h.mu.Unlock()
		return false
	}
	h.wg.Add(1)
	h.mu.Unlock()
	go func() {
		defer h.wg.Done()
		f()
	}()
	return true
}

// Registry is the set of sockets of one object, with the object's socket
// settings. It outlives the object's activations: it exists while the
// object has sockets (or settings).
type Registry struct {
	hub     *Hub
	key     string
	handler Handler

	mu           sync.Mutex // guards the fields below
	conns        map[*Conn]struct{}
	byTag        map[string]map[*Conn]struct{}
	dead         bool // removed from the hub: get a new one
	autoReq      string
	autoResp     string
	hasAuto      bool
	eventTimeout time.Duration
}

// Handler returns the registry's event handler.
func (r *Registry) Handler() Handler { return r.handler }

// with runs f on the live registry of key (made with newHandler if
// missing) under its lock.
func (h *Hub) with(key string, newHandler func() Handler, create bool, f func(r *Registry) error) error {
	for {
		h.mu.Lock()
		if h.closed {
			h.mu.Unlock()
			return ErrHubClosed
		}
		r := h.regs[key]
		if r == nil {
			if !create {
				h.mu.Unlock()
				return nil
			}
			r = &Registry{hub: h, key: key, handler: newHandler(), conns: make(map[*Conn]struct{}), byTag: make(map[string]map[*Conn]struct{})}
			h.regs[key] = r
		}
		h.mu.Unlock()
		r.mu.Lock()
		if r.dead {
			r.mu.Unlock()
			continue
		}
		err := f(r)
		r.maybeDropLocked()
		r.mu.Unlock()
		return err
	}
}

// maybeDropLocked removes an empty registry without settings from the hub.
// r.mu is held.
func (r *Registry) maybeDropLocked() {
	if r.dead || len(r.conns) > 0 || r.hasAuto || r.eventTimeout != 0 {
		return
	}
	r.dead = true
	r.hub.mu.Lock()
	if r.hub.regs[r.key] == r {
		delete(r.hub.regs, r.key)
	}
	r.hub.mu.Unlock()
}

// AcceptOptions describe a socket being accepted.
type AcceptOptions struct {
	Tags     []string
	Protocol string // negotiated subprotocol
	// Gate holds the upgrade and every frame sent before it; it is the
	// accepting turn's output gate.
	Gate *Gate
	// Wrap returns the value stored in Conn.Value, called before the
	// socket becomes visible.
	Wrap func(*Conn) any
}

// ValidateTags checks tags against the limits.
func ValidateTags(tags []string) error {
	if len(tags) > MaxTags {
		return &LimitError{Limit: LimitTags, Max: MaxTags, Got: int64(len(tags))}
	}
	for _, t := range tags {
		if n := utf8.RuneCountInString(t); n > MaxTagLength {
			return &LimitError{Limit: LimitTagLength, Max: MaxTagLength, Got: int64(n)}
		}
	}
	return nil
}

// Accept lists a new pending socket in the registry of key. It fails with
// a *LimitError past the object's socket limit or with bad tags.
func (h *Hub) Accept(key string, newHandler func() Handler, o AcceptOptions) (*Conn, error) {
	if err := ValidateTags(o.Tags); err != nil {
		return nil, err
	}
	var c *Conn
	err := h.with(key, newHandler, true, func(r *Registry) error {
		if len(r.conns) >= h.cfg.MaxPerObject {
			return &LimitError{Limit: LimitSockets, Max: int64(h.cfg.MaxPerObject), Got: int64(len(r.conns) + 1)}
		}
		c = &Conn{hub: h, reg: r, id: h.nextID.Add(1), tags: slices.Clone(o.Tags), protocol: o.Protocol, acceptGate: o.Gate, listed: true}
		if o.Wrap != nil {
			c.value = o.Wrap(c)
		}
		h.mu.Lock()
		if h.closed {
			h.mu.Unlock()
			return ErrHubClosed
		}
		h.conns[c] = struct{}{}
		h.mu.Unlock()
		r.conns[c] = struct{}{}
		for _, t := range c.tags {
			m := r.byTag[t]
			if m == nil {
				m = make(map[*Conn]struct{})
				r.byTag[t] = m
			}
			m[c] = struct{}{}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// List returns the open sockets of key that carry tag (all of them for
// ""), in the order they were accepted. Sockets that are closing or closed
// are left out.
func (h *Hub) List(key, tag string) []*Conn {
	var out []*Conn
	h.with(key, nil, false, func(r *Registry) error {
		set := r.conns
		if tag != "" {
			set = r.byTag[tag]
		}
		out = make([]*Conn, 0, len(set))
		for c := range set {
			out = append(out, c)
		}
		return nil
	})
	slices.SortFunc(out, func(a, b *Conn) int { return cmp.Compare(a.id, b.id) })
	return out
}

// SetAutoResponse sets (ok) or clears the auto-response pair of key: a
// text message equal to req is answered with resp without an event.
func (h *Hub) SetAutoResponse(key string, newHandler func() Handler, req, resp string, ok bool) error {
	for _, s := range []string{req, resp} {
		if n := utf8.RuneCountInString(s); n > MaxAutoResponse {
			return &LimitError{Limit: LimitAutoResponse, Max: MaxAutoResponse, Got: int64(n)}
		}
	}
	return h.with(key, newHandler, ok, func(r *Registry) error {
		r.autoReq, r.autoResp, r.hasAuto = req, resp, ok
		if !ok {
			r.autoReq, r.autoResp = "", ""
		}
		return nil
	})
}

// AutoResponse returns the auto-response pair of key.
func (h *Hub) AutoResponse(key string) (req, resp string, ok bool) {
	h.with(key, nil, false, func(r *Registry) error {
		req, resp, ok = r.autoReq, r.autoResp, r.hasAuto
		return nil
	})
	return
}

// SetEventTimeout sets the event timeout of key (0 unsets it).
func (h *Hub) SetEventTimeout(key string, newHandler func() Handler, d time.Duration) error {
	return h.with(key, newHandler, d != 0, func(r *Registry) error {
		r.eventTimeout = d
		return nil
	})
}

// EventTimeout returns the event timeout of key, 0 if none.
func (h *Hub) EventTimeout(key string) time.Duration {
	var d time.Duration
	h.with(key, nil, false, func(r *Registry) error {
		d = r.eventTimeout
		return nil
	})
	return d
}

// unlist removes c from its registry. c.mu is held.
func (c *Conn) unlistLocked() {
	if !c.listed {
		return
	}
	c.listed = false
	r := c.reg
	r.mu.Lock()
	delete(r.conns, c)
	for _, t := range c.tags {
		if m := r.byTag[t]; m != nil {
			delete(m, c)
			if len(m) == 0 {
				delete(r.byTag, t)
			}
		}
	}
	r.maybeDropLocked()
	r.mu.Unlock()
}

// CloseAll starts the closing handshake of every open socket with code and
// reason, as Conn.Close does. The hub stays open.
func (h *Hub) CloseAll(code int, reason string) {
	h.mu.Lock()
	conns := make([]*Conn, 0, len(h.conns))
	for c := range h.conns {
		conns = append(conns, c)
	}
	h.mu.Unlock()
	for _, c := range conns {
		c.Close(code, reason, nil)
	}
}

// Close closes every socket with CloseGoingAway (no events are delivered),
// waits up to ctx's end or the shutdown grace for the close frames to be
// written, drops the connections and waits for every goroutine of the
// hub. Accept fails afterwards. It is safe to call more than once.
func (h *Hub) Close(ctx context.Context) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		h.wg.Wait()
		return
	}
	h.closed = true
	conns := make([]*Conn, 0, len(h.conns))
	for c := range h.conns {
		conns = append(conns, c)
	}
	p := h.poll
	h.mu.Unlock()
	h.cancel()
	if p != nil {
		p.close()
	}
	for _, c := range conns {
		c.shutdown()
	}
	flushed := make(chan struct{})
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		h.writers.Wait()
		close(flushed)
	}()
	t := time.NewTimer(h.cfg.ShutdownGrace)
	select {
	case <-flushed:
	case <-ctx.Done():
	case <-t.C:
	}
	t.Stop()
	for _, c := range conns {
		c.teardown()
	}
	h.wg.Wait()
}

// pollerIfAny returns the poller if it was started.
func (h *Hub) pollerIfAny() *poller {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.poll
}

// startReading makes c's messages flow: through the poller, or a reader
// goroutine of its own.
func (h *Hub) startReading(c *Conn) {
	if !h.cfg.PerConnReader {
		p, err := h.startPoller()
		if err == nil {
			err = p.add(c)
		}
		if err == nil {
			if len(c.pre) > 0 {
				h.dispatch(c) // bytes are buffered already: epoll will not tell
			}
			return
		}
		if errors.Is(err, ErrHubClosed) {
			c.teardown()
			return
		}
		h.log.Warn("websocket: poller unavailable, using a reader goroutine", "err", err)
	}
	if !h.goroutine(false, func() { c.serve(false) }) {
		c.teardown()
	}
}

// startPoller starts the poller on first use.
func (h *Hub) startPoller() (*poller, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrHubClosed
	}
	if h.poll != nil {
		return h.poll, nil
	}
	p, err := newPoller()
	if err != nil {
		return nil, err
	}
	h.poll = p
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		p.run(h.dispatch)
	}()
	return p, nil
}

// Reader goroutines of the poller are kept for a while once they are done,
// so that the next readable socket does not start a goroutine whose stack
// must grow again through the whole event path (reading, the object's
// turn, its sends): that growth cost more than the rest of the read.
const (
	readerIdle     = time.Second // an idle reader exits after this
	maxIdleReaders = 64          // readers kept idle at most
)

// reader is an idle reader goroutine: dispatch hands it its next socket.
type reader struct {
	next chan *Conn // capacity 1: the hand-off never blocks
}

// dispatch has c read (by an idle reader, or a new one). If a reader runs
// for it already, that reader reads again before it stops: the bytes that
// made the poller report c may have arrived after its last read.
func (h *Hub) dispatch(c *Conn) {
	c.mu.Lock()
	if c.torn || c.readDone {
		c.mu.Unlock()
		return
	}
	if c.reading {
		c.readAgain = true
		c.mu.Unlock()
		return
	}
	c.reading = true
	c.mu.Unlock()
	h.readers.Add(1)
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		c.mu.Lock()
		c.reading = false
		c.mu.Unlock()
		h.readers.Add(-1)
		return
	}
	if n := len(h.idle); n > 0 {
		r := h.idle[n-1]
		h.idle[n-1] = nil
		h.idle = h.idle[:n-1]
		h.mu.Unlock()
		r.next <- c
		return
	}
	h.wg.Add(1)
	h.mu.Unlock()
	go func() {
		defer h.wg.Done()
		h.readLoop(c)
	}()
}

// readLoop reads c until it has nothing more, then waits (up to
// readerIdle) to be handed another socket, and so on.
func (h *Hub) readLoop(c *Conn) {
	r := &reader{next: make(chan *Conn, 1)}
	var t *time.Timer
	for {
		for {
			more := c.serve(true)
			c.mu.Lock()
			again := more && c.readAgain
			c.readAgain = false
			if !again {
				c.reading = false
				c.readDone = !more
			}
			c.mu.Unlock()
			if !again {
				h.readers.Add(-1)
				break
			}
		}
		c = nil
		h.mu.Lock()
		if h.closed || len(h.idle) >= maxIdleReaders {
			h.mu.Unlock()
			return
		}
		h.idle = append(h.idle, r)
		h.mu.Unlock()
		if t == nil {
			t = time.NewTimer(readerIdle)
		} else {
			t.Reset(readerIdle)
		}
		select {
		case c = <-r.next:
			t.Stop()
			continue
		case <-t.C:
		case <-h.ctx.Done():
		}
		h.mu.Lock()
		if i := slices.Index(h.idle, r); i >= 0 {
			h.idle = slices.Delete(h.idle, i, i+1)
			h.mu.Unlock()
			t.Stop()
			return
		}
		h.mu.Unlock()
		c = <-r.next // dispatch took r before it could leave: serve that socket
	}
}
