package socket_test

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
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/durable-go/durable/internal/clock"
	"github.com/durable-go/durable/internal/socket"
	"github.com/gobwas/ws"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recorder is a Handler that echoes text messages (behind gate, if set)
// and records every event.
type recorder struct {
	mu     sync.Mutex
	events []string
	gate   func() *socket.Gate
	notify chan struct{}
	hold   chan struct{} // if set, the message "hold" waits for it
}

func newRecorder() *recorder { return &recorder{notify: make(chan struct{}, 100)} }

func (r *recorder) add(s string) {
	r.mu.Lock()
	r.events = append(r.events, s)
	r.mu.Unlock()
	r.notify <- struct{}{}
}

func (r *recorder) Message(c *socket.Conn, typ socket.MessageType, data []byte) {
	r.add(fmt.Sprintf("message %d %s", typ, data))
	if r.hold != nil && string(data) == "hold" {
		<-r.hold
	}
	var g *socket.Gate
	if r.gate != nil {
		g = r.gate()
	}
	c.Send(typ, data, g)
}

func (r *recorder) Close(c *socket.Conn, code int, reason string, clean bool) {
	r.add(fmt.Sprintf("close %d %q %v", code, reason, clean))
}

func (r *recorder) Error(c *socket.Conn, err error) { r.add("error " + err.Error()) }

// wait returns the n-th event (1-based), waiting for it.
func (r *recorder) wait(t *testing.T, n int) string {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		r.mu.Lock()
		if len(r.events) >= n {
			e := r.events[n-1]
			r.mu.Unlock()
			return e
		}
		r.mu.Unlock()
		select {
		case <-r.notify:
		case <-deadline:
			t.Fatalf("no event %d; have %v", n, r.events)
		}
	}
}

// fixture serves upgrades into a hub under one object key.
type fixture struct {
	hub  *socket.Hub
	rec  *recorder
	srv  *httptest.Server
	last chan *socket.Conn
	gate *socket.Gate // accept gate, nil: none
}

func newFixture(t *testing.T, cfg socket.Config) *fixture {
	f := &fixture{hub: socket.NewHub(cfg), rec: newRecorder(), last: make(chan *socket.Conn, 10)}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := socket.CheckRequest(r); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		c, err := f.hub.Accept("obj", func() socket.Handler { return f.rec }, socket.AcceptOptions{Tags: r.URL.Query()["tag"], Gate: f.gate})
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		nc, pre, err := socket.Upgrade(w, r, nil, "")
		if err != nil {
			c.Abandon()
			return
		}
		c.Attach(nc, pre)
		f.last <- c
	}))
	t.Cleanup(func() {
		f.srv.Close()
		f.hub.Close(context.Background())
	})
	return f
}

type client struct {
	t    *testing.T
	conn net.Conn
	br   *bufio.Reader
}

func (f *fixture) dial(t *testing.T, query string) (*client, *socket.Conn) {
	t.Helper()
	conn, br, _, err := ws.Dialer{}.Dial(context.Background(), "ws"+strings.TrimPrefix(f.srv.URL, "http")+"/?"+query)
	if err != nil {
		t.Fatal(err)
	}
	if br == nil {
		br = bufio.NewReader(conn)
	}
	t.Cleanup(func() { conn.Close() })
	return &client{t: t, conn: conn, br: br}, <-f.last
}

func (c *client) write(fr ws.Frame) {
	c.t.Helper()
	if err := ws.WriteFrame(c.conn, ws.MaskFrame(fr)); err != nil {
		c.t.Fatal(err)
	}
}

func (c *client) read(d time.Duration) (ws.Frame, error) {
	c.conn.SetReadDeadline(time.Now().Add(d))
	return readServerFrame(c.br)
}

func (c *client) readText() string {
	c.t.Helper()
	fr, err := c.read(10 * time.Second)
	if err != nil {
		c.t.Fatal(err)
	}
	return string(fr.Payload)
}

func closeCode(fr ws.Frame) int {
	if fr.Header.OpCode != ws.OpClose || len(fr.Payload) < 2 {
		return 0
	}
	return int(binary.BigEndian.Uint16(fr.Payload))
}

var modes = []struct {
	name string
	cfg  socket.Config
}{
	{"poller", socket.Config{}},
	{"reader-goroutine", socket.Config{PerConnReader: true}},
}

func TestHub_EchoAndClose(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			f := newFixture(t, m.cfg)
			c, _ := f.dial(t, "")
			for i := range 3 {
				c.write(ws.NewTextFrame(fmt.Appendf(nil, "hi %d", i)))
				if got, want := c.readText(), fmt.Sprintf("hi %d", i); got != want {
					t.Errorf("echo = %q, want %q", got, want)
				}
			}
			c.write(ws.NewCloseFrame(ws.NewCloseFrameBody(1000, "done")))
			fr, err := c.read(5 * time.Second)
			if err != nil || closeCode(fr) != 1000 {
				t.Errorf("close answer = %v %v", fr.Header.OpCode, err)
			}
			if got, want := f.rec.wait(t, 4), `close 1000 "done" true`; got != want {
				t.Errorf("event = %s, want %s", got, want)
			}
			if n := len(f.hub.List("obj", "")); n != 0 {
				t.Errorf("listed after close: %d", n)
			}
		})
	}
}

// TestHub_BytesWhileHandling sends bytes while the handler of an earlier
// message runs, including a frame split over two writes: every message
// must still be read, in order, without the peer sending anything else.
func TestHub_BytesWhileHandling(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			f := newFixture(t, m.cfg)
			f.rec.hold = make(chan struct{})
			c, _ := f.dial(t, "")
			c.write(ws.NewTextFrame([]byte("hold")))
			if got := f.rec.wait(t, 1); got != "message 1 hold" {
				t.Fatalf("event = %s", got)
			}
			c.write(ws.NewTextFrame([]byte("second")))
			var b bytes.Buffer
			ws.WriteFrame(&b, ws.MaskFrame(ws.NewTextFrame([]byte("third, in two writes"))))
			half := b.Len() / 2
			c.conn.Write(b.Bytes()[:half])
			time.Sleep(20 * time.Millisecond) // let the poller see the bytes
			close(f.rec.hold)
			// Nothing more is sent until the bytes sent during the handler
			// are handled.
			for _, want := range []string{"hold", "second"} {
				if got := c.readText(); got != want {
					t.Fatalf("echo = %q, want %q", got, want)
				}
			}
			c.conn.Write(b.Bytes()[half:])
			if got, want := c.readText(), "third, in two writes"; got != want {
				t.Fatalf("echo = %q, want %q", got, want)
			}
			// And later bytes, once the reader is idle.
			time.Sleep(20 * time.Millisecond)
			c.write(ws.NewTextFrame([]byte("fourth")))
			if got := c.readText(); got != "fourth" {
				t.Fatalf("echo = %q, want fourth", got)
			}
		})
	}
}

func TestHub_BytesWithTheHandshake(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			f := newFixture(t, m.cfg)
			// Send the request and a first frame in one write, so the frame
			// sits in the server's buffer when the socket is attached.
			conn, err := net.Dial("tcp", strings.TrimPrefix(f.srv.URL, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			frame, _ := ws.CompileFrame(ws.MaskFrame(ws.NewTextFrame([]byte("early"))))
			req := "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
				"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
			conn.Write(append([]byte(req), frame...))
			<-f.last
			if got := f.rec.wait(t, 1); got != "message 1 early" {
				t.Errorf("event = %q", got)
			}
		})
	}
}

func TestHub_PerObjectLimit(t *testing.T) {
	// The real limit, with pending sockets (no file descriptors needed).
	h := socket.NewHub(socket.Config{})
	defer h.Close(context.Background())
	rec := newRecorder()
	mk := func() socket.Handler { return rec }
	var first *socket.Conn
	for i := range socket.MaxPerObject {
		c, err := h.Accept("full", mk, socket.AcceptOptions{})
		if err != nil {
			t.Fatalf("socket %d: %v", i+1, err)
		}
		if first == nil {
			first = c
		}
	}
	_, err := h.Accept("full", mk, socket.AcceptOptions{})
	var le *socket.LimitError
	if !errors.As(err, &le) || le.Limit != socket.LimitSockets || le.Max != 32768 || le.Got != 32769 {
		t.Fatalf("socket 32769: err = %v", err)
	}
	if _, err := h.Accept("other", mk, socket.AcceptOptions{}); err != nil {
		t.Errorf("another object is not limited: %v", err)
	}
	first.Abandon()
	if _, err := h.Accept("full", mk, socket.AcceptOptions{}); err != nil {
		t.Errorf("after one left: %v", err)
	}
}

func TestHub_TagLimits(t *testing.T) {
	h := socket.NewHub(socket.Config{})
	defer h.Close(context.Background())
	mk := func() socket.Handler { return newRecorder() }
	for _, tc := range []struct {
		tags []string
		ok   bool
	}{
		{make([]string, 10), true},
		{make([]string, 11), false},
		{[]string{strings.Repeat("ß", 256)}, true},
		{[]string{strings.Repeat("ß", 257)}, false},
	} {
		_, err := h.Accept("t", mk, socket.AcceptOptions{Tags: tc.tags})
		if (err == nil) != tc.ok {
			t.Errorf("%d tags of %d characters: err = %v, want ok=%v", len(tc.tags), len([]rune(tc.tags[0])), err, tc.ok)
		}
	}
}

func TestGate_HoldsAndOrders(t *testing.T) {
	f := newFixture(t, socket.Config{})
	c, conn := f.dial(t, "")
	g1, g2 := socket.NewGate(), socket.NewGate()
	conn.Send(socket.Text, []byte("one"), g1)
	conn.Send(socket.Text, []byte("two"), g2)
	conn.Send(socket.Text, []byte("three"), nil)
	g2.Open()
	if fr, err := c.read(50 * time.Millisecond); err == nil {
		t.Fatalf("%q left before the first gate opened", fr.Payload)
	}
	g1.Open()
	for _, want := range []string{"one", "two", "three"} {
		if got := c.readText(); got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
	g3 := socket.NewGate()
	conn.Send(socket.Text, []byte("lost"), g3)
	g3.Drop(nil)
	fr, err := c.read(5 * time.Second)
	if err != nil || closeCode(fr) != socket.CloseInternalError {
		t.Errorf("after a dropped gate: %v %q %v, want close 1011", fr.Header.OpCode, fr.Payload, err)
	}
	if got := f.rec.wait(t, 1); !strings.Contains(got, "output dropped") {
		t.Errorf("event = %q", got)
	}
}

func TestHub_AcceptGate(t *testing.T) {
	f := newFixture(t, socket.Config{})
	f.gate = socket.NewGate()
	f.gate.Open()
	_, conn := f.dial(t, "")
	// An abandoned socket whose accept was released reports an abnormal
	// close; one whose accept was dropped vanishes silently.
	c1, _ := f.hub.Accept("obj", func() socket.Handler { return f.rec }, socket.AcceptOptions{Gate: f.gate})
	c1.Abandon()
	if got := f.rec.wait(t, 1); got != `close 1006 "" false` {
		t.Errorf("event = %q", got)
	}
	g := socket.NewGate()
	c2, _ := f.hub.Accept("obj", func() socket.Handler { return f.rec }, socket.AcceptOptions{Gate: g})
	c2.Send(socket.Text, []byte("welcome"), g)
	if n := len(f.hub.List("obj", "")); n != 2 {
		t.Errorf("listed = %d, want 2", n)
	}
	g.Drop(nil)
	c2.Abandon()
	if n := len(f.hub.List("obj", "")); n != 1 || f.hub.List("obj", "")[0] != conn {
		t.Errorf("listed after the dropped accept = %d", n)
	}
	time.Sleep(20 * time.Millisecond)
	f.rec.mu.Lock()
	defer f.rec.mu.Unlock()
	if len(f.rec.events) != 1 {
		t.Errorf("events = %v", f.rec.events)
	}
}

func TestHub_CloseTimeout(t *testing.T) {
	fc := clock.NewFake(time.Unix(0, 0))
	f := newFixture(t, socket.Config{Clock: fc})
	c, conn := f.dial(t, "")
	if err := conn.Close(4000, "bye", nil); err != nil {
		t.Fatal(err)
	}
	if err := conn.Send(socket.Text, []byte("x"), nil); !errors.Is(err, socket.ErrClosed) {
		t.Errorf("Send after Close: %v", err)
	}
	fr, err := c.read(5 * time.Second)
	if err != nil || closeCode(fr) != 4000 {
		t.Fatalf("close frame: %v %v", fr.Header.OpCode, err)
	}
	// The peer never answers: the connection is dropped after CloseTimeout.
	deadline := time.Now().Add(5 * time.Second)
	for fc.Pending() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	fc.Advance(socket.DefaultCloseTimeout)
	if _, err := c.read(5 * time.Second); err == nil {
		t.Error("connection still open after the close timeout")
	}
	if n := f.hub.Count(); n != 0 {
		t.Errorf("sockets left = %d", n)
	}
}

func TestHub_ReadTimeoutMidFrame(t *testing.T) {
	f := newFixture(t, socket.Config{ReadTimeout: 50 * time.Millisecond})
	c, _ := f.dial(t, "")
	frame, _ := ws.CompileFrame(ws.MaskFrame(ws.NewTextFrame([]byte("truncated"))))
	c.conn.Write(frame[:8]) // header and a little payload, then silence
	if got := f.rec.wait(t, 1); !strings.Contains(got, "timed out") {
		t.Errorf("event = %q", got)
	}
	// An idle socket (between frames) is never timed out.
	c2, _ := f.dial(t, "")
	time.Sleep(120 * time.Millisecond)
	c2.write(ws.NewTextFrame([]byte("still here")))
	if got := c2.readText(); got != "still here" {
		t.Errorf("idle socket: %q", got)
	}
}

func TestHub_CloseWaitsForGoroutines(t *testing.T) {
	f := newFixture(t, socket.Config{})
	var clients []*client
	for range 5 {
		c, _ := f.dial(t, "")
		clients = append(clients, c)
	}
	f.hub.Close(context.Background())
	for _, c := range clients {
		fr, err := c.read(5 * time.Second)
		if err != nil || closeCode(fr) != socket.CloseGoingAway {
			t.Errorf("close frame at shutdown: %v %v", fr.Header.OpCode, err)
		}
	}
	if _, err := f.hub.Accept("obj", func() socket.Handler { return f.rec }, socket.AcceptOptions{}); !errors.Is(err, socket.ErrHubClosed) {
		t.Errorf("Accept after Close: %v", err)
	}
}

func TestCheckOrigin(t *testing.T) {
	for _, tc := range []struct {
		host, origin string
		patterns     []string
		ok           bool
	}{
		{"a.com", "", nil, true},
		{"a.com", "https://a.com", nil, true},
		{"a.com:8080", "http://A.com:8080", nil, true},
		{"a.com", "https://b.com", nil, false},
		{"a.com", "https://b.com", []string{"b.com"}, true},
		{"a.com", "https://x.b.com", []string{"*.b.com"}, true},
		{"a.com", "http://x.b.com", []string{"https://*.b.com"}, false},
		{"a.com", "null", nil, false},
		{"a.com", "https://b.com", []string{"["}, false},
	} {
		r := httptest.NewRequest("GET", "http://"+tc.host+"/", nil)
		if tc.origin != "" {
			r.Header.Set("Origin", tc.origin)
		}
		err := socket.CheckOrigin(r, tc.patterns)
		if (err == nil) != tc.ok {
			t.Errorf("host %s origin %q patterns %v: err = %v", tc.host, tc.origin, tc.patterns, err)
		}
	}
}

// readServerFrame reads one unmasked server frame (tests trust the server
// not to declare more than 64 MiB).
func readServerFrame(r io.Reader) (ws.Frame, error) {
	h, err := ws.ReadHeader(r)
	if err != nil {
		return ws.Frame{}, err
	}
	if h.Length > 64<<20 {
		return ws.Frame{}, fmt.Errorf("frame of %d bytes", h.Length)
	}
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(r, p); err != nil {
		return ws.Frame{}, err
	}
	return ws.Frame{Header: h, Payload: p}, nil
}
