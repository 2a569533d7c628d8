package durable_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durable-go/durable"
	"github.com/durable-go/durable/internal/clock"
	"github.com/gobwas/ws"
)

// WSRoom is the test object of the WebSocket tests: its handlers obey small
// text commands.
type WSRoom struct {
	st  *durable.State
	env *wsEnv
	sql *durable.SQL
}

type wsEnv struct {
	built  atomic.Int64
	events chan string // Close and Error events, as text
	msgs   atomic.Int64
}

func newWSEnv() *wsEnv { return &wsEnv{events: make(chan string, 1000)} }

// emit records an event; it gives up when ctx ends (at shutdown).
func (e *wsEnv) emit(ctx context.Context, s string) {
	select {
	case e.events <- s:
	case <-ctx.Done():
	}
}

func newWSRoom(st *durable.State, e *wsEnv) (*WSRoom, error) {
	e.built.Add(1)
	r := &WSRoom{st: st, env: e, sql: st.Storage().SQL()}
	_, err := r.sql.Exec(`CREATE TABLE IF NOT EXISTS log (msg TEXT)`)
	return r, err
}

func (r *WSRoom) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	q := req.URL.Query()
	switch req.URL.Path {
	case "/ws":
		o := durable.AcceptOptions{Tags: q["tag"], OriginPatterns: q["origin"], Subprotocols: q["proto"]}
		ws, err := r.st.AcceptWebSocketWith(w, req, o)
		if err != nil {
			code := http.StatusInternalServerError
			var le *durable.WebSocketLimitError
			switch {
			case errors.Is(err, durable.ErrNotWebSocket), errors.As(err, &le):
				code = http.StatusBadRequest
			case errors.Is(err, durable.ErrWebSocketOrigin):
				code = http.StatusForbidden
			}
			http.Error(w, err.Error(), code)
			return
		}
		if nick := q.Get("nick"); nick != "" {
			if err := ws.SetAttachment(map[string]string{"nick": nick}); err != nil {
				panic(err)
			}
		}
		if q.Get("welcome") != "" {
			if _, err := r.sql.Exec(`INSERT INTO log VALUES ('welcome')`); err != nil {
				panic(err)
			}
			ws.SendText(req.Context(), "welcome")
		}
		if q.Get("fail") != "" {
			panic("accept then fail")
		}
	case "/hello":
		if _, err := r.sql.Exec(`INSERT INTO log VALUES ('hello')`); err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.Header().Set("X-Object", "WSRoom")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, "hello %s %s", req.Method, req.URL.RawQuery)
	case "/body":
		n, err := req.Body.Read(make([]byte, 1))
		_ = n
		fmt.Fprintf(w, "%d %v", req.ContentLength, err)
	case "/big":
		n, _ := strconv.Atoi(q.Get("n"))
		if _, err := w.Write(make([]byte, n)); err != nil {
			w.Write([]byte(err.Error())) // rejected too
			r.env.emit(req.Context(), "big: "+err.Error())
		}
	case "/sockets":
		fmt.Fprint(w, len(r.st.WebSockets(q.Get("tag"))))
	case "/name":
		n, _ := r.st.Name()
		fmt.Fprint(w, n, " ", req.URL.Path)
	case "/panic":
		panic("boom")
	default:
		http.NotFound(w, req)
	}
}

func (r *WSRoom) WebSocketMessage(ctx context.Context, ws *durable.WebSocket, msg durable.Message) error {
	r.env.msgs.Add(1)
	if msg.Type == durable.BinaryMessage {
		return ws.SendBinary(ctx, msg.Data)
	}
	cmd, arg, _ := strings.Cut(msg.Text(), " ")
	switch cmd {
	case "echo":
		return ws.SendText(ctx, arg)
	case "all":
		for _, o := range r.st.WebSockets("") {
			o.SendText(ctx, arg)
		}
	case "tag":
		tag, text, _ := strings.Cut(arg, " ")
		for _, o := range r.st.WebSockets(tag) {
			o.SendText(ctx, text)
		}
	case "who":
		var nicks []string
		for _, o := range r.st.WebSockets("") {
			var a map[string]string
			if err := o.Attachment(&a); err == nil {
				nicks = append(nicks, a["nick"])
			} else {
				nicks = append(nicks, "?")
			}
		}
		return ws.SendText(ctx, strings.Join(nicks, ","))
	case "tags":
		return ws.SendText(ctx, strings.Join(ws.Tags(), ","))
	case "proto":
		return ws.SendText(ctx, ws.Protocol())
	case "attach":
		n, _ := strconv.Atoi(arg)
		if err := ws.SetAttachment(make([]byte, n)); err != nil {
			return ws.SendText(ctx, "error: "+err.Error())
		}
		var b []byte
		ws.Attachment(&b)
		return ws.SendText(ctx, "ok "+strconv.Itoa(len(b)))
	case "close":
		code, reason, _ := strings.Cut(arg, " ")
		n, _ := strconv.Atoi(code)
		if err := ws.Close(ctx, n, reason); err != nil {
			return ws.SendText(ctx, "error: "+err.Error())
		}
		if err := ws.SendText(ctx, "after close"); !errors.Is(err, durable.ErrWebSocketClosed) {
			r.env.emit(ctx, fmt.Sprintf("send after close: %v", err))
		}
	case "log": // a chat message: stored, then broadcast
		if _, err := r.sql.Exec(`INSERT INTO log VALUES (?)`, arg); err != nil {
			return err
		}
		for _, o := range r.st.WebSockets("") {
			o.SendText(ctx, arg)
		}
	case "write":
		if _, err := r.sql.Exec(`INSERT INTO log VALUES (?)`, arg); err != nil {
			return err
		}
		return ws.SendText(ctx, "wrote "+arg)
	case "count":
		var n int64
		cur, err := r.sql.Exec(`SELECT count(*) FROM log`)
		if err != nil {
			return err
		}
		if err := cur.One(&n); err != nil {
			return err
		}
		return ws.SendText(ctx, strconv.FormatInt(n, 10))
	case "panic":
		ws.SendText(ctx, "before panic")
		panic("boom")
	case "fail":
		ws.SendText(ctx, "sent before error")
		return errors.New("handler failed")
	case "built":
		return ws.SendText(ctx, strconv.FormatInt(r.env.built.Load(), 10))
	case "wait":
		<-ctx.Done()
		ws.SendText(ctx, "dropped")
		return context.Cause(ctx)
	case "timeout":
		d, _ := time.ParseDuration(arg)
		if err := r.st.SetWebSocketEventTimeout(d); err != nil {
			return ws.SendText(ctx, "error: "+err.Error())
		}
		return ws.SendText(ctx, "ok "+r.st.WebSocketEventTimeout().String())
	case "auto":
		req, resp, _ := strings.Cut(arg, " ")
		var p *durable.AutoResponse
		if req != "" {
			p = &durable.AutoResponse{Request: strings.ReplaceAll(req, "_", " "), Response: resp}
		}
		if err := r.st.SetWebSocketAutoResponse(p); err != nil {
			return ws.SendText(ctx, "error: "+err.Error())
		}
		return ws.SendText(ctx, "ok")
	case "autots":
		ts, ok := ws.AutoResponseTimestamp()
		return ws.SendText(ctx, fmt.Sprint(ok, " ", ts.UnixNano()))
	case "big":
		n, _ := strconv.Atoi(arg)
		if err := ws.SendBinary(ctx, make([]byte, n)); err != nil {
			return ws.SendText(ctx, "error: "+err.Error())
		}
	case "flood":
		parts := strings.Fields(arg)
		n, _ := strconv.Atoi(parts[1])
		size, _ := strconv.Atoi(parts[2])
		for i := range n {
			for _, o := range r.st.WebSockets(parts[0]) {
				if err := o.SendBinary(ctx, make([]byte, size)); err != nil {
					return ws.SendText(ctx, fmt.Sprintf("%d sent: %v", i, err))
				}
			}
		}
		return ws.SendText(ctx, "all sent")
	case "len":
		return ws.SendText(ctx, strconv.Itoa(len(arg)))
	}
	return nil
}

func (r *WSRoom) WebSocketClose(ctx context.Context, ws *durable.WebSocket, code int, reason string, wasClean bool) error {
	var a map[string]string
	ws.Attachment(&a)
	r.env.emit(ctx, fmt.Sprintf("close %d %q %v %s listed=%d", code, reason, wasClean, a["nick"], len(r.st.WebSockets(""))))
	return nil
}

func (r *WSRoom) WebSocketError(ctx context.Context, ws *durable.WebSocket, err error) error {
	r.env.emit(ctx, "error "+err.Error())
	return nil
}

// wsFixture is a runtime with WSRoom objects behind an HTTP server.
type wsFixture struct {
	rt  *durable.Runtime
	ns  *durable.Namespace[WSRoom]
	env *wsEnv
	srv *httptest.Server
}

func newWSFixture(t testing.TB, opts durable.Options) *wsFixture {
	t.Helper()
	if opts.Durability == 0 && opts.Clock == nil {
		opts.Durability = durable.NoSync
	}
	f := &wsFixture{rt: openRuntime(t, opts), env: newWSEnv()}
	return f.serve(t)
}

func (f *wsFixture) serve(t testing.TB) *wsFixture {
	f.ns = durable.MustRegister(f.rt, "WSRoom", newWSRoom, f.env)
	f.srv = httptest.NewServer(durable.Route(f.ns))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *wsFixture) url(path string) string {
	return "ws" + strings.TrimPrefix(f.srv.URL, "http") + path
}

// event waits for the next Close or Error event.
func (f *wsFixture) event(t testing.TB) string {
	t.Helper()
	select {
	case e := <-f.env.events:
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("no event")
		return ""
	}
}

// hibernate evicts every object. An object stays in use for a moment after
// its reply is sent (until its event's turn is fully released), so it
// retries until nothing is live.
func hibernate(t testing.TB, rt *durable.Runtime) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		rt.EvictIdle()
		if rt.Stats().Live == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("objects still live: %d", rt.Stats().Live)
		}
		time.Sleep(time.Millisecond)
	}
}

// eventMatching waits for an event containing substr, skipping others.
func (f *wsFixture) eventMatching(t testing.TB, substr string) string {
	t.Helper()
	for {
		if e := f.event(t); strings.Contains(e, substr) {
			return e
		}
	}
}

func (f *wsFixture) noEvent(t testing.TB) {
	t.Helper()
	select {
	case e := <-f.env.events:
		t.Fatalf("unexpected event %q", e)
	case <-time.After(50 * time.Millisecond):
	}
}

// wsClient is a minimal RFC 6455 client for tests.
type wsClient struct {
	t    testing.TB
	conn net.Conn
	br   *bufio.Reader
}

func dialWS(t testing.TB, url string, header http.Header) *wsClient {
	t.Helper()
	c, err := tryDialWS(url, header)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	c.t = t
	t.Cleanup(func() { c.conn.Close() })
	return c
}

func tryDialWS(url string, header http.Header) (*wsClient, error) {
	d := ws.Dialer{Timeout: 5 * time.Second}
	if header != nil {
		d.Header = ws.HandshakeHeaderHTTP(header)
	}
	conn, br, _, err := d.Dial(context.Background(), url)
	if err != nil {
		return nil, err
	}
	if br == nil {
		br = bufio.NewReader(conn)
	}
	return &wsClient{conn: conn, br: br}, nil
}

func (c *wsClient) write(f ws.Frame) {
	c.t.Helper()
	c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := ws.WriteFrame(c.conn, ws.MaskFrame(f)); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

func (c *wsClient) sendText(s string) { c.t.Helper(); c.write(ws.NewTextFrame([]byte(s))) }

// read reads the next frame within d.
func (c *wsClient) read(d time.Duration) (ws.Frame, error) {
	c.conn.SetReadDeadline(time.Now().Add(d))
	return readServerFrame(c.br)
}

func (c *wsClient) readText() string {
	c.t.Helper()
	f, err := c.read(10 * time.Second)
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	if f.Header.OpCode != ws.OpText {
		c.t.Fatalf("got frame %v %q, want text", f.Header.OpCode, f.Payload)
	}
	return string(f.Payload)
}

// call sends a command and returns the text reply.
func (c *wsClient) call(cmd string) string {
	c.t.Helper()
	c.sendText(cmd)
	return c.readText()
}

// expectClose reads until a close frame and returns its code and reason.
func (c *wsClient) expectClose() (int, string) {
	c.t.Helper()
	for {
		f, err := c.read(10 * time.Second)
		if err != nil {
			c.t.Fatalf("waiting for a close frame: %v", err)
		}
		if f.Header.OpCode == ws.OpClose {
			if len(f.Payload) < 2 {
				return 1005, ""
			}
			return int(binary.BigEndian.Uint16(f.Payload)), string(f.Payload[2:])
		}
	}
}

// expectEOF checks that the server drops the connection.
func (c *wsClient) expectEOF() {
	c.t.Helper()
	for {
		_, err := c.read(10 * time.Second)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				c.t.Fatalf("connection not closed: %v", err)
			}
			return
		}
	}
}

func (c *wsClient) closeWith(code int, reason string) {
	c.t.Helper()
	c.write(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusCode(code), reason)))
}

func TestWebSocket_MessagesAndClose(t *testing.T) {
	f := newWSFixture(t, durable.Options{})
	c := dialWS(t, f.url("/r1/ws?nick=ann"), nil)
	if got := c.call("echo hi"); got != "hi" {
		t.Errorf("echo = %q, want hi", got)
	}
	c.write(ws.NewBinaryFrame([]byte{0, 1, 2, 255}))
	fr, err := c.read(5 * time.Second)
	if err != nil || fr.Header.OpCode != ws.OpBinary || string(fr.Payload) != "\x00\x01\x02\xff" {
		t.Errorf("binary echo = %v %q %v", fr.Header.OpCode, fr.Payload, err)
	}
	// A fragmented message with a ping in the middle.
	c.write(ws.NewFrame(ws.OpText, false, []byte("echo frag")))
	c.write(ws.NewPingFrame([]byte("p")))
	c.write(ws.NewFrame(ws.OpContinuation, false, []byte("men")))
	c.write(ws.NewFrame(ws.OpContinuation, true, []byte("ted")))
	fr, err = c.read(5 * time.Second)
	if err != nil || fr.Header.OpCode != ws.OpPong || string(fr.Payload) != "p" {
		t.Errorf("pong = %v %q %v", fr.Header.OpCode, fr.Payload, err)
	}
	if got := c.readText(); got != "fragmented" {
		t.Errorf("fragmented echo = %q", got)
	}
	// The client closes: the runtime answers the close frame itself, then
	// the object hears about it.
	c.closeWith(4001, "bye")
	code, reason := c.expectClose()
	if code != 4001 || reason != "" {
		t.Errorf("close echo = %d %q, want 4001", code, reason)
	}
	c.expectEOF()
	if got, want := f.event(t), `close 4001 "bye" true ann listed=0`; got != want {
		t.Errorf("event = %s, want %s", got, want)
	}
}

func TestWebSocket_AbnormalClose(t *testing.T) {
	f := newWSFixture(t, durable.Options{})
	c := dialWS(t, f.url("/r1/ws?nick=bob"), nil)
	c.call("echo x")
	c.conn.Close()
	if got, want := f.event(t), `close 1006 "" false bob listed=0`; got != want {
		t.Errorf("event = %s, want %s", got, want)
	}
}

func TestWebSocket_ObjectCloses(t *testing.T) {
	f := newWSFixture(t, durable.Options{})
	c := dialWS(t, f.url("/r1/ws"), nil)
	c.sendText("close 4000 done")
	code, reason := c.expectClose()
	if code != 4000 || reason != "done" {
		t.Errorf("close = %d %q, want 4000 done", code, reason)
	}
	c.closeWith(4000, "")
	c.expectEOF()
	f.noEvent(t) // no Close event for a close the object made; Send after it failed as it should

	c2 := dialWS(t, f.url("/r1/ws"), nil)
	for _, tc := range []struct {
		cmd, want string
	}{
		{"close 999 x", "error: durable: bad argument: close code 999"},
		{"close 1005 x", "error: durable: bad argument: close code 1005"},
		{"close 4000 " + strings.Repeat("r", durable.MaxCloseReason+1), "error: websocket: limit exceeded: bytes of a close reason is 124, maximum 123"},
	} {
		if got := c2.call(tc.cmd); got != tc.want {
			t.Errorf("%.20s: got %q, want %q", tc.cmd, got, tc.want)
		}
	}
	c2.sendText("close 4000 " + strings.Repeat("r", durable.MaxCloseReason))
	if code, reason := c2.expectClose(); code != 4000 || len(reason) != durable.MaxCloseReason {
		t.Errorf("close at the reason limit = %d, %d bytes", code, len(reason))
	}
}

func TestWebSocket_TagsAndList(t *testing.T) {
	f := newWSFixture(t, durable.Options{})
	a := dialWS(t, f.url("/r1/ws?tag=red&tag=blue&nick=a"), nil)
	b := dialWS(t, f.url("/r1/ws?tag=blue&nick=b"), nil)
	c := dialWS(t, f.url("/r1/ws?nick=c"), nil)
	other := dialWS(t, f.url("/r2/ws?tag=blue&nick=z"), nil)
	if got := a.call("tags"); got != "red,blue" {
		t.Errorf("tags = %q", got)
	}
	if got := c.call("who"); got != "a,b,c" {
		t.Errorf("who = %q, want a,b,c (accept order, other rooms left out)", got)
	}
	c.sendText("tag blue hello blues")
	if got := a.readText(); got != "hello blues" {
		t.Errorf("a got %q", got)
	}
	if got := b.readText(); got != "hello blues" {
		t.Errorf("b got %q", got)
	}
	if got := other.call("who"); got != "z" {
		t.Errorf("other room who = %q", got)
	}
	b.closeWith(1000, "")
	if got, want := f.event(t), `close 1000 "" true b listed=2`; got != want {
		t.Errorf("event = %s, want %s", got, want)
	}
	if got := c.call("who"); got != "a,c" {
		t.Errorf("who after close = %q", got)
	}
}

func TestWebSocket_Hibernation(t *testing.T) {
	f := newWSFixture(t, durable.Options{})
	ann := dialWS(t, f.url("/room/ws?tag=member&nick=ann"), nil)
	bob := dialWS(t, f.url("/room/ws?tag=member&nick=bob"), nil)
	ann.sendText("all hi from ann")
	ann.readText()
	if got := bob.readText(); got != "hi from ann" {
		t.Fatalf("bob got %q", got)
	}
	if got := ann.call("write one"); got != "wrote one" {
		t.Fatalf("write = %q", got)
	}
	built := f.env.built.Load()
	hibernate(t, f.rt)
	// The sockets stayed open. The next message rebuilds the object.
	bob.sendText("all back from bob")
	if got := ann.readText(); got != "back from bob" {
		t.Fatalf("ann got %q after hibernation", got)
	}
	bob.readText()
	if got := f.env.built.Load(); got != built+1 {
		t.Errorf("constructor runs = %d, want %d", got, built+1)
	}
	if got := bob.call("who"); got != "ann,bob" {
		t.Errorf("attachments after hibernation: who = %q", got)
	}
	if got := ann.call("tags"); got != "member" {
		t.Errorf("tags after hibernation = %q", got)
	}
	if got := ann.call("count"); got != "1" {
		t.Errorf("rows after hibernation = %q", got)
	}
	// Hibernate again mid-conversation, many times.
	for i := range 5 {
		hibernate(t, f.rt)
		if got := ann.call("echo " + strconv.Itoa(i)); got != strconv.Itoa(i) {
			t.Fatalf("round %d: %q", i, got)
		}
	}
	// A close while hibernated wakes the object to hear it.
	hibernate(t, f.rt)
	bob.closeWith(1000, "gone")
	if got, want := f.event(t), `close 1000 "gone" true bob listed=1`; got != want {
		t.Errorf("event = %s, want %s", got, want)
	}
}

func TestWebSocket_HibernatesAfterIdleTimeout(t *testing.T) {
	fc := clock.NewFake(time.Unix(1_000_000, 0))
	f := newWSFixture(t, durable.Options{Durability: durable.NoSync, Clock: fc})
	c := dialWS(t, f.url("/idle/ws?nick=zoe"), nil)
	if got := c.call("echo 1"); got != "1" {
		t.Fatal(got)
	}
	// No event for the idle time: the sweep evicts the object; its socket
	// stays connected.
	for i := 0; f.rt.Stats().Live != 0; i++ {
		if i == 100 {
			t.Fatal("not evicted after the idle timeout")
		}
		fc.Advance(durable.DefaultIdleTimeout / 4)
		time.Sleep(time.Millisecond)
	}
	if got := c.call("who"); got != "zoe" {
		t.Errorf("after hibernation: %q", got)
	}
	if got := f.env.built.Load(); got != 2 {
		t.Errorf("constructor runs = %d, want 2", got)
	}
}

func TestWebSocket_SurvivesReset(t *testing.T) {
	f := newWSFixture(t, durable.Options{})
	c := dialWS(t, f.url("/r/ws?nick=x"), nil)
	other := dialWS(t, f.url("/r/ws?nick=y"), nil)
	c.sendText("panic")
	// The panicking turn's output is dropped, and the socket it was for is
	// closed so the client knows to resync.
	if code, _ := c.expectClose(); code != durable.CloseInternalError {
		t.Errorf("close code = %d, want %d", code, durable.CloseInternalError)
	}
	if got := f.event(t); !strings.Contains(got, "output dropped") {
		t.Errorf("event = %q, want the output-lost error", got)
	}
	// The other socket of the reset object is still there.
	if got := other.call("who"); got != "y" {
		t.Errorf("who after reset = %q", got)
	}
	// A handler error is not a reset: its output still goes out.
	if got := other.call("fail"); got != "sent before error" {
		t.Errorf("after handler error = %q", got)
	}
}

func TestWebSocket_OutputGate(t *testing.T) {
	var (
		mu      sync.Mutex
		holding bool
		release = make(chan struct{})
		entered = make(chan struct{}, 10)
	)
	dir := t.TempDir()
	rt, err := durable.OpenWithSyncHooks(durable.Options{Dir: dir}, func(f *os.File) error {
		mu.Lock()
		h, rel := holding, release
		mu.Unlock()
		if h && strings.Contains(f.Name(), "WSRoom") {
			entered <- struct{}{}
			<-rel
		}
		return f.Sync()
	}, nil, -1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Shutdown(context.Background()) })
	f := &wsFixture{rt: rt, env: newWSEnv()}
	f.serve(t)
	c := dialWS(t, f.url("/g/ws"), nil)
	c.call("write warmup")

	mu.Lock()
	holding = true
	mu.Unlock()
	c.sendText("write held")
	<-entered // the fsync of the turn's write is in progress
	if fr, err := c.read(100 * time.Millisecond); err == nil {
		t.Fatalf("frame %q left before the write was durable", fr.Payload)
	}
	mu.Lock()
	holding = false
	mu.Unlock()
	close(release)
	if got := c.readText(); got != "wrote held" {
		t.Errorf("after fsync: %q", got)
	}
	// An HTTP response waits the same way.
	mu.Lock()
	holding = true
	release = make(chan struct{})
	mu.Unlock()
	done := make(chan string)
	go func() {
		resp, err := http.Get(f.srv.URL + "/g/hello")
		if err != nil {
			done <- err.Error()
			return
		}
		resp.Body.Close()
		done <- resp.Status
	}()
	<-entered
	select {
	case s := <-done:
		t.Fatalf("HTTP response %q left before the write was durable", s)
	case <-time.After(100 * time.Millisecond):
	}
	mu.Lock()
	holding = false
	close(release)
	mu.Unlock()
	if got := <-done; got != "201 Created" {
		t.Errorf("status = %q", got)
	}
}

func TestWebSocket_OutputDroppedWhenNotDurable(t *testing.T) {
	var fail atomic.Bool
	rt, err := durable.OpenWithSyncHooks(durable.Options{Dir: t.TempDir()}, func(f *os.File) error {
		if fail.Load() && strings.Contains(f.Name(), "WSRoom") {
			return errors.New("disk on fire")
		}
		return f.Sync()
	}, nil, -1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Shutdown(context.Background()) })
	f := &wsFixture{rt: rt, env: newWSEnv()}
	f.serve(t)
	c := dialWS(t, f.url("/d/ws"), nil)
	c.call("write ok")
	fail.Store(true)
	c.sendText("write lost")
	code, _ := c.expectClose()
	if code != durable.CloseInternalError {
		t.Errorf("close code = %d, want %d", code, durable.CloseInternalError)
	}
	c.expectEOF()
}

func TestWebSocket_UpgradeHeldByOutputGate(t *testing.T) {
	f := newWSFixture(t, durable.Options{})
	// The upgrade and the welcome message sent in the accepting turn.
	c := dialWS(t, f.url("/u/ws?welcome=1"), nil)
	if got := c.readText(); got != "welcome" {
		t.Errorf("first message = %q", got)
	}
	// A turn that accepts and then panics: no upgrade, an error response.
	_, err := tryDialWS(f.url("/u/ws?fail=1&nick=ghost"), nil)
	var se ws.StatusError
	if !errors.As(err, &se) || int(se) != http.StatusInternalServerError {
		t.Errorf("dial of a failing accept: err = %v, want status 500", err)
	}
	if got := c.call("who"); got != "?" {
		t.Errorf("who = %q: the failed socket must not be listed", got)
	}
	f.noEvent(t)
}

func TestWebSocket_AutoResponse(t *testing.T) {
	fc := clock.NewFake(time.Unix(1_000_000, 0))
	f := newWSFixture(t, durable.Options{Durability: durable.NoSync, Clock: fc})
	c := dialWS(t, f.url("/a/ws"), nil)
	if got := c.call("autots"); !strings.HasPrefix(got, "false ") {
		t.Errorf("autots before any auto-response = %q", got)
	}
	if got := c.call("auto ping_me pong"); got != "ok" {
		t.Fatal(got)
	}
	hibernate(t, f.rt)
	built, msgs := f.env.built.Load(), f.env.msgs.Load()
	fc.Advance(time.Minute)
	for range 3 {
		if got := c.call("ping me"); got != "pong" {
			t.Fatalf("auto-response = %q", got)
		}
	}
	if f.rt.Stats().Live != 0 || f.env.built.Load() != built || f.env.msgs.Load() != msgs {
		t.Errorf("the auto-response woke the object (live=%d built=%d msgs=%d)", f.rt.Stats().Live, f.env.built.Load(), f.env.msgs.Load())
	}
	want := fmt.Sprint("true ", fc.Now().UnixNano())
	if got := c.call("autots"); got != want {
		t.Errorf("autots = %q, want %q", got, want)
	}
	// Limits: 2,048 characters (not bytes) each.
	long := strings.Repeat("é", durable.MaxAutoResponseLength)
	if got := c.call("auto " + long + " " + long); got != "ok" {
		t.Errorf("at the limit: %q", got)
	}
	if got := c.call("auto " + long + "x y"); !strings.Contains(got, "maximum 2048") {
		t.Errorf("past the limit: %q", got)
	}
	if got := c.call("auto " + "x " + long + "é"); !strings.Contains(got, "maximum 2048") {
		t.Errorf("response past the limit: %q", got)
	}
	if got := c.call("auto"); got != "ok" { // removes it
		t.Errorf("unset: %q", got)
	}
	c.sendText("ping me") // now an ordinary message, without a reply
	if got := c.call("echo after"); got != "after" {
		t.Errorf("after unset: %q", got)
	}
}

func TestWebSocket_EventTimeout(t *testing.T) {
	fc := clock.NewFake(time.Unix(1_000_000, 0))
	f := newWSFixture(t, durable.Options{Durability: durable.NoSync, Clock: fc})
	c := dialWS(t, f.url("/t/ws"), nil)
	if got := c.call("timeout 168h"); got != "ok 168h0m0s" {
		t.Errorf("at the limit: %q", got)
	}
	if got := c.call("timeout 168h0m0.001s"); !strings.Contains(got, "limit exceeded") {
		t.Errorf("past the limit: %q", got)
	}
	if got := c.call("timeout 1s"); got != "ok 1s" {
		t.Fatal(got)
	}
	built := f.env.built.Load()
	hibernate(t, f.rt) // the setting survives hibernation
	msgs := f.env.msgs.Load()
	c.sendText("wait")
	waitFor(t, "the handler to start", func() bool { return f.env.msgs.Load() == msgs+1 })
	if got := f.env.built.Load(); got != built+1 {
		t.Errorf("constructor runs = %d, want %d", got, built+1)
	}
	fc.Advance(time.Second)
	// The handler's send after the timeout is dropped with the reset; the
	// socket is closed so the client knows.
	if code, _ := c.expectClose(); code != durable.CloseInternalError {
		t.Errorf("close code = %d", code)
	}
}

func TestWebSocket_Limits(t *testing.T) {
	f := newWSFixture(t, durable.Options{})
	t.Run("tags", func(t *testing.T) {
		tags := "tag=" + strings.Repeat("t", 10)
		for i := 1; i < durable.MaxWebSocketTags; i++ {
			tags += "&tag=" + strconv.Itoa(i)
		}
		c := dialWS(t, f.url("/l/ws?"+tags), nil)
		if got := len(strings.Split(c.call("tags"), ",")); got != durable.MaxWebSocketTags {
			t.Errorf("tags = %d", got)
		}
		_, err := tryDialWS(f.url("/l/ws?"+tags+"&tag=one-too-many"), nil)
		if se := (ws.StatusError)(0); !errors.As(err, &se) || int(se) != 400 {
			t.Errorf("11 tags: %v, want 400", err)
		}
		long := strings.Repeat("é", durable.MaxWebSocketTagLength)
		c2 := dialWS(t, f.url("/l/ws?tag="+long), nil)
		if got := c2.call("tags"); got != long {
			t.Errorf("tag at the limit = %q", got)
		}
		_, err = tryDialWS(f.url("/l/ws?tag="+long+"x"), nil)
		if se := (ws.StatusError)(0); !errors.As(err, &se) || int(se) != 400 {
			t.Errorf("257-character tag: %v, want 400", err)
		}
	})
	t.Run("attachment", func(t *testing.T) {
		c := dialWS(t, f.url("/l/ws"), nil)
		// A byte string of n >= 256 bytes encodes in n+3 bytes.
		at := durable.MaxWebSocketAttachment - 3
		if got := c.call("attach " + strconv.Itoa(at)); got != "ok "+strconv.Itoa(at) {
			t.Errorf("attachment at the limit: %q", got)
		}
		if got := c.call("attach " + strconv.Itoa(at+1)); got != "error: websocket: limit exceeded: bytes of an attachment is 16385, maximum 16384" {
			t.Errorf("attachment past the limit: %q", got)
		}
	})
	t.Run("inbound message", func(t *testing.T) {
		c := dialWS(t, f.url("/l/ws"), nil)
		payload := make([]byte, durable.MaxWebSocketMessage)
		copy(payload, "len ")
		c.write(ws.NewTextFrame(payload))
		if got := c.readText(); got != strconv.Itoa(durable.MaxWebSocketMessage-4) {
			t.Errorf("message at the limit: %q", got)
		}
		// The server answers as soon as it reads the header, while the
		// client is still sending; it drains the rest before closing.
		big := ws.MaskFrame(ws.NewTextFrame(append(payload, ' ')))
		go func() {
			c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
			ws.WriteFrame(c.conn, big)
		}()
		if code, _ := c.expectClose(); code != durable.CloseMessageTooBig {
			t.Errorf("past the limit: close %d, want %d", code, durable.CloseMessageTooBig)
		}
		if got := f.eventMatching(t, "message too big"); !strings.Contains(got, "closed with 1009") {
			t.Errorf("event = %q", got)
		}
	})
	t.Run("outbound message", func(t *testing.T) {
		c := dialWS(t, f.url("/l/ws"), nil)
		c.sendText("big " + strconv.Itoa(durable.MaxWebSocketMessage))
		fr, err := c.read(10 * time.Second)
		if err != nil || len(fr.Payload) != durable.MaxWebSocketMessage {
			t.Errorf("send at the limit: %d bytes, %v", len(fr.Payload), err)
		}
		if got := c.call("big " + strconv.Itoa(durable.MaxWebSocketMessage+1)); !strings.Contains(got, "limit exceeded") {
			t.Errorf("send past the limit: %q", got)
		}
	})
}

func TestWebSocket_ProtocolErrors(t *testing.T) {
	f := newWSFixture(t, durable.Options{})
	for _, tc := range []struct {
		name  string
		frame func() []byte
		code  int
		event string
	}{
		{"unmasked", func() []byte { b, _ := ws.CompileFrame(ws.NewTextFrame([]byte("x"))); return b }, durable.CloseProtocolError, "protocol error"},
		{"bad utf-8", func() []byte {
			b, _ := ws.CompileFrame(ws.MaskFrame(ws.NewTextFrame([]byte{0xff, 0xfe})))
			return b
		}, durable.CloseInvalidPayload, "not valid UTF-8"},
		{"reserved opcode", func() []byte {
			b, _ := ws.CompileFrame(ws.MaskFrame(ws.NewFrame(ws.OpCode(3), true, nil)))
			return b
		}, durable.CloseProtocolError, "reserved opcode"},
		{"stray continuation", func() []byte {
			b, _ := ws.CompileFrame(ws.MaskFrame(ws.NewFrame(ws.OpContinuation, true, []byte("x"))))
			return b
		}, durable.CloseProtocolError, "continuation"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialWS(t, f.url("/p/ws"), nil)
			c.conn.Write(tc.frame())
			if code, _ := c.expectClose(); code != tc.code {
				t.Errorf("close code = %d, want %d", code, tc.code)
			}
			c.expectEOF()
			if got := f.event(t); !strings.Contains(got, tc.event) {
				t.Errorf("event = %q, want %q", got, tc.event)
			}
		})
	}
}

func TestWebSocket_Origin(t *testing.T) {
	f := newWSFixture(t, durable.Options{})
	host := strings.TrimPrefix(f.srv.URL, "http://")
	for _, tc := range []struct {
		origin, query string
		want          int
	}{
		{"", "", 101},
		{"http://" + host, "", 101},
		{"https://evil.example", "", 403},
		{"null", "", 403},
		{"https://app.example", "origin=app.example", 101},
		{"https://a.example", "origin=*.example", 101},
		{"http://a.example", "origin=https://*.example", 403},
		{"https://a.example", "origin=https://*.example", 101},
	} {
		h := http.Header{}
		if tc.origin != "" {
			h.Set("Origin", tc.origin)
		}
		_, err := tryDialWS(f.url("/o/ws?"+tc.query), h)
		got := 101
		var se ws.StatusError
		if errors.As(err, &se) {
			got = int(se)
		} else if err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("origin %q with %q: status %d, want %d", tc.origin, tc.query, got, tc.want)
		}
	}
}

func TestWebSocket_Subprotocol(t *testing.T) {
	f := newWSFixture(t, durable.Options{})
	d := ws.Dialer{Protocols: []string{"v2", "v1"}}
	conn, br, hs, err := d.Dial(context.Background(), f.url("/s/ws?proto=v1&proto=v2"))
	if err != nil {
		t.Fatal(err)
	}
	if br == nil {
		br = bufio.NewReader(conn)
	}
	c := &wsClient{t: t, conn: conn, br: br}
	defer conn.Close()
	if hs.Protocol != "v2" {
		t.Errorf("handshake protocol = %q", hs.Protocol)
	}
	if got := c.call("proto"); got != "v2" {
		t.Errorf("protocol = %q, want v2 (the client's first choice)", got)
	}
}

func TestWebSocket_NotAnUpgrade(t *testing.T) {
	f := newWSFixture(t, durable.Options{})
	resp, err := http.Get(f.srv.URL + "/n/ws")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("plain GET of the socket path: %d, want 400", resp.StatusCode)
	}
	// Fetch cannot upgrade.
	req := httptestRequest(t, "GET", "http://x/ws", nil)
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	req.Header.Set("Sec-WebSocket-Version", "13")
	r, err := f.ns.GetByName("n").Fetch(context.Background(), req)
	if err != nil || r.StatusCode != 500 {
		t.Errorf("Fetch upgrade: %v %v, want 500", r, err)
	}
}

func TestWebSocket_ShutdownClosesSockets(t *testing.T) {
	dir := t.TempDir()
	rt, err := durable.Open(durable.Options{Dir: dir, Durability: durable.NoSync})
	if err != nil {
		t.Fatal(err)
	}
	f := &wsFixture{rt: rt, env: newWSEnv()}
	f.serve(t)
	a := dialWS(t, f.url("/x/ws"), nil)
	b := dialWS(t, f.url("/y/ws"), nil)
	a.call("echo 1")
	rt.EvictIdle()
	if err := rt.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*wsClient{a, b} {
		if code, _ := c.expectClose(); code != durable.CloseGoingAway {
			t.Errorf("close code = %d, want 1001", code)
		}
		c.expectEOF()
	}
	f.noEvent(t)
}

func TestWebSocket_SendBuffer(t *testing.T) {
	f := newWSFixture(t, durable.Options{})
	dialWS(t, f.url("/b/ws?tag=slow&nick=slow"), nil) // never reads
	c := dialWS(t, f.url("/b/ws?nick=fast"), nil)
	// 8 messages of 8 MiB fill the 64 MiB send buffer exactly (they are
	// all held until the turn ends); the 9th is refused and the slow
	// socket is closed.
	size := durable.WebSocketSendBuffer / 8
	if got := c.call(fmt.Sprintf("flood slow 9 %d", size)); got != "8 sent: websocket: send buffer full (peer too slow)" {
		t.Errorf("flood = %q", got)
	}
	if got := f.eventMatching(t, "send buffer"); !strings.Contains(got, "closed with 1008") {
		t.Errorf("event = %q", got)
	}
	if got := c.call("who"); got != "fast" {
		t.Errorf("who = %q: the slow socket must be gone", got)
	}
}

func httptestRequest(t testing.TB, method, url string, body []byte) *http.Request {
	t.Helper()
	r := httptest.NewRequest(method, url, nil)
	if body != nil {
		r = httptest.NewRequest(method, url, strings.NewReader(string(body)))
	}
	return r
}

func TestWebSocket_ConcurrentClients(t *testing.T) {
	f := newWSFixture(t, durable.Options{})
	const n = 20
	clients := make([]*wsClient, n)
	for i := range clients {
		clients[i] = dialWS(t, f.url("/c/ws?nick="+strconv.Itoa(i)), nil)
	}
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 20 {
				c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
				ws.WriteFrame(c.conn, ws.MaskFrame(ws.NewTextFrame([]byte(fmt.Sprintf("write %d-%d", i, j)))))
			}
		}()
	}
	for i, c := range clients {
		for j := range 20 {
			if got, want := c.readText(), fmt.Sprintf("wrote %d-%d", i, j); got != want {
				t.Fatalf("client %d: got %q, want %q (per-socket order)", i, got, want)
			}
		}
	}
	wg.Wait()
	if got := clients[0].call("count"); got != strconv.Itoa(n*20) {
		t.Errorf("rows = %s, want %d", got, n*20)
	}
	got := strings.Split(clients[0].call("who"), ",")
	if !slices.IsSorted(got) && len(got) != n {
		t.Errorf("who = %v", got)
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
