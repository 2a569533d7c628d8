package durable_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/durable-go/durable"
)

func get(t testing.TB, url string) (int, http.Header, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

func TestRoute_ServeHTTP(t *testing.T) {
	f := newWSFixture(t, durable.Options{})
	code, h, body := get(t, f.srv.URL+"/r1/hello?x=1")
	if code != http.StatusCreated || h.Get("X-Object") != "WSRoom" || body != "hello GET x=1" {
		t.Errorf("got %d %v %q", code, h, body)
	}
	for _, tc := range []struct {
		path       string
		code       int
		bodyPrefix string
	}{
		{"/my%20room/name", 200, "my room /name"},
		{"/a%2Fb/name", 200, "a/b /name"},
		{"/solo", 404, "404 page not found"}, // the object's own 404 for "/"
		{"/", 404, "404 page not found"},
		{"//name", 404, "404 page not found"},
		{"/%00/name", 400, "durable: invalid object name"},
		{"/" + strings.Repeat("n", durable.MaxNameLength) + "/name", 200, strings.Repeat("n", durable.MaxNameLength)},
		{"/" + strings.Repeat("n", durable.MaxNameLength+1) + "/name", 400, "durable: invalid object name"},
		{"/p/panic", 500, "durable: internal error"},
	} {
		code, _, body := get(t, f.srv.URL+tc.path)
		if code != tc.code || !strings.HasPrefix(body, tc.bodyPrefix) {
			t.Errorf("GET %.40s: %d %.60q, want %d %q", tc.path, code, body, tc.code, tc.bodyPrefix)
		}
	}
	// The panic reset the object; it answers again.
	if code, _, _ := get(t, f.srv.URL+"/p/hello"); code != 201 {
		t.Errorf("after a panic: %d", code)
	}
}

type NoHTTP struct{}

func newNoHTTP(*durable.State, struct{}) (*NoHTTP, error) { return &NoHTTP{}, nil }

func (n *NoHTTP) Ping(ctx context.Context) (string, error) { return "pong", nil }

func TestStub_ServeHTTP_NoHandler(t *testing.T) {
	rt := openRuntime(t, durable.Options{Durability: durable.NoSync})
	ns := durable.MustRegister(rt, "NoHTTP", newNoHTTP, struct{}{})
	srv := newHTTPServer(t, durable.Route(ns))
	if code, _, _ := get(t, srv+"/x/"); code != http.StatusNotImplemented {
		t.Errorf("status = %d, want 501", code)
	}
	_, err := ns.GetByName("x").Fetch(context.Background(), httptestRequest(t, "GET", "http://x/", nil))
	if !errors.Is(err, durable.ErrNoHTTPHandler) {
		t.Errorf("Fetch: %v", err)
	}
}

func TestStub_Fetch(t *testing.T) {
	f := newWSFixture(t, durable.Options{})
	stub := f.ns.GetByName("f")
	resp, err := stub.Fetch(context.Background(), httptestRequest(t, "POST", "http://x/hello?y=2", nil))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 201 || resp.Header.Get("X-Object") != "WSRoom" || string(b) != "hello POST y=2" {
		t.Errorf("Fetch = %d %v %q", resp.StatusCode, resp.Header, b)
	}
	_, err = stub.Fetch(context.Background(), httptestRequest(t, "GET", "http://x/panic", nil))
	var re *durable.RemoteError
	if !errors.As(err, &re) || !re.Panic {
		t.Errorf("Fetch of a panicking handler: %v", err)
	}
}

func TestHTTP_RequestBodyLimit(t *testing.T) {
	f := newWSFixture(t, durable.Options{})
	post := func(n int64, chunked bool) (int, string) {
		req, err := http.NewRequest("POST", f.srv.URL+"/b/body", io.LimitReader(zeros{}, n))
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = n
		if chunked {
			req.ContentLength = -1
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, got := post(durable.MaxRequestBody, false); code != 200 || got != "104857600 <nil>" {
		t.Errorf("body at the limit: %d %q", code, got)
	}
	if code, _ := post(durable.MaxRequestBody+1, false); code != http.StatusRequestEntityTooLarge {
		t.Errorf("body past the limit: %d, want 413", code)
	}
	if code, _ := post(durable.MaxRequestBody+1, true); code != http.StatusRequestEntityTooLarge {
		t.Errorf("chunked body past the limit: %d, want 413", code)
	}
}

func TestHTTP_ResponseLimit(t *testing.T) {
	f := newWSFixture(t, durable.Options{})
	code, _, body := get(t, f.srv.URL+"/r/big?n=33554432")
	if code != 200 || len(body) != durable.MaxResponseBody {
		t.Errorf("response at the limit: %d, %d bytes", code, len(body))
	}
	code, _, body = get(t, f.srv.URL+"/r/big?n=33554433")
	if code != 200 || !strings.Contains(body, "response body too large") {
		t.Errorf("response past the limit: %d %.80q", code, body)
	}
	if got := f.event(t); !strings.Contains(got, "response body too large") {
		t.Errorf("Write error seen by the object = %q", got)
	}
}

// newHTTPServer serves h with durable.NewServer on a loopback port.
func newHTTPServer(t testing.TB, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := durable.NewServer(ln.Addr().String(), h)
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return "http://" + ln.Addr().String()
}

func TestNewServer_Limits(t *testing.T) {
	srv := durable.NewServer(":0", nil)
	if srv.ReadHeaderTimeout != durable.DefaultReadHeaderTimeout || srv.IdleTimeout != durable.DefaultServerIdleTimeout ||
		srv.MaxHeaderBytes != durable.DefaultMaxHeaderBytes {
		t.Errorf("server defaults = %v %v %v", srv.ReadHeaderTimeout, srv.IdleTimeout, srv.MaxHeaderBytes)
	}
	base := newHTTPServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
			return
		}
		io.WriteString(w, "ok ")
		io.WriteString(w, strings.Repeat("", int(n)))
	}))
	addr := strings.TrimPrefix(base, "http://")
	// raw sends a request head of exactly size bytes and returns the status.
	raw := func(target string, size int) int {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		head := "GET " + target + " HTTP/1.1\r\nHost: x\r\nX-Pad: \r\n\r\n"
		pad := max(size-len(head), 0)
		head = "GET " + target + " HTTP/1.1\r\nHost: x\r\nX-Pad: " + strings.Repeat("p", pad) + "\r\n\r\n"
		c.Write([]byte(head))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// Request head: MaxHeaderBytes plus net/http's 4 KiB of slack.
	limit := durable.DefaultMaxHeaderBytes + 4096
	if got := raw("/", limit); got != 200 {
		t.Errorf("head of %d bytes: %d, want 200", limit, got)
	}
	if got := raw("/", limit+1); got != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("head of %d bytes: %d, want 431", limit+1, got)
	}
	// Request target.
	target := "/" + strings.Repeat("u", durable.MaxURLLength-1)
	if got := raw(target, 0); got != 200 {
		t.Errorf("URL of %d bytes: %d, want 200", len(target), got)
	}
	if got := raw(target+"u", 0); got != http.StatusRequestURITooLong {
		t.Errorf("URL of %d bytes: %d, want 414", len(target)+1, got)
	}
	// Body (LimitRequests with MaxRequestBody): checked by length up front,
	// and while reading when the length is unknown.
	resp, err := http.Post(base, "text/plain", io.LimitReader(zeros{}, durable.MaxRequestBody+1))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("chunked body past the limit: %d", resp.StatusCode)
	}
}

// zeros reads as an endless run of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
