package socket

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// errWouldBlock is returned by a non-blocking read that found no data.
var errWouldBlock = errors.New("socket: would block")

// readBufSize is the size of the (pooled) read buffer a reader holds only
// while it reads.
const readBufSize = 4096

var readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBufSize) }}

const (
	modeNonblock = iota // poller mode, between frames: report errWouldBlock
	modeIdle            // reader goroutine mode, between frames: block
	modeFrame           // inside a frame or message: block with a deadline
)

// connReader reads the socket for a bufio.Reader.
type connReader struct {
	c    *Conn
	mode int
	// drained: the last read from the socket returned less than asked,
	// so the socket had nothing more at that moment.
	drained bool
}

func (r *connReader) Read(p []byte) (n int, err error) {
	c := r.c
	if len(c.pre) > 0 {
		n := copy(p, c.pre)
		c.pre = c.pre[n:]
		return n, nil
	}
	switch r.mode {
	case modeNonblock:
		n, err = readNonblock(c.raw, p)
		r.drained = n < len(p)
		return n, err
	case modeIdle:
		c.nc.SetReadDeadline(time.Time{})
	default:
		c.nc.SetReadDeadline(time.Now().Add(c.hub.cfg.ReadTimeout))
	}
	n, err = c.nc.Read(p)
	r.drained = n < len(p)
	return n, err
}

// serve reads and handles what the socket has to say. In poller mode
// (poll) it returns once no more bytes are waiting, reporting whether the
// socket is to be read again when more arrive; otherwise it returns only
// when the socket ends.
func (c *Conn) serve(poll bool) (more bool) {
	if c.stopReading() {
		return false
	}
	cr := &connReader{c: c}
	br := readerPool.Get().(*bufio.Reader)
	br.Reset(cr)
	defer func() {
		br.Reset(nil)
		readerPool.Put(br)
	}()
	for {
		cr.mode = modeIdle
		if poll {
			cr.mode = modeNonblock
		}
		if _, err := br.Peek(1); err != nil {
			if errors.Is(err, errWouldBlock) {
				return true
			}
			c.readFailed(err)
			return false
		}
		cr.mode = modeFrame
		if err := c.readOne(br); err != nil {
			c.readFailed(err)
			return false
		}
		if c.stopReading() {
			return false
		}
		if poll && cr.drained && br.Buffered() == 0 && len(c.pre) == 0 {
			// The last read emptied the socket: rather than a read that
			// would only say so (EAGAIN), stop. The poller reports bytes
			// that arrive afterwards.
			return true
		}
	}
}

// stopReading reports whether nothing more needs to be read.
func (c *Conn) stopReading() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.torn || c.peerClosed || c.failing
}

func protocolError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrProtocol, fmt.Sprintf(format, args...))
}

// readHeader reads and checks one frame header of a client.
func readHeader(br *bufio.Reader, buf []byte) (ws.Header, error) {
	h, err := ws.ReadHeaderBuffer(br, buf)
	if err != nil {
		if errors.Is(err, ws.ErrHeaderLengthMSB) || errors.Is(err, ws.ErrHeaderLengthUnexpected) {
			return h, protocolError("%v", err)
		}
		return h, err
	}
	switch {
	case !h.Masked:
		return h, protocolError("unmasked client frame")
	case h.Rsv != 0:
		return h, protocolError("reserved bits set (no extension was negotiated)")
	}
	switch h.OpCode {
	case ws.OpContinuation, ws.OpText, ws.OpBinary:
	case ws.OpClose, ws.OpPing, ws.OpPong:
		if !h.Fin || h.Length > 125 {
			return h, protocolError("fragmented or oversized control frame")
		}
	default:
		return h, protocolError("reserved opcode %d", h.OpCode)
	}
	return h, nil
}

// readPayload appends n unmasked payload bytes to dst, growing it only as
// bytes arrive (never on the peer's word alone).
func readPayload(br *bufio.Reader, dst []byte, n int64, mask [4]byte) ([]byte, error) {
	start := len(dst)
	for n > 0 {
		chunk := int(min(n, 64<<10))
		dst = slices.Grow(dst, chunk)
		m, err := io.ReadFull(br, dst[len(dst):len(dst)+chunk])
		dst = dst[:len(dst)+m]
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return dst, err
		}
		n -= int64(m)
	}
	ws.Cipher(dst[start:], mask, 0)
	return dst, nil
}

// readOne reads one control frame, or one whole data message with the
// control frames interleaved in it, and handles what it read.
func (c *Conn) readOne(br *bufio.Reader) error {
	var hbuf [ws.MaxHeaderSize - 2]byte
	var msg []byte
	var op ws.OpCode
	inMsg := false
	for {
		h, err := readHeader(br, hbuf[:])
		if err != nil {
			return err
		}
		if h.OpCode.IsControl() {
			var cbuf [125]byte
			p, err := readPayload(br, cbuf[:0], h.Length, h.Mask)
			if err != nil {
				return err
			}
			switch h.OpCode {
			case ws.OpPing:
				c.pong(p)
			case ws.OpClose:
				return c.peerClose(p)
			}
			if !inMsg {
				return nil
			}
			continue
		}
		if h.OpCode == ws.OpContinuation {
			if !inMsg {
				return protocolError("continuation frame without a message")
			}
		} else {
			if inMsg {
				return protocolError("new message inside a fragmented message")
			}
			op, inMsg = h.OpCode, true
		}
		if int64(len(msg))+h.Length > c.hub.cfg.MaxMessage {
			return fmt.Errorf("%w: %d bytes and more, maximum %d", ErrMessageTooBig, int64(len(msg))+h.Length, c.hub.cfg.MaxMessage)
		}
		if msg, err = readPayload(br, msg, h.Length, h.Mask); err != nil {
			return err
		}
		if !h.Fin {
			continue
		}
		if op == ws.OpText && !utf8.Valid(msg) {
			return ErrInvalidUTF8
		}
		if msg == nil {
			msg = []byte{}
		}
		c.onMessage(MessageType(op), msg)
		return nil
	}
}

// onMessage answers an auto-response request or hands the message to the
// object. Messages arriving while the socket closes are dropped.
func (c *Conn) onMessage(typ MessageType, data []byte) {
	c.hub.messages.Add(1)
	c.mu.Lock()
	if c.state != stateOpen {
		c.mu.Unlock()
		return
	}
	if typ == Text {
		r := c.reg
		r.mu.Lock()
		auto, req, resp := r.hasAuto, r.autoReq, r.autoResp
		r.mu.Unlock()
		if auto && string(data) == req {
			c.autoAt = c.hub.cfg.Clock.Now()
			watch := c.enqueueLocked(byte(Text), []byte(resp), false, nil)
			fx := c.effectsLocked()
			c.mu.Unlock()
			c.watch(watch)
			fx.run(c)
			return
		}
	}
	c.mu.Unlock()
	c.reg.handler.Message(c, typ, data)
}

func (c *Conn) pong(p []byte) {
	c.mu.Lock()
	if c.state != stateOpen {
		c.mu.Unlock()
		return
	}
	c.enqueueLocked(0xA, slices.Clone(p), false, nil)
	fx := c.effectsLocked()
	c.mu.Unlock()
	fx.run(c)
}

// ValidCloseCode reports whether code may be sent in a close frame (RFC
// 6455 §7.4): 1000–1003, 1007–1014 or 3000–4999.
func ValidCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// peerClose handles the peer's close frame: the runtime answers it (the
// closing handshake completes without the object) and, if the socket was
// open, the object gets a Close event.
func (c *Conn) peerClose(p []byte) error {
	code, reason := CloseNoStatus, ""
	switch {
	case len(p) == 1:
		return protocolError("1-byte close frame")
	case len(p) >= 2:
		code = int(binary.BigEndian.Uint16(p))
		reason = string(p[2:])
		if !ValidCloseCode(code) {
			return protocolError("close code %d", code)
		}
		if !utf8.ValidString(reason) {
			return ErrInvalidUTF8
		}
	}
	c.mu.Lock()
	c.peerClosed = true
	var ev *event
	var watch *Gate
	var fx effects
	switch {
	case c.openLocked():
		echo := code
		if echo == CloseNoStatus {
			echo = 0
		}
		watch = c.beginCloseLocked(echo, "", nil)
		ev = &event{kind: evClose, code: code, reason: reason, clean: true}
		fx = c.effectsLocked()
	case c.state == stateClosing && c.closeSent:
		fx.teardown = true // our close frame is out: the handshake is done
	}
	c.mu.Unlock()
	c.watch(watch)
	fx.run(c)
	c.deliver(ev)
	return nil
}

// readFailed ends the socket after a read error.
func (c *Conn) readFailed(err error) {
	var code int
	switch {
	case errors.Is(err, ErrProtocol):
		code = CloseProtocolError
	case errors.Is(err, ErrMessageTooBig):
		code = CloseMessageTooBig
	case errors.Is(err, ErrInvalidUTF8):
		code = CloseInvalidPayload
	}
	if code != 0 {
		c.mu.Lock()
		c.linger = true
		ev := c.failLocked(code, err)
		fx := c.effectsLocked()
		c.mu.Unlock()
		fx.run(c)
		c.deliver(ev)
		return
	}
	c.mu.Lock()
	wasOpen := c.state == stateOpen
	c.mu.Unlock()
	c.teardown()
	if !wasOpen {
		return
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		c.deliver(&event{kind: evError, err: &CloseError{Err: ErrTimeout}})
		return
	}
	c.deliver(&event{kind: evClose, code: CloseAbnormal})
}
