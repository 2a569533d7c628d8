package durable

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/durable-go/durable/internal/codec"
	"github.com/durable-go/durable/internal/durability"
	"github.com/durable-go/durable/internal/socket"
)

// Limits of WebSockets (Cloudflare's).
const (
	// MaxWebSockets is how many sockets one object may have accepted and
	// not yet closed.
	MaxWebSockets = socket.MaxPerObject
	// MaxWebSocketTags is how many tags a socket may carry.
	MaxWebSocketTags = socket.MaxTags
	// MaxWebSocketTagLength is the longest tag, in characters (Unicode
	// code points).
	MaxWebSocketTagLength = socket.MaxTagLength
	// MaxWebSocketAttachment is the largest attachment, in bytes once
	// encoded by the codec.
	MaxWebSocketAttachment = socket.MaxAttachment
	// MaxAutoResponseLength is the longest auto-response request or
	// response, in characters.
	MaxAutoResponseLength = socket.MaxAutoResponse
	// MaxWebSocketMessage is the largest message, in bytes, a socket
	// accepts from its peer (a larger one closes the socket with
	// CloseMessageTooBig) or Send accepts from the object.
	MaxWebSocketMessage = socket.MaxMessage
	// MaxCloseReason is the longest close reason, in bytes.
	MaxCloseReason = socket.MaxCloseReason
	// WebSocketSendBuffer is how many bytes may wait to be written to one
	// socket. A peer that reads so slowly that more pile up is
	// disconnected (ClosePolicyViolation) and Send returns
	// ErrWebSocketSendBuffer.
	WebSocketSendBuffer = socket.DefaultSendBuffer
	// MaxWebSocketEventTimeout is the longest event timeout (7 days).
	MaxWebSocketEventTimeout = 7 * 24 * time.Hour
)

// Close codes (RFC 6455 §7.4.1) that WebSocket handlers see or send.
const (
	CloseNormal          = socket.CloseNormal
	CloseGoingAway       = socket.CloseGoingAway // the runtime is shutting down
	CloseProtocolError   = socket.CloseProtocolError
	CloseUnsupportedData = socket.CloseUnsupportedData
	CloseNoStatus        = socket.CloseNoStatus // the peer's close frame had no code
	CloseAbnormal        = socket.CloseAbnormal // the connection dropped without a close frame
	CloseInvalidPayload  = socket.CloseInvalidPayload
	ClosePolicyViolation = socket.ClosePolicyViolation
	CloseMessageTooBig   = socket.CloseMessageTooBig
	CloseInternalError   = socket.CloseInternalError
	CloseTryAgainLater   = socket.CloseTryAgainLater
)

// WebSocket errors. Those that end a socket reach the object's
// WebSocketError handler wrapped in a *WebSocketCloseError.
var (
	// ErrWebSocketClosed means the socket is closed or closing.
	ErrWebSocketClosed = socket.ErrClosed
	// ErrNotWebSocket means AcceptWebSocket got a request that is not a
	// WebSocket upgrade (RFC 6455 §4.2.1).
	ErrNotWebSocket = socket.ErrBadRequest
	// ErrWebSocketOrigin means the request's Origin is neither the
	// request's host nor in AcceptOptions.OriginPatterns.
	ErrWebSocketOrigin = socket.ErrOrigin
	// ErrNotUpgradable means the response cannot become a WebSocket: the
	// request did not come through Stub.ServeHTTP (or Route), the
	// connection cannot be hijacked (HTTP/2), or the response was already
	// accepted or started.
	ErrNotUpgradable = errors.New("durable: response cannot be upgraded to a WebSocket")
	// ErrNoAttachment means the socket has no attachment.
	ErrNoAttachment = errors.New("durable: WebSocket has no attachment")
	// ErrWebSocketEventTimeout means a WebSocket handler ran past the
	// object's event timeout: its ctx was cancelled and, once it returned,
	// the object was reset.
	ErrWebSocketEventTimeout = errors.New("durable: WebSocket event ran past the event timeout")
	// ErrWebSocketProtocol: the peer broke the protocol (closed with
	// CloseProtocolError).
	ErrWebSocketProtocol = socket.ErrProtocol
	// ErrWebSocketMessageTooBig: the peer sent more than
	// MaxWebSocketMessage bytes in one message (closed with
	// CloseMessageTooBig).
	ErrWebSocketMessageTooBig = socket.ErrMessageTooBig
	// ErrWebSocketInvalidUTF8: a text message was not UTF-8 (closed with
	// CloseInvalidPayload).
	ErrWebSocketInvalidUTF8 = socket.ErrInvalidUTF8
	// ErrWebSocketSendBuffer: the peer read too slowly (closed with
	// ClosePolicyViolation).
	ErrWebSocketSendBuffer = socket.ErrSendBufferFull
	// ErrWebSocketOutputLost: frames for the socket were dropped because
	// the turn that sent them failed (its writes were not durable, or it
	// panicked or aborted); the socket was closed with CloseInternalError
	// so the peer knows to reconnect.
	ErrWebSocketOutputLost = socket.ErrOutputLost
	// ErrWebSocketTimeout: the peer stalled mid-frame, or did not take
	// frames within the write timeout; the connection was dropped.
	ErrWebSocketTimeout = socket.ErrTimeout
)

type (
	// WebSocketLimitError reports an input past a WebSocket limit; the
	// call had no effect.
	WebSocketLimitError = socket.LimitError
	// WebSocketCloseError is the error a WebSocketError handler receives:
	// the runtime closed the socket with Code (0 if the connection just
	// dropped) because of Err.
	WebSocketCloseError = socket.CloseError
)

// MessageType is the type of a WebSocket message.
type MessageType int

// Message types.
const (
	TextMessage   MessageType = MessageType(socket.Text)
	BinaryMessage MessageType = MessageType(socket.Binary)
)

// String returns "text" or "binary".
func (t MessageType) String() string {
	switch t {
	case TextMessage:
		return "text"
	case BinaryMessage:
		return "binary"
	}
	return fmt.Sprintf("MessageType(%d)", int(t))
}

// Message is a WebSocket message. Text messages hold UTF-8.
type Message struct {
	Type MessageType
	Data []byte
}

// Text returns the message's data as a string.
func (m Message) Text() string { return string(m.Data) }

// WebSocketMessageHandler is implemented by objects that receive WebSocket
// messages. WebSocketMessage runs as one of the object's turns, like any
// call: never concurrently with its other handlers, with its writes
// committed atomically when it returns. Messages of one socket arrive in
// order, each after the previous one was handled. If the object was
// evicted while its sockets stayed open (hibernation), it is constructed
// again first. A returned error is logged; the socket stays open. The
// handler owns msg.Data.
type WebSocketMessageHandler interface {
	WebSocketMessage(ctx context.Context, ws *WebSocket, msg Message) error
}

// WebSocketCloseHandler is implemented by objects that want to know when a
// socket ends because its peer closed it (wasClean, with the peer's code
// and reason; the runtime has already answered the close frame) or the
// connection dropped (CloseAbnormal, wasClean false). It is not called for
// sockets the object closed itself, nor at runtime shutdown. The socket is
// no longer listed by State.WebSockets; its tags and attachment are still
// readable.
type WebSocketCloseHandler interface {
	WebSocketClose(ctx context.Context, ws *WebSocket, code int, reason string, wasClean bool) error
}

// WebSocketErrorHandler is implemented by objects that want to know when
// the runtime ends a socket because of an error: err is a
// *WebSocketCloseError wrapping ErrWebSocketProtocol,
// ErrWebSocketMessageTooBig, ErrWebSocketInvalidUTF8,
// ErrWebSocketSendBuffer, ErrWebSocketOutputLost, ErrWebSocketTimeout or a
// write error. A socket gets at most one WebSocketClose or WebSocketError.
type WebSocketErrorHandler interface {
	WebSocketError(ctx context.Context, ws *WebSocket, err error) error
}

var (
	wsMessageType = reflect.TypeFor[WebSocketMessageHandler]()
	wsCloseType   = reflect.TypeFor[WebSocketCloseHandler]()
	wsErrorType   = reflect.TypeFor[WebSocketErrorHandler]()
)

// WebSocket is a socket accepted by an object with State.AcceptWebSocket.
// The runtime owns the connection: the socket stays open while the object
// is evicted (hibernation) or reset, and the same *WebSocket value is
// handed to every event of that socket, so it can serve as a map key while
// the object is in memory. Its methods are safe for concurrent use.
type WebSocket struct {
	c     *socket.Conn
	owner *nsCore  // the owning object's namespace
	raw   [32]byte // and ID
}

// gate returns the output gate a frame sent with ctx must wait behind.
func (w *WebSocket) gate(ctx context.Context) (*socket.Gate, error) {
	t := turnFrom(ctx)
	if t == nil || t.a == nil {
		return nil, nil
	}
	if t.a.c != w.owner || t.a.id.raw != w.raw {
		return nil, fmt.Errorf("%w: the WebSocket belongs to another object", ErrNoTurn)
	}
	return t.outputGate(), nil
}

// Send sends a message. Called with a handler's ctx, the message leaves
// only after the writes the turn made before it are durable (output gate),
// and never if they fail; with another ctx it leaves after the frames
// queued before it. Frames reach the peer in the order they were sent.
// Send copies m.Data and does not wait for the peer. It fails with
// ErrWebSocketClosed once the socket is closing, a *WebSocketLimitError
// past MaxWebSocketMessage, ErrBadArgument for a text message that is not
// UTF-8, and ErrWebSocketSendBuffer if the peer is too slow (the socket is
// then closed).
func (w *WebSocket) Send(ctx context.Context, m Message) error {
	switch m.Type {
	case TextMessage:
		if !utf8.Valid(m.Data) {
			return fmt.Errorf("%w: text message is not valid UTF-8", ErrBadArgument)
		}
	case BinaryMessage:
	default:
		return fmt.Errorf("%w: message type %v", ErrBadArgument, m.Type)
	}
	if len(m.Data) > MaxWebSocketMessage {
		return &WebSocketLimitError{Limit: socket.LimitMessage, Max: MaxWebSocketMessage, Got: int64(len(m.Data))}
	}
	g, err := w.gate(ctx)
	if err != nil {
		return err
	}
	return w.c.Send(socket.MessageType(m.Type), bytes.Clone(m.Data), g)
}

// SendText sends a text message; see Send.
func (w *WebSocket) SendText(ctx context.Context, s string) error {
	return w.Send(ctx, Message{Type: TextMessage, Data: []byte(s)})
}

// SendBinary sends a binary message; see Send.
func (w *WebSocket) SendBinary(ctx context.Context, b []byte) error {
	return w.Send(ctx, Message{Type: BinaryMessage, Data: b})
}

// Close starts the closing handshake with code (1000–1003, 1007–1014 or
// 3000–4999) and reason (at most MaxCloseReason bytes of UTF-8). Like Send
// it obeys the output gate. The socket leaves State.WebSockets at once; no
// WebSocketClose event follows. The runtime waits a few seconds for the
// peer's close frame, then drops the connection.
func (w *WebSocket) Close(ctx context.Context, code int, reason string) error {
	if !socket.ValidCloseCode(code) {
		return fmt.Errorf("%w: close code %d", ErrBadArgument, code)
	}
	if !utf8.ValidString(reason) {
		return fmt.Errorf("%w: close reason is not valid UTF-8", ErrBadArgument)
	}
	g, err := w.gate(ctx)
	if err != nil {
		return err
	}
	return w.c.Close(code, reason, g)
}

// Tags returns the tags the socket was accepted with.
func (w *WebSocket) Tags() []string { return w.c.Tags() }

// Protocol returns the subprotocol negotiated at the upgrade, or "".
func (w *WebSocket) Protocol() string { return w.c.Protocol() }

// SetAttachment stores a copy of v (encoded by the codec, at most
// MaxWebSocketAttachment bytes, else a *WebSocketLimitError) with the
// socket. The attachment survives hibernation and dies with the socket;
// nil removes it. It is not part of the turn's transaction: it takes
// effect at once and stays even if the turn fails.
func (w *WebSocket) SetAttachment(v any) error {
	if v == nil {
		return w.c.SetAttachment(nil)
	}
	b, err := codec.Marshal(v)
	if err != nil {
		return fmt.Errorf("%w: attachment: %w", ErrBadArgument, err)
	}
	return w.c.SetAttachment(b)
}

// Attachment decodes the socket's attachment into the value pointed to by
// v. It returns ErrNoAttachment if there is none.
func (w *WebSocket) Attachment(v any) error {
	b := w.c.Attachment()
	if b == nil {
		return ErrNoAttachment
	}
	return codec.Unmarshal(b, v)
}

// AutoResponseTimestamp returns when the runtime last answered this socket
// with the object's auto-response, and false if it never did.
func (w *WebSocket) AutoResponseTimestamp() (time.Time, bool) {
	t := w.c.AutoResponseTime()
	return t, !t.IsZero()
}

// IsOpen reports whether messages can still be sent on the socket.
func (w *WebSocket) IsOpen() bool { return w.c.IsOpen() }

// AcceptOptions configure State.AcceptWebSocketWith.
type AcceptOptions struct {
	// Tags label the socket for State.WebSockets: at most MaxWebSocketTags
	// of at most MaxWebSocketTagLength characters each.
	Tags []string
	// OriginPatterns allow browsers on other origins to connect. By
	// default only same-origin requests (Origin's host equal to the
	// request's Host) and requests without an Origin header (not from a
	// browser) are accepted, which defeats cross-site WebSocket hijacking.
	// A pattern without "://" matches the origin's host[:port], one with it
	// matches scheme://host[:port], in path.Match syntax, case-insensitively:
	// "app.example.com", "*.example.com", "https://*.example.com:8443".
	// Authenticate the upgrade request itself (cookie, token), not a first
	// message.
	OriginPatterns []string
	// Subprotocols the object speaks, in order of preference of the client:
	// the first one the client offers that is listed here is chosen (see
	// WebSocket.Protocol). None by default.
	Subprotocols []string
}

// AcceptWebSocket accepts the WebSocket upgrade of request r, as the
// object's ServeHTTP reached through Stub.ServeHTTP or Route, and hands the
// connection to the runtime. w and r must be the ones ServeHTTP was given.
// The upgrade (the 101 response) obeys the output gate: it is sent after
// the turn's writes are durable, followed by the messages sent to the
// socket meanwhile; if the turn fails the client gets an error response
// instead and the socket disappears. The socket is listed by WebSockets at
// once. It is AcceptWebSocketWith with only tags set.
func (s *State) AcceptWebSocket(w http.ResponseWriter, r *http.Request, tags ...string) (*WebSocket, error) {
	return s.AcceptWebSocketWith(w, r, AcceptOptions{Tags: tags})
}

// AcceptWebSocketWith is AcceptWebSocket with options. It fails with
// ErrNoTurn, ErrNotUpgradable, an error wrapping ErrNotWebSocket or
// ErrWebSocketOrigin (answer those with 400 or 403), or a
// *WebSocketLimitError (too many tags, too long a tag, or MaxWebSockets
// sockets already).
func (s *State) AcceptWebSocketWith(w http.ResponseWriter, r *http.Request, o AcceptOptions) (*WebSocket, error) {
	a := s.a
	t := turnFrom(r.Context())
	if t == nil || t.a != a {
		return nil, ErrNoTurn
	}
	rb, ok := w.(*responseBuffer)
	switch {
	case !ok || !rb.canUpgrade:
		return nil, ErrNotUpgradable
	case rb.upgrade != nil:
		return nil, fmt.Errorf("%w: accepted already", ErrNotUpgradable)
	case rb.wroteHeader:
		return nil, fmt.Errorf("%w: the response was started", ErrNotUpgradable)
	}
	if err := socket.CheckRequest(r); err != nil {
		return nil, err
	}
	if err := socket.CheckOrigin(r, o.OriginPatterns); err != nil {
		return nil, err
	}
	var ws *WebSocket
	conn, err := a.c.rt.hub.Accept(a.c.objectKey(a.id), a.c.socketEvents(a.id), socket.AcceptOptions{
		Tags:     o.Tags,
		Protocol: socket.SelectProtocol(r, o.Subprotocols),
		Gate:     t.outputGate(),
		Wrap: func(c *socket.Conn) any {
			ws = &WebSocket{c: c, owner: a.c, raw: a.id.raw}
			return ws
		},
	})
	if err != nil {
		if errors.Is(err, socket.ErrHubClosed) {
			return nil, ErrClosed
		}
		return nil, err
	}
	rb.upgrade = conn
	rb.status = http.StatusSwitchingProtocols
	a.c.m.socketsAccepted.Add(1) // metrics.go
	return ws, nil
}

// WebSockets returns the object's open sockets that carry tag, or all of
// them for "", in the order they were accepted. Sockets that are closing
// or closed are left out. It works in any state of the object, including
// right after it woke from hibernation.
func (s *State) WebSockets(tag string) []*WebSocket {
	conns := s.a.c.rt.hub.List(s.a.c.objectKey(s.a.id), tag)
	out := make([]*WebSocket, len(conns))
	for i, c := range conns {
		out[i] = c.Value().(*WebSocket)
	}
	return out
}

// AutoResponse is a request/response pair the runtime answers by itself:
// a text message equal to Request gets Response back without waking the
// object (see State.SetWebSocketAutoResponse). Each is at most
// MaxAutoResponseLength characters.
type AutoResponse struct {
	Request  string
	Response string
}

// SetWebSocketAutoResponse sets the object's auto-response pair (nil
// removes it). It applies to all the object's sockets, lasts across
// hibernation (not across a restart: set it in the constructor), and
// records the time of each answer (WebSocket.AutoResponseTimestamp). Use
// it for keep-alive pings that should not wake a hibernated object.
func (s *State) SetWebSocketAutoResponse(p *AutoResponse) error {
	c := s.a.c
	if p == nil {
		return hubErr(c.rt.hub.SetAutoResponse(c.objectKey(s.a.id), c.socketEvents(s.a.id), "", "", false))
	}
	return hubErr(c.rt.hub.SetAutoResponse(c.objectKey(s.a.id), c.socketEvents(s.a.id), p.Request, p.Response, true))
}

// WebSocketAutoResponse returns the object's auto-response pair, or nil.
func (s *State) WebSocketAutoResponse() *AutoResponse {
	req, resp, ok := s.a.c.rt.hub.AutoResponse(s.a.c.objectKey(s.a.id))
	if !ok {
		return nil
	}
	return &AutoResponse{Request: req, Response: resp}
}

// SetWebSocketEventTimeout bounds how long each WebSocket handler of the
// object may run: past d its ctx is cancelled with ErrWebSocketEventTimeout
// and, once it returns, its writes are rolled back and the object is
// reset. d is at most MaxWebSocketEventTimeout; 0 removes the bound. Like
// the auto-response it lasts across hibernation.
func (s *State) SetWebSocketEventTimeout(d time.Duration) error {
	if d < 0 || d > MaxWebSocketEventTimeout {
		return &WebSocketLimitError{Limit: socket.LimitEventTimeout, Max: MaxWebSocketEventTimeout.Milliseconds(), Got: d.Milliseconds()}
	}
	c := s.a.c
	return hubErr(c.rt.hub.SetEventTimeout(c.objectKey(s.a.id), c.socketEvents(s.a.id), d))
}

// WebSocketEventTimeout returns the object's event timeout, 0 if none.
func (s *State) WebSocketEventTimeout() time.Duration {
	return s.a.c.rt.hub.EventTimeout(s.a.c.objectKey(s.a.id))
}

func hubErr(err error) error {
	if errors.Is(err, socket.ErrHubClosed) {
		return ErrClosed
	}
	return err
}

// outputGate returns the gate holding the turn's output, making it if
// needed.
func (t *turn) outputGate() *socket.Gate {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.held == nil {
		t.held = socket.NewGate()
	}
	return t.held
}

// settleHeld releases the turn's held output (err nil: its writes are
// durable) or drops it (err says why).
func (t *turn) settleHeld(err error) {
	t.mu.Lock()
	g := t.held
	t.held = nil
	t.mu.Unlock()
	resolveGate(g, err)
}

// settleHeldLocked is settleHeld with t.mu held.
func (t *turn) settleHeldLocked(err error) {
	g := t.held
	t.held = nil
	resolveGate(g, err)
}

// settleHeldAfter settles the held output when ticket is durable, in the
// background: the caller stopped waiting (its ctx ended) but the turn's
// writes may still become durable.
func (t *turn) settleHeldAfter(ticket durability.Ticket) {
	t.mu.Lock()
	g := t.held
	t.held = nil
	t.mu.Unlock()
	if g == nil {
		return
	}
	if !t.a.c.rt.goBackground(func(ctx context.Context) { resolveGate(g, ticket.Wait(ctx)) }) {
		g.Drop(ErrClosed)
	}
}

func resolveGate(g *socket.Gate, err error) {
	if g == nil {
		return
	}
	if err == nil {
		g.Open()
		return
	}
	g.Drop(fmt.Errorf("%w: %w", socket.ErrOutputLost, err))
}

// socketEvents returns the maker of the event handler of object id's
// sockets.
func (c *nsCore) socketEvents(id ID) func() socket.Handler {
	return func() socket.Handler { return &socketEvents{c: c, id: id} }
}

// socketEvents turns the socket events of one object into turns.
type socketEvents struct {
	c  *nsCore
	id ID
}

var _ socket.Handler = (*socketEvents)(nil)

func (e *socketEvents) Message(conn *socket.Conn, typ socket.MessageType, data []byte) {
	if !e.c.typ.Implements(wsMessageType) {
		return
	}
	ws := conn.Value().(*WebSocket)
	msg := Message{Type: MessageType(typ), Data: data}
	e.deliver(conn, "WebSocketMessage", func(ctx context.Context, inst any) error {
		return inst.(WebSocketMessageHandler).WebSocketMessage(ctx, ws, msg)
	})
}

func (e *socketEvents) Close(conn *socket.Conn, code int, reason string, wasClean bool) {
	if !e.c.typ.Implements(wsCloseType) {
		return
	}
	ws := conn.Value().(*WebSocket)
	e.deliver(conn, "WebSocketClose", func(ctx context.Context, inst any) error {
		return inst.(WebSocketCloseHandler).WebSocketClose(ctx, ws, code, reason, wasClean)
	})
}

func (e *socketEvents) Error(conn *socket.Conn, err error) {
	if !e.c.typ.Implements(wsErrorType) {
		return
	}
	ws := conn.Value().(*WebSocket)
	e.deliver(conn, "WebSocketError", func(ctx context.Context, inst any) error {
		return inst.(WebSocketErrorHandler).WebSocketError(ctx, ws, err)
	})
}

// deliver runs fn as a turn of the object, under the event timeout.
func (e *socketEvents) deliver(conn *socket.Conn, method string, fn func(ctx context.Context, inst any) error) {
	rt := e.c.rt
	timeout := rt.hub.EventTimeout(conn.Key())
	err := e.c.invokeKind(rt.hub.Context(), socketKind(method), e.id, func() string { return method }, func(ctx context.Context, inst any) error {
		if timeout <= 0 {
			return fn(ctx, inst)
		}
		ctx, cancel := context.WithCancelCause(ctx)
		defer cancel(nil)
		var fired atomic.Bool
		timer := rt.opts.Clock.AfterFunc(timeout, func() {
			fired.Store(true)
			cancel(ErrWebSocketEventTimeout)
		})
		err := fn(ctx, inst)
		timer.Stop()
		if fired.Load() {
			turnFrom(ctx).a.setBroken(ErrWebSocketEventTimeout)
			return ErrWebSocketEventTimeout
		}
		return err
	})
	switch {
	case err == nil:
	case errors.Is(err, ErrOverloaded):
		conn.CloseNow(CloseTryAgainLater, socket.ErrOverloaded)
	case errors.Is(err, ErrClosed) || rt.hub.Context().Err() != nil:
		// Shutting down: the socket is being closed.
	default:
		rt.log.Warn("websocket handler failed", "namespace", e.c.name, "id", e.id.String(), "method", method, "err", err)
	}
}
