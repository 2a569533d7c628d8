package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/durable-go/durable"
	"github.com/durable-go/durable/durabletest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// startApp runs the app over dir on a loopback port (addr "" picks one),
// its rooms on clk (nil: the wall clock). stop shuts the runtime down,
// which closes the members' sockets with 1001, then the server; the end of
// the test does the same, after checking that nothing is left running.
func startApp(t testing.TB, dir, addr string, clk *durabletest.Clock) (a *app, hostport string, stop func()) {
	t.Helper()
	opts := durable.Options{Dir: dir}
	now := time.Now
	if clk != nil {
		opts.Clock, now = clk, clk.Now
	}
	rt := durabletest.NewRuntime(t, opts)
	a, err := newAppOn(rt, now)
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
	t.Cleanup(srv.Close)
	stop = func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := rt.Shutdown(ctx); err != nil { // closes the sockets first
			t.Error(err)
		}
		srv.Close()
	}
	return a, ln.Addr().String(), stop
}

// hibernate evicts the rooms from memory while their sockets stay open.
func hibernate(t testing.TB, a *app) {
	t.Helper()
	n, err := durabletest.EvictAll(t.Context(), a.rt, durabletest.Hibernate)
	if err != nil || n == 0 {
		t.Fatalf("hibernate: %d rooms evicted, %v", n, err)
	}
}

type chatClient struct {
	t  testing.TB
	ws *durabletest.WebSocket
}

func joinRoom(t testing.TB, addr, room, nick string) *chatClient {
	t.Helper()
	ws, err := durabletest.DialWebSocket(t.Context(), "ws://"+addr+"/rooms/"+room+"/ws?nick="+nick, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.CloseNow() })
	return &chatClient{t: t, ws: ws}
}

func (c *chatClient) send(text string) {
	c.t.Helper()
	if err := c.ws.SendText(c.t.Context(), text); err != nil {
		c.t.Fatal(err)
	}
}

func (c *chatClient) say(text string) {
	c.t.Helper()
	b, _ := json.Marshal(map[string]string{"type": "say", "text": text})
	c.send(string(b))
}

// next returns the next event of type typ, skipping others.
func (c *chatClient) next(typ string) event {
	c.t.Helper()
	for {
		s, err := c.ws.ReceiveText(c.t.Context())
		if err != nil {
			c.t.Fatalf("waiting for %s: %v", typ, err)
		}
		if s == "pong" {
			continue
		}
		var e event
		if err := json.Unmarshal([]byte(s), &e); err != nil {
			c.t.Fatal(err)
		}
		if e.Type == typ {
			return e
		}
	}
}

func TestChat(t *testing.T) {
	dir := t.TempDir()
	clk := durabletest.NewClock(time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC))
	a, addr, stop := startApp(t, dir, "", clk)

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
	if e := bob.next("message"); e.Message.Nick != "alice" || e.Message.Text != "hi bob" || e.Message.At != clk.Now().UnixMilli() {
		t.Errorf("bob got %+v, want alice's message stamped %d", e.Message, clk.Now().UnixMilli())
	}
	alice.next("message")

	// Nobody talks for longer than the idle timeout: the room leaves
	// memory while the sockets stay open (it hibernates).
	if err := durabletest.WaitIdle(t.Context(), a.rt); err != nil {
		t.Fatal(err)
	}
	if err := clk.Advance(t.Context(), durable.DefaultIdleTimeout+time.Second); err != nil {
		t.Fatal(err)
	}
	if live := a.rt.Stats().Live; live != 0 {
		t.Fatalf("%d rooms in memory after the idle timeout, want 0", live)
	}
	// The keep-alive ping is answered without waking the room.
	bob.send("ping")
	if s, err := bob.ws.ReceiveText(t.Context()); err != nil || s != "pong" {
		t.Errorf("ping: %q %v", s, err)
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
	if err := bob.ws.Close(t.Context(), durable.CloseNormal, "bye"); err != nil {
		t.Errorf("bob leaving: %v", err)
	}
	if e := alice.next("members"); strings.Join(e.Members, ",") != "alice" {
		t.Errorf("members after bob left = %v", e.Members)
	}

	// The room keeps its messages in its own database.
	var stored int
	err = durabletest.RunIn(t.Context(), a.rooms.GetByName("lobby"), func(ctx context.Context, r *Room, st *durable.State) error {
		cur, err := r.sql.Exec(`SELECT count(*) FROM messages`)
		if err != nil {
			return err
		}
		return cur.One(&stored)
	})
	if err != nil || stored != 2 {
		t.Errorf("messages stored in the room = %d, %v; want 2", stored, err)
	}
	ids, err := durabletest.ListIDs(a.rooms)
	lobby, _ := a.rooms.IDFromName("lobby")
	if err != nil || len(ids) != 1 || !ids[0].Equal(lobby) {
		t.Errorf("rooms with data = %v, %v; want the lobby", ids, err)
	}

	// Restart: the members are told to go away, and the history survives.
	stop()
	if code, _, err := alice.ws.ExpectClose(t.Context()); code != durable.CloseGoingAway || err != nil {
		t.Errorf("alice's socket at shutdown: %d, %v; want 1001", code, err)
	}
	_, addr, _ = startApp(t, dir, addr, clk)
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
	_, addr, _ := startApp(t, t.TempDir(), "", nil)
	for _, nick := range []string{"", strings.Repeat("n", maxNick+1), "a%07b"} {
		_, err := durabletest.DialWebSocket(t.Context(), "ws://"+addr+"/rooms/lobby/ws?nick="+nick, nil)
		var he *durabletest.HandshakeError
		if !errors.As(err, &he) || he.StatusCode != http.StatusBadRequest || !strings.Contains(he.Body, "nickname") {
			t.Errorf("nick %q: %v, want 400 about the nickname", nick, err)
		}
	}
	c := joinRoom(t, addr, "lobby", strings.Repeat("n", maxNick))
	c.next("hello")
	c.send("{not json")
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
	opts := &durabletest.DialOptions{Header: http.Header{"Origin": {"https://evil.example"}}}
	_, err := durabletest.DialWebSocket(t.Context(), "ws://"+addr+"/rooms/lobby/ws?nick=eve", opts)
	var he *durabletest.HandshakeError
	if !errors.As(err, &he) || he.StatusCode != http.StatusForbidden {
		t.Errorf("a cross-origin page joining: %v, want 403", err)
	}
}
