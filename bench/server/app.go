package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/durable-go/durable"
)

// Counter keeps one counter in its SQLite table.
type Counter struct {
	sql *durable.SQL
}

func newCounter(st *durable.State, _ struct{}) (*Counter, error) {
	c := &Counter{sql: st.Storage().SQL()}
	_, err := c.sql.Exec("CREATE TABLE IF NOT EXISTS counter (id INTEGER PRIMARY KEY CHECK (id = 1), value INTEGER NOT NULL)")
	return c, err
}

// Inc reads the counter, adds one and upserts it.
func (c *Counter) Inc(ctx context.Context) (int64, error) {
	v, err := c.get()
	if err != nil {
		return 0, err
	}
	v++
	_, err = c.sql.Exec("INSERT INTO counter (id, value) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET value = excluded.value", v)
	return v, err
}

// Get returns the counter, 0 if it was never incremented.
func (c *Counter) Get(ctx context.Context) (int64, error) { return c.get() }

func (c *Counter) get() (int64, error) {
	cur, err := c.sql.Exec("SELECT value FROM counter WHERE id = 1")
	if err != nil {
		return 0, err
	}
	var v int64
	if err := cur.One(&v); err != nil && !errors.Is(err, durable.ErrNoRows) {
		return 0, err
	}
	return v, nil
}

// KV stores strings in the object's key-value storage.
type KV struct {
	st *durable.Storage
}

func newKV(st *durable.State, _ struct{}) (*KV, error) { return &KV{st: st.Storage()}, nil }

// Put stores v under k.
func (kv *KV) Put(ctx context.Context, k, v string) error { return kv.st.Put(k, v) }

// Lookup returns the value of k and whether it exists.
func (kv *KV) Lookup(ctx context.Context, k string) (Found, error) {
	v, ok, err := durable.Get[string](kv.st, k)
	return Found{Value: v, OK: ok}, err
}

// Found is the result of KV.Lookup.
type Found struct {
	Value string
	OK    bool
}

// Notes inserts rows through a typed RPC method.
type Notes struct {
	sql *durable.SQL
}

func newNotes(st *durable.State, _ struct{}) (*Notes, error) {
	n := &Notes{sql: st.Storage().SQL()}
	_, err := n.sql.Exec("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, note TEXT NOT NULL)")
	return n, err
}

// Add inserts note and returns its row id.
func (n *Notes) Add(ctx context.Context, note string) (int64, error) {
	cur, err := n.sql.Exec("INSERT INTO notes (note) VALUES (?) RETURNING id", note)
	if err != nil {
		return 0, err
	}
	var id int64
	return id, cur.One(&id)
}

// Room relays every WebSocket message to every socket in the room, the
// sender included. Its sockets hibernate with it.
type Room struct {
	st *durable.State
}

func newRoom(st *durable.State, _ struct{}) (*Room, error) { return &Room{st: st}, nil }

// ServeHTTP accepts a WebSocket with the hibernation API.
func (r *Room) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if _, err := r.st.AcceptWebSocket(w, req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
	}
}

// WebSocketMessage broadcasts msg.
func (r *Room) WebSocketMessage(ctx context.Context, ws *durable.WebSocket, msg durable.Message) error {
	for _, peer := range r.st.WebSockets("") {
		if err := peer.Send(ctx, msg); err != nil && peer == ws {
			return err
		}
	}
	return nil
}

// Timer counts how often its alarm fired.
type Timer struct {
	st *durable.Storage
}

func newTimer(st *durable.State, _ struct{}) (*Timer, error) { return &Timer{st: st.Storage()}, nil }

// Set schedules the alarm ms milliseconds from now.
func (t *Timer) Set(ctx context.Context, ms int64) error {
	return t.st.SetAlarm(time.Now().Add(time.Duration(ms) * time.Millisecond))
}

// Alarm adds 1 to the stored count.
func (t *Timer) Alarm(ctx context.Context, info durable.AlarmInfo) error {
	n, _, err := durable.Get[int64](t.st, "count")
	if err != nil {
		return err
	}
	return t.st.Put("count", n+1)
}

// Count returns how often the alarm fired.
func (t *Timer) Count(ctx context.Context) (int64, error) {
	n, _, err := durable.Get[int64](t.st, "count")
	return n, err
}

// app is the reference workload server's HTTP handler.
type app struct {
	counters *durable.Namespace[Counter]
	kvs      *durable.Namespace[KV]
	notes    *durable.Namespace[Notes]
	rooms    *durable.Namespace[Room]
	timers   *durable.Namespace[Timer]
	mux      *http.ServeMux
}

func newApp(rt *durable.Runtime) (*app, error) {
	a := &app{mux: http.NewServeMux()}
	var err error
	if a.counters, err = durable.Register(rt, "Counter", newCounter, struct{}{}); err != nil {
		return nil, err
	}
	if a.kvs, err = durable.Register(rt, "KV", newKV, struct{}{}); err != nil {
		return nil, err
	}
	if a.notes, err = durable.Register(rt, "Notes", newNotes, struct{}{}); err != nil {
		return nil, err
	}
	if a.rooms, err = durable.Register(rt, "Room", newRoom, struct{}{}); err != nil {
		return nil, err
	}
	if a.timers, err = durable.Register(rt, "Timer", newTimer, struct{}{}); err != nil {
		return nil, err
	}
	a.mux.HandleFunc("GET /alarm/{name}/set", a.alarmSet)
	a.mux.HandleFunc("GET /alarm/{name}/count", func(w http.ResponseWriter, r *http.Request) {
		n, ok := name(w, r)
		if !ok {
			return
		}
		v, err := durable.Call0(r.Context(), a.timers.GetByName(n), (*Timer).Count)
		if err != nil {
			fail(w, err)
			return
		}
		fmt.Fprint(w, v)
	})
	a.mux.HandleFunc("GET /ws/{name}", func(w http.ResponseWriter, r *http.Request) {
		n, ok := name(w, r)
		if !ok {
			return
		}
		a.rooms.GetByName(n).ServeHTTP(w, r)
	})
	a.mux.HandleFunc("GET /ping", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "pong") })
	// Not part of the benchmark contract: the runtime's Prometheus metrics.
	a.mux.Handle("GET /metrics", rt.MetricsHandler())
	a.mux.HandleFunc("GET /counter/{name}/inc", a.counter((*Counter).Inc))
	a.mux.HandleFunc("GET /counter/{name}/get", a.counter((*Counter).Get))
	a.mux.HandleFunc("GET /kv/{name}/put", a.kvPut)
	a.mux.HandleFunc("GET /kv/{name}/get", a.kvGet)
	a.mux.HandleFunc("GET /rpc/{name}", a.rpc)
	return a, nil
}

func (a *app) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

var validName = regexp.MustCompile(`^[A-Za-z0-9._-]{1,256}$`)

// name returns the {name} path value, or writes a 400 and returns false.
func name(w http.ResponseWriter, r *http.Request) (string, bool) {
	n := r.PathValue("name")
	if !validName.MatchString(n) {
		http.Error(w, "bad name: want 1-256 bytes of [A-Za-z0-9._-]", http.StatusBadRequest)
		return "", false
	}
	return n, true
}

// fail writes err with a status that says whose fault it was.
func fail(w http.ResponseWriter, err error) {
	var le *durable.LimitError
	var ae *durable.ArgError
	switch {
	case errors.As(err, &le), errors.As(err, &ae):
		http.Error(w, err.Error(), http.StatusBadRequest)
	case durable.IsOverloaded(err):
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
	default:
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}

// counter serves /counter/{name}/... by calling method m of the counter.
func (a *app) counter(m func(*Counter, context.Context) (int64, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		n, ok := name(w, r)
		if !ok {
			return
		}
		v, err := durable.Call0(r.Context(), a.counters.GetByName(n), m)
		if err != nil {
			fail(w, err)
			return
		}
		fmt.Fprint(w, v)
	}
}

// maxAlarmDelay bounds /alarm/{name}/set?ms=N (one year).
const maxAlarmDelay = 365 * 24 * 3600 * 1000

func (a *app) alarmSet(w http.ResponseWriter, r *http.Request) {
	n, ok := name(w, r)
	if !ok {
		return
	}
	ms, err := strconv.ParseInt(r.URL.Query().Get("ms"), 10, 64)
	if err != nil || ms < 0 || ms > maxAlarmDelay {
		http.Error(w, fmt.Sprintf("ms: want a whole number of milliseconds from 0 to %d", maxAlarmDelay), http.StatusBadRequest)
		return
	}
	if err := durable.Do1(r.Context(), a.timers.GetByName(n), (*Timer).Set, ms); err != nil {
		fail(w, err)
		return
	}
	fmt.Fprint(w, "ok")
}

// key returns the k query parameter, or writes a 400.
func key(w http.ResponseWriter, r *http.Request) (string, bool) {
	k := r.URL.Query().Get("k")
	switch {
	case k == "":
		http.Error(w, "missing k", http.StatusBadRequest)
		return "", false
	case len(k) > durable.MaxKeySize:
		http.Error(w, fmt.Sprintf("key of %d bytes: the limit is %d", len(k), durable.MaxKeySize), http.StatusBadRequest)
		return "", false
	}
	return k, true
}

func (a *app) kvPut(w http.ResponseWriter, r *http.Request) {
	n, ok := name(w, r)
	if !ok {
		return
	}
	k, ok := key(w, r)
	if !ok {
		return
	}
	v := r.URL.Query().Get("v")
	if len(k)+len(v)+16 > durable.MaxEntrySize {
		http.Error(w, fmt.Sprintf("key plus value of %d bytes: the limit is %d", len(k)+len(v), durable.MaxEntrySize), http.StatusRequestEntityTooLarge)
		return
	}
	if err := durable.Do2(r.Context(), a.kvs.GetByName(n), (*KV).Put, k, v); err != nil {
		fail(w, err)
		return
	}
	fmt.Fprint(w, "ok")
}

func (a *app) kvGet(w http.ResponseWriter, r *http.Request) {
	n, ok := name(w, r)
	if !ok {
		return
	}
	k, ok := key(w, r)
	if !ok {
		return
	}
	f, err := durable.Call1(r.Context(), a.kvs.GetByName(n), (*KV).Lookup, k)
	if err != nil {
		fail(w, err)
		return
	}
	if !f.OK {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	fmt.Fprint(w, f.Value)
}

func (a *app) rpc(w http.ResponseWriter, r *http.Request) {
	n, ok := name(w, r)
	if !ok {
		return
	}
	note := r.URL.Query().Get("note")
	if len(note) > durable.MaxLength-1024 {
		http.Error(w, "note too long", http.StatusRequestEntityTooLarge)
		return
	}
	id, err := durable.Call1(r.Context(), a.notes.GetByName(n), (*Notes).Add, note)
	if err != nil {
		fail(w, err)
		return
	}
	fmt.Fprint(w, strconv.FormatInt(id, 10))
}
