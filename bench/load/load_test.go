package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestCommon_expand(t *testing.T) {
	c := common{path: "/kv/{name}/put?k=key&v=v{seq}&x={other}", names: 3, prefix: "p"}
	for _, tc := range []struct {
		seq  uint64
		want string
	}{
		{0, "/kv/p-0/put?k=key&v=v0&x={other}"},
		{4, "/kv/p-1/put?k=key&v=v4&x={other}"},
		{1002, "/kv/p-0/put?k=key&v=v1002&x={other}"},
	} {
		if got := string(c.expand(nil, tc.seq)); got != tc.want {
			t.Errorf("expand(%d) = %q, want %q", tc.seq, got, tc.want)
		}
	}
}

func TestCommon_validate(t *testing.T) {
	for _, tc := range []struct {
		url     string
		wantErr bool
	}{
		{"http://127.0.0.1:8787", false},
		{"http://localhost:8787", false},
		{"http://[::1]:8787", false},
		{"http://127.0.0.1", false},
		{"http://10.0.0.1:8787", true},
		{"http://example.com", true},
		{"https://127.0.0.1:8787", true},
	} {
		c := common{url: tc.url, path: "/ping", duration: time.Second, timeout: time.Second, names: 1}
		if err := c.validate(); (err != nil) != tc.wantErr {
			t.Errorf("validate(%q) = %v, want error: %v", tc.url, err, tc.wantErr)
		}
	}
}

func TestPercentile(t *testing.T) {
	var lat []time.Duration
	for i := 1; i <= 200; i++ {
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{50, 100 * time.Millisecond}, {99, 198 * time.Millisecond}, {100, 200 * time.Millisecond}, {0, time.Millisecond}} {
		if got := percentile(lat, tc.p); got != tc.want {
			t.Errorf("percentile(1..200 ms, %v) = %v, want %v", tc.p, got, tc.want)
		}
	}
	if got := percentile([]time.Duration{7}, 99); got != 7 {
		t.Errorf("percentile of one sample = %v, want 7", got)
	}
}

func TestFormatRate(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 999.4: "999", 1000: "1,000", 23456.7: "23,457", 1234567: "1,234,567"} {
		if got := formatRate(v); got != want {
			t.Errorf("formatRate(%v) = %q, want %q", v, got, want)
		}
	}
}

// recorder is an HTTP server that records the paths it serves.
type recorder struct {
	mu    sync.Mutex
	paths map[string]int // guarded by mu
}

func (rc *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rc.mu.Lock()
	rc.paths[r.URL.RequestURI()]++
	n := len(rc.paths)
	rc.mu.Unlock()
	switch {
	case strings.HasPrefix(r.URL.Path, "/fail/"):
		http.Error(w, "no", http.StatusInternalServerError)
		return
	case n%7 == 0:
		w.Header().Set("Connection", "close") // the load tool must reconnect
	}
	io.WriteString(w, "ok")
}

func newHTTPCmd(t *testing.T, url, path string) *httpCmd {
	t.Helper()
	c := &httpCmd{conns: 4}
	c.common = common{url: url, path: path, duration: 300 * time.Millisecond, warmup: 50 * time.Millisecond,
		timeout: 2 * time.Second, names: 3, prefix: "o"}
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestHTTPCmd_load(t *testing.T) {
	rc := &recorder{paths: map[string]int{}}
	srv := httptest.NewServer(rc)
	defer srv.Close()

	c := newHTTPCmd(t, srv.URL, "/kv/{name}/put?v={seq}")
	r, err := c.load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if r.Count == 0 || r.Errors != 0 {
		t.Fatalf("got %d ok and %d errors (%v), want some ok and no errors", r.Count, r.Errors, r.ErrorKinds)
	}
	if r.Samples != int(r.Count) || r.P50 <= 0 || r.P99 < r.P50 || r.Max < r.P99 {
		t.Errorf("latencies: %d samples for %d ok, p50 %v, p99 %v, max %v", r.Samples, r.Count, r.P50, r.P99, r.Max)
	}
	if want := float64(r.Count) / 0.3; r.Rate < want*0.99 || r.Rate > want*1.01 {
		t.Errorf("rate = %v, want %v", r.Rate, want)
	}
	names := map[string]bool{}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for p, n := range rc.paths {
		if n != 1 {
			t.Errorf("%s requested %d times, want once ({seq} must be unique)", p, n)
		}
		names[strings.Split(p, "/")[2]] = true
	}
	if got, want := slices.Sorted(maps.Keys(names)), []string{"o-0", "o-1", "o-2"}; !slices.Equal(got, want) {
		t.Errorf("names = %v, want %v", got, want)
	}
	if int64(len(rc.paths)) < r.Count {
		t.Errorf("server saw %d requests, load tool counted %d ok", len(rc.paths), r.Count)
	}
}

func TestHTTPCmd_load_errors(t *testing.T) {
	rc := &recorder{paths: map[string]int{}}
	srv := httptest.NewServer(rc)
	defer srv.Close()

	r, err := newHTTPCmd(t, srv.URL, "/fail/{seq}").load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if r.Count != 0 || r.Errors == 0 || r.ErrorKinds["status 500"] != r.Errors {
		t.Errorf("got %d ok, %d errors %v; want 0 ok and only status 500 errors", r.Count, r.Errors, r.ErrorKinds)
	}

	srv.Close()
	r, err = newHTTPCmd(t, srv.URL, "/ping").load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if r.Count != 0 || r.ErrorKinds["dial: connection refused"] == 0 {
		t.Errorf("server down: got %d ok, errors %v; want dial errors", r.Count, r.ErrorKinds)
	}
}

func TestHTTPCmd_load_cancel(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	c := newHTTPCmd(t, srv.URL, "/ping")
	c.duration = time.Minute
	start := time.Now()
	if _, err := c.load(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("load = %v, want %v", err, context.DeadlineExceeded)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("load took %v after cancellation", d)
	}
}

// acceptWS is the server side of the WebSocket handshake.
func acceptWS(w http.ResponseWriter, r *http.Request) (*wsConn, error) {
	key := r.Header.Get("Sec-WebSocket-Key")
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") || key == "" {
		return nil, errors.New("not a WebSocket upgrade")
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, err
	}
	resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
		wsAccept(key) + "\r\n\r\n"
	if _, err := io.WriteString(conn, resp); err != nil {
		conn.Close()
		return nil, err
	}
	return &wsConn{conn: conn, br: brw.Reader}, nil
}

// broadcaster is a WebSocket server with the /ws/{room} contract: every
// message goes to every socket in the room, the sender included.
type broadcaster struct {
	mu    sync.Mutex
	rooms map[string]map[*wsConn]bool // guarded by mu
	ping  bool                        // send a ping before each broadcast
}

func (b *broadcaster) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c, err := acceptWS(w, r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusUpgradeRequired)
		return
	}
	room := r.URL.Path
	b.mu.Lock()
	if b.rooms[room] == nil {
		b.rooms[room] = map[*wsConn]bool{}
	}
	b.rooms[room][c] = true
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.rooms[room], c)
		b.mu.Unlock()
		c.conn.Close()
	}()
	for {
		op, msg, err := c.readMessage()
		if err != nil {
			return
		}
		b.mu.Lock()
		peers := slices.Collect(maps.Keys(b.rooms[room]))
		b.mu.Unlock()
		for _, p := range peers {
			if b.ping {
				p.writeMessage(opPing, []byte("hi"))
			}
			p.writeMessage(op, msg)
		}
	}
}

func TestWSCmd_load(t *testing.T) {
	for _, ping := range []bool{false, true} {
		srv := httptest.NewServer(&broadcaster{rooms: map[string]map[*wsConn]bool{}, ping: ping})
		defer srv.Close()
		c := &wsCmd{clients: 3, window: 2, size: 100}
		c.common = common{url: srv.URL, path: "/ws/{name}", duration: 300 * time.Millisecond, warmup: 50 * time.Millisecond,
			timeout: 2 * time.Second, names: 1, prefix: "room"}
		if err := c.validate(); err != nil {
			t.Fatal(err)
		}
		r, err := c.load(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if r.Count == 0 || r.Sent == 0 || r.Errors != 0 {
			t.Fatalf("ping %v: %d delivered, %d sent, %d errors %v; want some and no errors", ping, r.Count, r.Sent, r.Errors, r.ErrorKinds)
		}
		// Every message reaches the 3 clients; only the window's edges differ.
		if lo, hi := 3*r.Sent*95/100, 3*r.Sent*105/100; r.Count < lo || r.Count > hi {
			t.Errorf("ping %v: %d delivered for %d sent to 3 clients, want about %d", ping, r.Count, r.Sent, 3*r.Sent)
		}
		if r.Samples == 0 || r.P50 <= 0 || r.P99 < r.P50 {
			t.Errorf("ping %v: %d samples, p50 %v, p99 %v", ping, r.Samples, r.P50, r.P99)
		}
	}
}

func TestWSCmd_load_noRoute(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	c := &wsCmd{clients: 1, window: 1, size: 64}
	c.common = common{url: srv.URL, path: "/ws/{name}", duration: time.Second, timeout: time.Second, names: 1, prefix: "r"}
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.load(context.Background()); err == nil || !strings.Contains(err.Error(), "status 404") {
		t.Errorf("load = %v, want a handshake error with status 404", err)
	}
}

func TestReadMessage_fragments(t *testing.T) {
	var b []byte
	b = append(b, 0x01, 3) // text, not final
	b = append(b, "abc"...)
	b = appendFrame(b, opPing, []byte("p"), true) // control frame in between, masked
	b = append(b, 0x80, 2)                        // final continuation
	b = append(b, "de"...)
	b = appendFrame(b, opClose, []byte{0x03, 0xE8}, false)

	var out bytes.Buffer
	c := &wsConn{conn: &fakeConn{w: &out}, br: bufio.NewReader(bytes.NewReader(b))}
	op, msg, err := c.readMessage()
	if err != nil || op != opText || string(msg) != "abcde" {
		t.Fatalf("readMessage = %#x, %q, %v; want text \"abcde\"", op, msg, err)
	}
	if _, _, err := c.readMessage(); !errors.Is(err, errWSClosed) {
		t.Fatalf("readMessage after close = %v, want %v", err, errWSClosed)
	}
	want := appendFrame(appendFrame(nil, opPong, []byte("p"), false), opClose, []byte{0x03, 0xE8}, false)
	if !bytes.Equal(out.Bytes(), want) {
		t.Errorf("wrote % x, want pong and close % x", out.Bytes(), want)
	}
}

func TestFrame_roundTrip(t *testing.T) {
	for _, n := range []int{0, 125, 126, 65535, 65536} {
		p := bytes.Repeat([]byte{'z'}, n)
		for _, mask := range []bool{false, true} {
			fin, op, got, err := readFrame(bufio.NewReader(bytes.NewReader(appendFrame(nil, opBinary, p, mask))), nil)
			if err != nil || !fin || op != opBinary || !bytes.Equal(got, p) {
				t.Errorf("%d bytes, mask %v: got fin %v op %#x %d bytes, %v", n, mask, fin, op, len(got), err)
			}
		}
	}
}

// fakeConn is a net.Conn that writes to w.
type fakeConn struct {
	net.Conn
	w io.Writer
}

func (f *fakeConn) Write(p []byte) (int, error) { return f.w.Write(p) }

func TestWriteTable(t *testing.T) {
	results := []Result{
		{Workload: "ping", Server: "durable", Unit: "req/s", Rate: 30000, P50: 0.5, P99: 1, CPU: &CPU{Server: 1, Load: 0.4, HasServer: true}},
		{Workload: "ping", Server: "workerd", Unit: "req/s", Rate: 20000, P50: 1, P99: 2},
		{Workload: "kv", Server: "workerd", Unit: "req/s", Rate: 1000, P50: 10, P99: 20, Errors: 2, Contended: true},
		{Workload: "ws", Server: "workerd", Unit: "msg/s", Rate: 80000, P50: 1, P99: 3},
		{Workload: "ws", Server: "durable", Skipped: "no route"},
		{Workload: "ping", Server: "durable", Unit: "req/s", Rate: 1, Contended: true}, // the clean one stays
	}
	var b strings.Builder
	if err := writeTable(&b, results, "workerd"); err != nil {
		t.Fatal(err)
	}
	got := b.String()
	for _, want := range []string{
		"| workload | figure | workerd | durable | durable / workerd |",
		"| ping | req/s | 20,000 | 30,000 | 1.50 |",
		"|  | p50 ms | 1.00 | 0.50 | 0.50 |",
		"| kv | req/s | 1,000 † | – | |",
		"|  | errors | 2 † | – | |",
		"| ws | msg/s | 80,000 | n/a | |",
		"ws on durable: not run: no route",
		"| ping | – | 1.00 / 0.40 / 0.00 / 0.00 |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks %q:\n%s", want, got)
		}
	}
}

func TestTableCmd(t *testing.T) {
	name := filepath.Join(t.TempDir(), "r.jsonl")
	var b bytes.Buffer
	for _, r := range []Result{{Workload: "ping", Server: "workerd", Rate: 2}, {Workload: "ping", Server: "durable", Rate: 3}} {
		if err := r.writeJSON(&b); err != nil {
			t.Fatal(err)
		}
	}
	b.WriteString("\n")
	if err := os.WriteFile(name, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	var c tableCmd
	if err := c.parseFlags([]string{name}); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := c.run(&out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "| ping | req/s | 2 | 3 | 1.50 |") {
		t.Errorf("table:\n%s", out.String())
	}
}

func TestReadResponse(t *testing.T) {
	const next = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
	for _, tc := range []struct {
		name       string
		in         string
		wantStatus int
		wantKeep   bool
		wantErr    bool
		wantNext   bool // the next response must still be readable
	}{
		{"length", "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nContent-Type: text/plain\r\n\r\npong", 200, true, false, true},
		{"chunked", "HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n0\r\nTrailer: x\r\n\r\n", 500, true, false, true},
		{"no body", "HTTP/1.1 204 No Content\r\n\r\n", 204, true, false, true},
		{"close", "HTTP/1.1 200 OK\r\nconnection: Close\r\ncontent-length: 2\r\n\r\nok", 200, false, false, true},
		{"1.0 until EOF", "HTTP/1.0 200 OK\r\n\r\nbody to the end", 200, false, false, false},
		{"1.0 keep-alive", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx", 200, true, false, true},
		{"bad status line", "HTTP/2 200\r\n\r\n", 0, false, true, false},
		{"bad length", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", 0, false, true, false},
		{"truncated", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 0, false, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.in
			if tc.wantNext {
				in += next
			}
			br := bufio.NewReader(strings.NewReader(in))
			status, keep, err := readResponse(br)
			if (err != nil) != tc.wantErr || status != tc.wantStatus && !tc.wantErr || keep != tc.wantKeep && !tc.wantErr {
				t.Fatalf("readResponse = %d, %v, %v; want %d, %v, error %v", status, keep, err, tc.wantStatus, tc.wantKeep, tc.wantErr)
			}
			if tc.wantNext {
				if status, _, err := readResponse(br); err != nil || status != 200 {
					t.Errorf("next response: %d, %v; want 200", status, err)
				}
			}
		})
	}
}

func TestHTTPCmd_load_chunked(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "part one, ")
		http.NewResponseController(w).Flush() // forces a chunked body
		io.WriteString(w, "part two")
	}))
	defer srv.Close()
	r, err := newHTTPCmd(t, srv.URL, "/").load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if r.Count == 0 || r.Errors != 0 {
		t.Errorf("got %d ok, %d errors %v; want some ok and no errors", r.Count, r.Errors, r.ErrorKinds)
	}
}

func TestHTTPCmd_load_prime(t *testing.T) {
	rc := &recorder{paths: map[string]int{}}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	c := newHTTPCmd(t, srv.URL, "/p/{name}/{seq}")
	c.names, c.prime, c.duration = 50, true, 50*time.Millisecond
	if _, err := c.load(context.Background()); err != nil {
		t.Fatal(err)
	}
	rc.mu.Lock()
	for i := range 50 {
		if p := fmt.Sprintf("/p/o-%d/%d", i, i); rc.paths[p] != 1 {
			t.Errorf("%s requested %d times, want once", p, rc.paths[p])
		}
	}
	rc.mu.Unlock()

	c = newHTTPCmd(t, srv.URL, "/fail/{name}")
	c.prime = true
	if _, err := c.load(context.Background()); err == nil || !strings.Contains(err.Error(), "status 500") {
		t.Errorf("load with a failing prime = %v, want a status 500 error", err)
	}
}

func TestFsyncCmd(t *testing.T) {
	var c fsyncCmd
	if err := c.parseFlags([]string{"-dir", t.TempDir(), "-n", "3"}); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := c.run(&out); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "4 KiB append + fsync, 3 times: p50 ") {
		t.Errorf("output = %q", out.String())
	}
}
