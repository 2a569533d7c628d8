package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/durable-go/durable"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

func get(t *testing.T, base, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(base + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

func newTestServer(t *testing.T) (string, string) {
	dir := t.TempDir()
	rt, err := durable.Open(durable.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	a, err := newApp(rt)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a)
	t.Cleanup(func() {
		srv.Close()
		rt.Shutdown(context.Background())
	})
	return srv.URL, dir
}

func TestContract(t *testing.T) {
	base, dir := newTestServer(t)
	for _, tc := range []struct {
		path       string
		wantStatus int
		wantBody   string
	}{
		{"/ping", 200, "pong"},
		{"/counter/c1/get", 200, "0"},
		{"/counter/c1/inc", 200, "1"},
		{"/counter/c1/inc", 200, "2"},
		{"/counter/c1/get", 200, "2"},
		{"/counter/c2/inc", 200, "1"},
		{"/kv/k1/get?k=a", 404, "not found"},
		{"/kv/k1/put?k=a&v=hello", 200, "ok"},
		{"/kv/k1/get?k=a", 200, "hello"},
		{"/kv/k1/put?k=a&v=", 200, "ok"},
		{"/kv/k1/get?k=a", 200, ""},
		{"/rpc/n1?note=x", 200, "1"},
		{"/rpc/n1?note=y", 200, "2"},
		{"/rpc/n2", 200, "1"},
		{"/alarm/t1/count", 200, "0"},
		{"/alarm/t1/set?ms=0", 200, "ok"},
	} {
		status, body := get(t, base, tc.path)
		if status != tc.wantStatus || body != tc.wantBody {
			t.Errorf("GET %s = %d %q, want %d %q", tc.path, status, body, tc.wantStatus, tc.wantBody)
		}
	}
	_ = dir
	// The alarm set with ms=0 fires by itself.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, body := get(t, base, "/alarm/t1/count"); body == "1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("alarm did not fire within 10 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The runtime's metrics count what the contract did: five counter
	// calls (three incs, two gets) on Counter.
	_, metrics := get(t, base, "/metrics")
	if want := `durable_calls_total{kind="rpc",namespace="Counter"} 5`; !strings.Contains(metrics, want) {
		t.Errorf("/metrics lacks %q:\n%.2000s", want, metrics)
	}
}

func TestBadInput(t *testing.T) {
	base, dir := newTestServer(t)
	long := strings.Repeat("a", 257)
	for _, path := range []string{
		"/counter/bad%20name/inc",
		"/counter/" + long + "/inc",
		"/counter/%C3%A9/inc",
		"/kv/ok/put?v=1",
		"/kv/ok/put?k=" + strings.Repeat("k", durable.MaxKeySize+1) + "&v=1",
		"/kv/ok/get",
		"/kv/ok/put?k=a&v=" + url.QueryEscape(strings.Repeat("v", durable.MaxEntrySize)),
		"/rpc/bad$name",
		"/alarm/t/set?ms=abc",
		"/alarm/t/set",
		"/alarm/t/set?ms=-5",
		"/alarm/bad%20name/set?ms=1",
	} {
		status, body := get(t, base, path)
		if status < 400 || status >= 500 || strings.Contains(body, "\n") || body == "" {
			t.Errorf("GET %.60s = %d %q, want a 4xx with a one-line reason", path, status, body)
		}
	}
	// Nothing was created.
	var files []string
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		rel, _ := filepath.Rel(dir, p)
		if err == nil && strings.HasSuffix(p, ".sqlite") && !strings.HasPrefix(rel, ".") {
			files = append(files, p)
		}
		return nil
	})
	if len(files) != 0 {
		t.Fatalf("bad requests created object files: %v", files)
	}
	// At the limits, the same requests work.
	if status, _ := get(t, base, "/counter/"+strings.Repeat("a", 256)+"/inc"); status != 200 {
		t.Errorf("256-byte name: status %d", status)
	}
	if status, _ := get(t, base, "/kv/ok/put?k="+strings.Repeat("k", durable.MaxKeySize)+"&v=1"); status != 200 {
		t.Errorf("2 KiB key: status %d", status)
	}
}

// TestProcess builds the server, checks SIGTERM shuts it down cleanly and
// that it recovers every acknowledged increment after SIGKILL.
func TestProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the server binary")
	}
	bin := filepath.Join(t.TempDir(), "server")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	dir := t.TempDir()
	start := func() (*exec.Cmd, string) {
		cmd := exec.Command(bin, "-addr", "127.0.0.1:0", "-data", dir)
		stderr, _ := cmd.StderrPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if addr, ok := strings.CutPrefix(sc.Text(), "listening on "); ok {
				go io.Copy(io.Discard, stderr)
				return cmd, strings.Fields(addr)[0]
			}
		}
		t.Fatal("server did not start")
		return nil, ""
	}
	cmd, base := start()
	for i := 1; i <= 20; i++ {
		if _, body := get(t, base, "/counter/c/inc"); body != fmt.Sprint(i) {
			t.Fatalf("inc %d = %q", i, body)
		}
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()

	cmd, base = start()
	if _, body := get(t, base, "/counter/c/get"); body != "20" {
		t.Fatalf("after SIGKILL counter = %q, want 20", body)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatal("no exit after SIGTERM")
	}
}

func TestWebSocketBroadcast(t *testing.T) {
	base, _ := newTestServer(t)
	wsURL := "ws" + strings.TrimPrefix(base, "http") + "/ws/room1"
	ctx := t.Context()
	var conns []net.Conn
	for range 2 {
		c, _, _, err := ws.Dial(ctx, wsURL)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	if err := wsutil.WriteClientText(conns[0], []byte("hello")); err != nil {
		t.Fatal(err)
	}
	for i, c := range conns { // the sender included
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		msg, err := wsutil.ReadServerText(c)
		if err != nil || string(msg) != "hello" {
			t.Fatalf("client %d got %q, %v", i, msg, err)
		}
	}
	if status, _ := get(t, base, "/ws/bad$name"); status != http.StatusBadRequest {
		t.Fatalf("bad room name: status %d", status)
	}
}
