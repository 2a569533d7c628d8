package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// startApp runs the app over dir on a loopback port (addr "" picks one).
func startApp(t testing.TB, dir, addr string) (*app, string, func()) {
	t.Helper()
	a, err := newApp(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var ln net.Listener
	for deadline := time.Now().Add(5 * time.Second); ; {
		ln, err = net.Listen("tcp", addr)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond) // the previous server's port is being released
	}
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(a.handler)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := a.close(ctx); err != nil { // closes the sockets first
			t.Error(err)
		}
		srv.Close()
	}
	t.Cleanup(stop)
	return a, ln.Addr().String(), stop
}

// hibernate evicts the rooms from memory while their sockets stay open. A
// room stays in use for a moment after its last message left, so it
// retries until nothing is live.
func hibernate(t testing.TB, a *app) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for a.rt.EvictIdle(); a.rt.Stats().Live != 0; a.rt.EvictIdle() {
		if time.Now().After(deadline) {
			t.Fatalf("rooms still live: %d", a.rt.Stats().Live)
		}
		time.Sleep(time.Millisecond)
	}
}

type chatClient struct {
	t    testing.TB
	conn net.Conn
	r    io.Reader
}

func joinRoom(t testing.TB, addr, room, nick string) *chatClient {
	t.Helper()
	conn, br, _, err := ws.Dial(context.Background(), "ws://"+addr+"/rooms/"+room+"/ws?nick="+nick)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	var r io.Reader = conn
	if br != nil {
		r = io.MultiReader(br, conn)
	}
	return &chatClient{t: t, conn: conn, r: r}
}

func (c *chatClient) say(text string) {
	c.t.Helper()
	b, _ := json.Marshal(map[string]string{"type": "say", "text": text})
	if err := wsutil.WriteClientText(c.conn, b); err != nil {
		c.t.Fatal(err)
	}
}

// next returns the next event of type typ, skipping others.
func (c *chatClient) next(typ string) event {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		b, err := wsutil.ReadServerText(struct {
			io.Reader
			io.Writer
		}{c.r, c.conn})
		if err != nil {
			c.t.Fatalf("waiting for %s: %v", typ, err)
		}
		if string(b) == "pong" {
			continue
		}
		var e event
		if err := json.Unmarshal(b, &e); err != nil {
			c.t.Fatal(err)
		}
		if e.Type == typ {
			return e
		}
	}
}

func TestChat(t *testing.T) {
	dir := t.TempDir()
	a, addr, stop := startApp(t, dir, "")

	// The page is served.
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), "durable <span>chat</span>") {
		t.Errorf("index page: %.100s", page)
	}

	alice := joinRoom(t, addr, "lobby", "alice")
	if e := alice.next("hello"); e.You != "alice" || e.Room != "lobby" || len(e.History) != 0 || strings.Join(e.Members, ",") != "alice" {
		t.Errorf("hello = %+v", e)
	}
	bob := joinRoom(t, addr, "lobby", "bob")
	bob.next("hello")
	if e := alice.next("members"); strings.Join(e.Members, ",") != "alice,bob" {
		t.Errorf("members = %v", e.Members)
	}
	alice.say("hi bob")
	if e := bob.next("message"); e.Message.Nick != "alice" || e.Message.Text != "hi bob" {
		t.Errorf("bob got %+v", e.Message)
	}
	alice.next("message")

	// Hibernate the room mid-conversation: the sockets stay open.
	hibernate(t, a)
	// The keep-alive ping is answered without waking the room.
	wsutil.WriteClientText(bob.conn, []byte("ping"))
	bob.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, err := wsutil.ReadServerText(struct {
		io.Reader
		io.Writer
	}{bob.r, bob.conn}); err != nil || string(b) != "pong" {
		t.Errorf("ping: %q %v", b, err)
	}
	if live := a.rt.Stats().Live; live != 0 {
		t.Errorf("the ping woke the room")
	}
	bob.say("still here")
	if e := alice.next("message"); e.Message.Text != "still here" || e.Message.Nick != "bob" {
		t.Errorf("alice got %+v after hibernation", e.Message)
	}
	bob.next("message")

	// A member leaves.
	bob.conn.Close()
	if e := alice.next("members"); strings.Join(e.Members, ",") != "alice" {
		t.Errorf("members after bob left = %v", e.Members)
	}

	// Restart: the history survives.
	stop()
	_, addr, _ = startApp(t, dir, addr)
	carol := joinRoom(t, addr, "lobby", "carol")
	e := carol.next("hello")
	var texts []string
	for _, m := range e.History {
		texts = append(texts, m.Nick+": "+m.Text)
	}
	if got := strings.Join(texts, " | "); got != "alice: hi bob | bob: still here" {
		t.Errorf("history after restart = %q", got)
	}
	resp, err = http.Get("http://" + addr + "/rooms/lobby/history")
	if err != nil {
		t.Fatal(err)
	}
	var hist []message
	json.NewDecoder(resp.Body).Decode(&hist)
	resp.Body.Close()
	if len(hist) != 2 {
		t.Errorf("GET history = %+v", hist)
	}
	// Rooms are separate objects.
	dave := joinRoom(t, addr, "other%20room", "dave")
	if e := dave.next("hello"); len(e.History) != 0 || e.Room != "other room" {
		t.Errorf("other room hello = %+v", e)
	}
}

func TestChat_BadInput(t *testing.T) {
	_, addr, _ := startApp(t, t.TempDir(), "")
	for _, nick := range []string{"", strings.Repeat("n", maxNick+1), "a%07b"} {
		_, _, _, err := ws.Dial(context.Background(), "ws://"+addr+"/rooms/lobby/ws?nick="+nick)
		if se := (ws.StatusError)(0); !asStatus(err, &se) || int(se) != 400 {
			t.Errorf("nick %q: %v, want 400", nick, err)
		}
	}
	c := joinRoom(t, addr, "lobby", strings.Repeat("n", maxNick))
	c.next("hello")
	wsutil.WriteClientText(c.conn, []byte("{not json"))
	if e := c.next("error"); e.Error != "unknown message" {
		t.Errorf("error = %q", e.Error)
	}
	c.say(strings.Repeat("x", maxText+1))
	if e := c.next("error"); !strings.Contains(e.Error, "at most") {
		t.Errorf("error = %q", e.Error)
	}
	c.say(strings.Repeat("x", maxText))
	if e := c.next("message"); len(e.Message.Text) != maxText {
		t.Errorf("message at the limit: %d characters", len(e.Message.Text))
	}
	// Cross-site pages cannot join (CSWSH).
	d := ws.Dialer{Header: ws.HandshakeHeaderHTTP(http.Header{"Origin": {"https://evil.example"}})}
	if _, _, _, err := d.Dial(context.Background(), "ws://"+addr+"/rooms/lobby/ws?nick=eve"); err == nil {
		t.Error("a cross-origin page joined")
	}
}

func asStatus(err error, se *ws.StatusError) bool {
	s, ok := err.(ws.StatusError)
	if ok {
		*se = s
	}
	return ok
}
