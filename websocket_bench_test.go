package durable_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/durable-go/durable"
	"github.com/gobwas/ws"
)

// percentile returns the p-th percentile (0-100) of sorted durations.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p / 100)
	return sorted[i]
}

// BenchmarkWebSocket_Broadcast measures one room of 100 clients over
// loopback (clients in the same process): clients send messages that the
// room (an object) broadcasts to all 100 sockets. It reports deliveries per
// second and the latency of a delivery (send by a client to receipt by
// every client), p50 and p99. "memory" broadcasts only; "durable" also
// inserts each message into the room's SQLite database with fsync before
// broadcasting it, as the chat example does. "saturated" has 10 clients
// sending with 4 messages each in flight; "paced" has one client sending
// one message at a time (latency without queueing).
//
//	go test -run X -bench WebSocket_Broadcast -benchtime 2000x .
func BenchmarkWebSocket_Broadcast(b *testing.B) {
	for _, v := range []struct {
		name string
		cmd  string
		opts durable.Options
	}{
		{"memory", "all", durable.Options{Durability: durable.NoSync}},
		{"durable", "log", durable.Options{}},
	} {
		for _, load := range []struct {
			name            string
			senders, window int
		}{{"saturated", 10, 4}, {"paced", 1, 1}} {
			b.Run(v.name+"/"+load.name, func(b *testing.B) { benchBroadcast(b, v.cmd, v.opts, load.senders, load.window) })
		}
	}
}

func benchBroadcast(b *testing.B, cmd string, opts durable.Options, senders, window int) {
	const clients = 100
	f := newWSFixture(b, opts)
	conns := make([]*wsClient, clients)
	for i := range conns {
		conns[i] = dialWS(b, f.url("/bench/ws"), nil)
	}
	// Every client reads every broadcast and records its latency.
	lat := make([][]time.Duration, clients)
	var readers sync.WaitGroup
	credit := make([]chan struct{}, senders) // a sender's window
	for i := range credit {
		credit[i] = make(chan struct{}, window)
		for range window {
			credit[i] <- struct{}{}
		}
	}
	for i, c := range conns {
		readers.Add(1)
		go func() {
			defer readers.Done()
			lat[i] = make([]time.Duration, 0, b.N)
			for len(lat[i]) < b.N {
				fr, err := c.read(30 * time.Second)
				if err != nil {
					b.Errorf("client %d: %v after %d messages", i, err, len(lat[i]))
					return
				}
				sender, sent, _ := strings.Cut(string(fr.Payload), " ")
				ns, _ := strconv.ParseInt(sent, 10, 64)
				lat[i] = append(lat[i], time.Since(time.Unix(0, ns)))
				if s, _ := strconv.Atoi(sender); i == s {
					credit[s] <- struct{}{}
				}
			}
		}()
	}
	b.ResetTimer()
	start := time.Now()
	var sendWG sync.WaitGroup
	for s := range senders {
		sendWG.Add(1)
		go func() {
			defer sendWG.Done()
			c := conns[s]
			for k := s; k < b.N; k += senders {
				<-credit[s]
				msg := fmt.Sprintf("%s %d %d", cmd, s, time.Now().UnixNano())
				c.conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
				if err := ws.WriteFrame(c.conn, ws.MaskFrame(ws.NewTextFrame([]byte(msg)))); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	sendWG.Wait()
	readers.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "deliveries/s")
	b.ReportMetric(float64(percentile(all, 50).Microseconds()), "p50-µs")
	b.ReportMetric(float64(percentile(all, 99).Microseconds()), "p99-µs")
}

// BenchmarkWebSocket_WakeLatency measures the round trip of a message to
// an object: "hibernated" evicts the object before each message, so the
// message rebuilds it (constructor with a CREATE TABLE IF NOT EXISTS, its
// SQLite file opened again); "live" is the same without eviction. Reports
// p50 and p99.
//
//	go test -run X -bench WebSocket_WakeLatency -benchtime 2000x .
func BenchmarkWebSocket_WakeLatency(b *testing.B) {
	for _, evict := range []bool{true, false} {
		name := "live"
		if evict {
			name = "hibernated"
		}
		b.Run(name, func(b *testing.B) {
			f := newWSFixture(b, durable.Options{})
			c := dialWS(b, f.url("/wake/ws"), nil)
			c.call("write warm") // the database exists
			times := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := range b.N {
				if evict {
					b.StopTimer()
					hibernate(b, f.rt)
					b.StartTimer()
				}
				t0 := time.Now()
				if got := c.call("echo " + strconv.Itoa(i)); got != strconv.Itoa(i) {
					b.Fatalf("reply %q", got)
				}
				times = append(times, time.Since(t0))
			}
			b.StopTimer()
			if evict && f.env.built.Load() < int64(b.N) {
				b.Fatalf("constructor ran %d times for %d messages", f.env.built.Load(), b.N)
			}
			slices.Sort(times)
			b.ReportMetric(float64(percentile(times, 50).Microseconds()), "p50-µs")
			b.ReportMetric(float64(percentile(times, 99).Microseconds()), "p99-µs")
		})
	}
}

// BenchmarkWebSocket_IdleMemory measures what an idle socket of a
// hibernated object costs the server: 10,000 sockets (opened by a child
// process, so that the client side does not count) to one object, which
// is then evicted. It reports heap plus goroutine stacks per socket and
// goroutines per socket. It runs once whatever b.N is.
//
//	go test -run X -bench WebSocket_IdleMemory -benchtime 1x .
func BenchmarkWebSocket_IdleMemory(b *testing.B) {
	const n = 10000
	f := newWSFixture(b, durable.Options{Durability: durable.NoSync})
	sockets := func() int {
		resp, err := http.Get(f.srv.URL + "/mem/sockets")
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		k, _ := strconv.Atoi(string(body))
		return k
	}
	sockets() // the object and its database exist
	f.rt.EvictIdle()
	http.DefaultClient.CloseIdleConnections()
	runtime.GC()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	g0 := runtime.NumGoroutine()

	cmd := exec.Command(os.Args[0], "-test.run=^TestWebSocketIdleClients$")
	cmd.Env = append(os.Environ(), "DURABLE_WS_CLIENTS="+f.url("/mem/ws"), "DURABLE_WS_CLIENTS_N="+strconv.Itoa(n))
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		stdin.Close()
		cmd.Wait()
	}()
	sc := bufio.NewScanner(stdout)
	for sc.Scan() && sc.Text() != "ready" {
	}
	if got := sockets(); got != n {
		b.Fatalf("sockets = %d, want %d", got, n)
	}
	hibernate(b, f.rt)
	http.DefaultClient.CloseIdleConnections()
	time.Sleep(100 * time.Millisecond) // let the HTTP connection's goroutines end
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&after)
	g1 := runtime.NumGoroutine()
	mem := float64(int64(after.HeapInuse+after.StackInuse)-int64(before.HeapInuse+before.StackInuse)) / n
	b.ReportMetric(mem, "B/socket")
	b.ReportMetric(float64(g1-g0)/n, "goroutines/socket")
	b.ReportMetric(float64(f.rt.Stats().Live), "live-objects")
	if got := sockets(); got != n {
		b.Errorf("after hibernation: sockets = %d, want %d", got, n)
	}
}

// TestWebSocketIdleClients is the child process of
// BenchmarkWebSocket_IdleMemory: it opens the sockets and holds them until
// its stdin closes.
func TestWebSocketIdleClients(t *testing.T) {
	url := os.Getenv("DURABLE_WS_CLIENTS")
	if url == "" {
		t.Skip("child process of BenchmarkWebSocket_IdleMemory")
	}
	n, _ := strconv.Atoi(os.Getenv("DURABLE_WS_CLIENTS_N"))
	addr, path, _ := strings.Cut(strings.TrimPrefix(url, "ws://"), "/")
	conns := make([]net.Conn, 0, n)
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "GET /%s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", path, addr)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("handshake: %v %v", resp, err)
		}
		conns = append(conns, c)
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	for _, c := range conns {
		c.Close()
	}
}
