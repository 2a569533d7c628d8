package durabletest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/durable-go/durable"
	"github.com/gobwas/ws"
)

// DialOptions configure DialWebSocket.
type DialOptions struct {
	// Header is added to the upgrade request: Origin (to test origin
	// checks), Cookie, Authorization...
	Header http.Header
	// Subprotocols are offered to the server in order of preference;
	// WebSocket.Protocol reports the one it chose.
	Subprotocols []string
}

// HandshakeError means the server answered the upgrade request with a
// status other than 101 Switching Protocols: the object refused the
// WebSocket (its ServeHTTP wrote an error), or the route did not reach it.
type HandshakeError struct {
	StatusCode int
	// Body is the start of the response body (at most 4 KiB).
	Body string
}

func (e *HandshakeError) Error() string {
	s := fmt.Sprintf("durabletest: WebSocket handshake: %d %s", e.StatusCode, http.StatusText(e.StatusCode))
	if b := strings.TrimSpace(e.Body); b != "" {
		s += ": " + b
	}
	return s
}

// CloseError is how a WebSocket connection ended, returned by Receive once
// it has: the code and reason of the server's close frame, or Code
// durable.CloseAbnormal (1006) if the connection dropped without one
// (durable.CloseNoStatus, 1005, for a close frame without a code).
type CloseError struct {
	Code   int
	Reason string
}

func (e *CloseError) Error() string {
	if e.Code == durable.CloseAbnormal {
		return "durabletest: WebSocket connection dropped without a close frame (1006)"
	}
	return fmt.Sprintf("durabletest: WebSocket closed by the server: %d %q", e.Code, e.Reason)
}

// errClosedLocally is returned by reads after CloseNow.
var errClosedLocally = errors.New("durabletest: WebSocket closed by the client")

// errCloseSent is returned by sends after the client's close frame.
var errCloseSent = errors.New("durabletest: WebSocket closing: the client sent its close frame")

// maxHandshakeBody bounds HandshakeError.Body.
const maxHandshakeBody = 4 << 10

// WebSocket is a WebSocket client for tests (RFC 6455, no extensions),
// connected with DialWebSocket. It answers the server's pings and close
// frame by itself, reassembles fragmented messages, and checks what the
// server sends: a frame that breaks the protocol, a text message that is
// not UTF-8 or a message over durable.MaxWebSocketMessage bytes end the
// connection with an error, so that a test notices.
//
// Send and its variants may be called concurrently with each other and
// with the reading methods (Receive, ReceiveText, ExpectClose, Close),
// which take turns. A read that times out or whose ctx ends leaves the
// connection usable: a test can check that nothing arrives for a while,
// then receive again.
type WebSocket struct {
	conn     net.Conn
	protocol string
	local    atomic.Bool // CloseNow was called

	rmu      sync.Mutex // guards the fields below; held by a read from start to end
	buf      []byte     // bytes received and not yet parsed
	tmp      []byte     // read buffer
	frag     bool       // a fragmented message is being received
	fragType durable.MessageType
	fragData []byte
	rerr     error // the connection ended: every read returns it

	dmu      sync.Mutex // guards watchGen and the read deadline
	watchGen uint64     // the read whose ctx may interrupt the connection

	wmu       sync.Mutex // guards writes to conn and sentClose
	sentClose bool
}

// DialWebSocket connects to the WebSocket at url: ws:// or wss://, or the
// http:// or https:// URL of a server such as the one NewServer starts
// (followed by the path that reaches the object). opts may be nil. If the
// server refuses the upgrade the error is a *HandshakeError. ctx bounds the
// handshake (DefaultTimeout if it has no deadline), not the connection.
//
// Close the connection when done, with Close (a closing handshake) or
// CloseNow.
func DialWebSocket(ctx context.Context, url string, opts *DialOptions) (*WebSocket, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	switch {
	case strings.HasPrefix(url, "http://"):
		url = "ws://" + strings.TrimPrefix(url, "http://")
	case strings.HasPrefix(url, "https://"):
		url = "wss://" + strings.TrimPrefix(url, "https://")
	}
	var herr *HandshakeError
	d := ws.Dialer{
		OnStatusError: func(status int, _ []byte, resp io.Reader) {
			herr = &HandshakeError{StatusCode: status}
			r, err := http.ReadResponse(bufio.NewReader(resp), nil)
			if err != nil {
				return
			}
			b, _ := io.ReadAll(io.LimitReader(r.Body, maxHandshakeBody))
			r.Body.Close()
			herr.Body = string(b)
		},
	}
	if opts != nil {
		d.Protocols = opts.Subprotocols
		if opts.Header != nil {
			d.Header = ws.HandshakeHeaderHTTP(opts.Header)
		}
	}
	conn, br, hs, err := d.Dial(ctx, url)
	if err != nil {
		if herr != nil {
			return nil, herr
		}
		return nil, fmt.Errorf("durabletest: dial %s: %w", url, err)
	}
	c := &WebSocket{conn: conn, protocol: hs.Protocol}
	if br != nil {
		// Frames the server sent right behind its handshake response.
		b, _ := br.Peek(br.Buffered())
		c.buf = append(c.buf, b...)
		ws.PutReader(br)
	}
	return c, nil
}

// Protocol returns the subprotocol the server chose, or "".
func (c *WebSocket) Protocol() string { return c.protocol }

// Send sends a message in one frame. It fails once the connection has
// ended or the client has sent its close frame. ctx bounds the write
// (DefaultTimeout if it has no deadline).
func (c *WebSocket) Send(ctx context.Context, m durable.Message) error {
	op := ws.OpText
	if m.Type == durable.BinaryMessage {
		op = ws.OpBinary
	}
	return c.write(ctx, ws.NewFrame(op, true, m.Data))
}

// SendText sends a text message; see Send. s need not be UTF-8, so that a
// test can check how the server handles bad input.
func (c *WebSocket) SendText(ctx context.Context, s string) error {
	return c.Send(ctx, durable.Message{Type: durable.TextMessage, Data: []byte(s)})
}

// SendBinary sends a binary message; see Send.
func (c *WebSocket) SendBinary(ctx context.Context, b []byte) error {
	return c.Send(ctx, durable.Message{Type: durable.BinaryMessage, Data: b})
}

// write masks f (a copy of its payload) and writes it.
func (c *WebSocket) write(ctx context.Context, f ws.Frame) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.sentClose {
		return errCloseSent
	}
	if f.Header.OpCode == ws.OpClose {
		c.sentClose = true
	}
	deadline, _ := ctx.Deadline()
	c.conn.SetWriteDeadline(deadline)
	if err := ws.WriteFrame(c.conn, ws.MaskFrame(f)); err != nil {
		if c.local.Load() {
			return errClosedLocally
		}
		return fmt.Errorf("durabletest: WebSocket send: %w", err)
	}
	return nil
}

// writeClose sends a close frame with code (none if code is 0 or
// CloseNoStatus) and reason.
func (c *WebSocket) writeClose(ctx context.Context, code int, reason string) error {
	var body []byte
	if code != 0 && code != durable.CloseNoStatus {
		body = binary.BigEndian.AppendUint16(nil, uint16(code))
		body = append(body, reason...)
	}
	return c.write(ctx, ws.NewCloseFrame(body))
}

// Receive returns the next message, waiting for it until ctx ends
// (DefaultTimeout if ctx has no deadline): the error then wraps ctx's
// error, and the connection stays usable. Once the server has closed the
// connection, or it dropped, Receive returns a *CloseError (after answering
// the server's close frame and closing the connection), and so does every
// later call. The caller owns the message's Data.
func (c *WebSocket) Receive(ctx context.Context) (durable.Message, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	c.rmu.Lock()
	defer c.rmu.Unlock()
	return c.receiveLocked(ctx)
}

// ReceiveText is Receive for a text message: a binary one is an error.
func (c *WebSocket) ReceiveText(ctx context.Context) (string, error) {
	m, err := c.Receive(ctx)
	if err != nil {
		return "", err
	}
	if m.Type != durable.TextMessage {
		return "", fmt.Errorf("durabletest: got a binary message (%d bytes), want text", len(m.Data))
	}
	return string(m.Data), nil
}

// ExpectClose reads until the server closes the connection, discarding
// the messages that come first, and returns the code and reason of the
// server's close frame (durable.CloseAbnormal if the connection dropped
// without one). It fails if ctx ends first (DefaultTimeout if it has no
// deadline) or the server breaks the protocol.
func (c *WebSocket) ExpectClose(ctx context.Context) (code int, reason string, err error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for {
		_, err := c.receiveLocked(ctx)
		var ce *CloseError
		switch {
		case err == nil:
			continue
		case errors.As(err, &ce):
			return ce.Code, ce.Reason, nil
		default:
			return 0, "", fmt.Errorf("durabletest: waiting for the server to close: %w", err)
		}
	}
}

// Close performs the closing handshake: it sends a close frame with code
// (none if code is 0) and reason, discards the messages still arriving
// until the server's close frame, and closes the connection. It returns
// nil once the server answered, and an error if it did not before ctx
// ended (DefaultTimeout if it has no deadline); the connection is closed
// in every case. code and reason are sent as they are, so that a test can
// check how the server handles invalid ones; reason is at most 123 bytes.
func (c *WebSocket) Close(ctx context.Context, code int, reason string) error {
	if len(reason) > 123 {
		return fmt.Errorf("durabletest: close reason of %d bytes, want at most 123", len(reason))
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	defer c.CloseNow()
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.rerr == nil {
		if err := c.writeClose(ctx, code, reason); err != nil && !errors.Is(err, errCloseSent) {
			return err
		}
	}
	for {
		_, err := c.receiveLocked(ctx)
		var ce *CloseError
		switch {
		case err == nil:
			continue
		case errors.As(err, &ce) && ce.Code != durable.CloseAbnormal:
			return nil
		default:
			return fmt.Errorf("durabletest: close: %w", err)
		}
	}
}

// CloseNow closes the connection without a closing handshake, as a
// crashed client or a lost network would: the server sees it drop.
func (c *WebSocket) CloseNow() error {
	c.local.Store(true)
	if err := c.conn.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

// receiveLocked reads frames until a complete message, answering control
// frames.
func (c *WebSocket) receiveLocked(ctx context.Context) (durable.Message, error) {
	if c.rerr != nil {
		return durable.Message{}, c.rerr
	}
	stop := c.watch(ctx)
	defer stop()
	for {
		h, p, err := c.nextFrameLocked(ctx)
		if err != nil {
			return durable.Message{}, err
		}
		switch h.OpCode {
		case ws.OpPing:
			c.write(ctx, ws.NewPongFrame(p)) // fails only if closing: then no pong is due
		case ws.OpPong:
		case ws.OpClose:
			ce := &CloseError{Code: durable.CloseNoStatus}
			switch {
			case len(p) == 1:
				return durable.Message{}, c.failLocked(ctx, durable.CloseProtocolError, "close frame with a 1-byte body")
			case len(p) >= 2:
				ce.Code = int(binary.BigEndian.Uint16(p))
				ce.Reason = string(p[2:])
				if !utf8.ValidString(ce.Reason) {
					return durable.Message{}, c.failLocked(ctx, durable.CloseInvalidPayload, "close reason not UTF-8")
				}
			}
			c.writeClose(ctx, ce.Code, "") // the echo; not due if the client closed first
			c.endLocked(ce)
			return durable.Message{}, ce
		case ws.OpText, ws.OpBinary, ws.OpContinuation:
			if (h.OpCode == ws.OpContinuation) != c.frag {
				return durable.Message{}, c.failLocked(ctx, durable.CloseProtocolError, fmt.Sprintf("unexpected %s frame", opName(h.OpCode)))
			}
			if h.OpCode != ws.OpContinuation {
				c.frag = true
				c.fragType = durable.TextMessage
				if h.OpCode == ws.OpBinary {
					c.fragType = durable.BinaryMessage
				}
				c.fragData = nil
			}
			if len(c.fragData)+len(p) > durable.MaxWebSocketMessage {
				return durable.Message{}, c.failLocked(ctx, durable.CloseMessageTooBig,
					fmt.Sprintf("message over %d bytes", durable.MaxWebSocketMessage))
			}
			c.fragData = append(c.fragData, p...)
			if !h.Fin {
				continue
			}
			m := durable.Message{Type: c.fragType, Data: c.fragData}
			c.frag, c.fragData = false, nil
			if m.Type == durable.TextMessage && !utf8.Valid(m.Data) {
				return durable.Message{}, c.failLocked(ctx, durable.CloseInvalidPayload, "text message not UTF-8")
			}
			return m, nil
		default:
			return durable.Message{}, c.failLocked(ctx, durable.CloseProtocolError, fmt.Sprintf("unknown opcode %d", h.OpCode))
		}
	}
}

// nextFrameLocked returns the next frame, reading as much as it needs.
func (c *WebSocket) nextFrameLocked(ctx context.Context) (ws.Header, []byte, error) {
	for {
		h, n, err := parseHeader(c.buf)
		if err != nil {
			return h, nil, c.failLocked(ctx, durable.CloseProtocolError, err.Error())
		}
		if n > 0 && int64(len(c.buf)-n) >= h.Length {
			end := n + int(h.Length)
			p := slices.Clone(c.buf[n:end])
			c.buf = c.buf[:copy(c.buf, c.buf[end:])]
			switch {
			case h.Masked:
				return h, nil, c.failLocked(ctx, durable.CloseProtocolError, "masked frame from the server")
			case h.Rsv != 0:
				return h, nil, c.failLocked(ctx, durable.CloseProtocolError, "reserved bits set (no extension was negotiated)")
			case h.OpCode.IsControl() && (!h.Fin || h.Length > 125):
				return h, nil, c.failLocked(ctx, durable.CloseProtocolError, "fragmented or long control frame")
			}
			return h, p, nil
		}
		if err := c.fillLocked(ctx); err != nil {
			return h, nil, err
		}
	}
}

// parseHeader parses the frame header at the start of buf; n is its
// length, 0 if buf does not hold all of it yet.
func parseHeader(buf []byte) (h ws.Header, n int, err error) {
	r := bytes.NewReader(buf)
	h, err = ws.ReadHeader(r)
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return h, 0, nil
	}
	if err != nil {
		return h, 0, err
	}
	if h.Length > durable.MaxWebSocketMessage {
		return h, 0, fmt.Errorf("frame of %d bytes, over durable.MaxWebSocketMessage", h.Length)
	}
	return h, len(buf) - r.Len(), nil
}

// fillLocked reads more bytes into buf, until ctx's deadline.
func (c *WebSocket) fillLocked(ctx context.Context) error {
	if c.tmp == nil {
		c.tmp = make([]byte, 32<<10)
	}
	c.dmu.Lock()
	if err := ctx.Err(); err != nil {
		c.dmu.Unlock()
		return fmt.Errorf("durabletest: WebSocket receive: %w", context.Cause(ctx))
	}
	deadline, _ := ctx.Deadline()
	c.conn.SetReadDeadline(deadline)
	c.dmu.Unlock()
	n, err := c.conn.Read(c.tmp)
	c.buf = append(c.buf, c.tmp[:n]...)
	if n > 0 || err == nil {
		return nil // a read error shows again on the next read
	}
	var ne net.Error
	switch {
	case c.local.Load():
		c.endLocked(errClosedLocally)
		return errClosedLocally
	case errors.As(err, &ne) && ne.Timeout():
		if ctx.Err() != nil {
			return fmt.Errorf("durabletest: WebSocket receive: %w", context.Cause(ctx))
		}
		return fmt.Errorf("durabletest: WebSocket receive: %w", context.DeadlineExceeded)
	}
	ce := &CloseError{Code: durable.CloseAbnormal}
	c.endLocked(ce)
	return ce
}

// watch interrupts the reads of the current receive when ctx ends; the
// returned function stops it.
func (c *WebSocket) watch(ctx context.Context) (stop func()) {
	c.dmu.Lock()
	c.watchGen++
	gen := c.watchGen
	c.dmu.Unlock()
	stopAfter := context.AfterFunc(ctx, func() {
		c.dmu.Lock()
		defer c.dmu.Unlock()
		if c.watchGen == gen {
			c.conn.SetReadDeadline(time.Unix(1, 0))
		}
	})
	return func() {
		stopAfter()
		c.dmu.Lock()
		c.watchGen++
		c.dmu.Unlock()
	}
}

// failLocked ends the connection after a protocol error of the server,
// telling it with code.
func (c *WebSocket) failLocked(ctx context.Context, code int, msg string) error {
	c.writeClose(ctx, code, "")
	err := fmt.Errorf("durabletest: WebSocket: the server broke the protocol: %s", msg)
	c.endLocked(err)
	return err
}

// endLocked records how the connection ended and closes it.
func (c *WebSocket) endLocked(err error) {
	c.rerr = err
	c.frag, c.fragData = false, nil
	c.conn.Close()
}

func opName(op ws.OpCode) string {
	switch op {
	case ws.OpText:
		return "text"
	case ws.OpBinary:
		return "binary"
	case ws.OpContinuation:
		return "continuation"
	}
	return fmt.Sprintf("opcode %d", op)
}
