package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// A minimal RFC 6455 WebSocket endpoint: enough for the broadcast load
// (text messages, fragmentation, ping/pong, close) with no extensions, so
// the module needs no WebSocket dependency. The client side masks its
// frames; the server side (used by tests) does not.

// wsGUID is the RFC 6455 key suffix of Sec-WebSocket-Accept.
const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// maxWSMessage bounds a received message.
const maxWSMessage = 1 << 20

// WebSocket opcodes.
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// errWSClosed is returned by readMessage after a close frame.
var errWSClosed = errors.New("websocket closed by peer")

// wsConn is one WebSocket. readMessage must be called from one goroutine
// at a time; writeMessage may be called concurrently with it and with
// itself.
type wsConn struct {
	conn net.Conn
	br   *bufio.Reader
	mask bool // true on the client side

	wmu  sync.Mutex // guards wbuf and serializes writes to conn
	wbuf []byte

	rbuf []byte // frame payload buffer, owned by the reader
	msg  []byte // message being assembled, owned by the reader
}

func wsAccept(key string) string {
	h := sha1.Sum([]byte(key + wsGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

// dialWS opens a WebSocket to path on host (host:port), without TLS.
func dialWS(ctx context.Context, host, path string, timeout time.Duration) (*wsConn, error) {
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(timeout))
	var k [16]byte
	rand.Read(k[:])
	key := base64.StdEncoding.EncodeToString(k[:])
	req := "GET " + path + " HTTP/1.1\r\nHost: " + host +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key +
		"\r\nSec-WebSocket-Version: 13\r\nUser-Agent: durable-bench-load\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		conn.Close()
		return nil, err
	}
	br := bufio.NewReaderSize(conn, 64<<10)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("handshake: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		resp.Body.Close()
		conn.Close()
		return nil, fmt.Errorf("handshake: status %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	if !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") || resp.Header.Get("Sec-WebSocket-Accept") != wsAccept(key) {
		conn.Close()
		return nil, errors.New("handshake: bad Upgrade or Sec-WebSocket-Accept header")
	}
	conn.SetDeadline(time.Time{})
	return &wsConn{conn: conn, br: br, mask: true}, nil
}

// appendFrame appends one final frame to dst.
func appendFrame(dst []byte, op byte, payload []byte, mask bool) []byte {
	dst = append(dst, 0x80|op)
	var m byte
	if mask {
		m = 0x80
	}
	switch n := len(payload); {
	case n < 126:
		dst = append(dst, m|byte(n))
	case n <= 0xFFFF:
		dst = append(dst, m|126)
		dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	default:
		dst = append(dst, m|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	if !mask {
		return append(dst, payload...)
	}
	var key [4]byte
	binary.LittleEndian.PutUint32(key[:], mrand.Uint32())
	dst = append(dst, key[:]...)
	off := len(dst)
	dst = append(dst, payload...)
	for i := range payload {
		dst[off+i] ^= key[i&3]
	}
	return dst
}

// readFrame reads one frame into buf (grown as needed) and returns its
// payload, unmasked.
func readFrame(br *bufio.Reader, buf []byte) (fin bool, op byte, payload []byte, err error) {
	var h [14]byte
	if _, err := io.ReadFull(br, h[:2]); err != nil {
		return false, 0, nil, err
	}
	if h[0]&0x70 != 0 {
		return false, 0, nil, errors.New("websocket: reserved bits set (no extension was negotiated)")
	}
	fin, op = h[0]&0x80 != 0, h[0]&0x0F
	masked := h[1]&0x80 != 0
	n := uint64(h[1] & 0x7F)
	switch n {
	case 126:
		if _, err := io.ReadFull(br, h[2:4]); err != nil {
			return false, 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(h[2:4]))
	case 127:
		if _, err := io.ReadFull(br, h[2:10]); err != nil {
			return false, 0, nil, err
		}
		n = binary.BigEndian.Uint64(h[2:10])
	}
	if n > maxWSMessage {
		return false, 0, nil, fmt.Errorf("websocket: frame of %d bytes", n)
	}
	var key [4]byte
	if masked {
		if _, err := io.ReadFull(br, key[:]); err != nil {
			return false, 0, nil, err
		}
	}
	if uint64(cap(buf)) < n {
		buf = make([]byte, n)
	}
	payload = buf[:n]
	if _, err := io.ReadFull(br, payload); err != nil {
		return false, 0, nil, err
	}
	if masked {
		for i := range payload {
			payload[i] ^= key[i&3]
		}
	}
	return fin, op, payload, nil
}

// readMessage returns the next text or binary message. It answers pings,
// skips pongs, and returns errWSClosed after answering a close frame. The
// returned slice is valid until the next call.
func (c *wsConn) readMessage() (op byte, msg []byte, err error) {
	c.msg = c.msg[:0]
	op = 0
	for {
		fin, fop, p, err := readFrame(c.br, c.rbuf)
		if err != nil {
			return 0, nil, err
		}
		if cap(p) > cap(c.rbuf) {
			c.rbuf = p[:0]
		}
		switch fop {
		case opPing:
			if err := c.writeMessage(opPong, p); err != nil {
				return 0, nil, err
			}
			continue
		case opPong:
			continue
		case opClose:
			code := p
			if len(code) > 2 {
				code = code[:2]
			}
			c.writeMessage(opClose, code)
			return 0, nil, errWSClosed
		case opText, opBinary:
			if op != 0 {
				return 0, nil, errors.New("websocket: new message inside a fragmented one")
			}
			op = fop
		case opContinuation:
			if op == 0 {
				return 0, nil, errors.New("websocket: continuation without a message")
			}
		default:
			return 0, nil, fmt.Errorf("websocket: unknown opcode %#x", fop)
		}
		if fin && len(c.msg) == 0 {
			return op, p, nil // the common case: one frame, no copy
		}
		if len(c.msg)+len(p) > maxWSMessage {
			return 0, nil, fmt.Errorf("websocket: message over %d bytes", maxWSMessage)
		}
		c.msg = append(c.msg, p...)
		if fin {
			return op, c.msg, nil
		}
	}
}

// writeMessage sends p as one frame.
func (c *wsConn) writeMessage(op byte, p []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf = appendFrame(c.wbuf[:0], op, p, c.mask)
	_, err := c.conn.Write(c.wbuf)
	return err
}

// close sends a normal close frame, waiting at most timeout, and closes
// the connection without waiting for the peer's answer.
func (c *wsConn) close(timeout time.Duration) error {
	c.conn.SetWriteDeadline(time.Now().Add(timeout))
	werr := c.writeMessage(opClose, []byte{0x03, 0xE8}) // 1000: normal closure
	return errors.Join(werr, c.conn.Close())
}
