package durable_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durable-go/durable"
	"github.com/durable-go/durable/internal/hook"
	"github.com/durable-go/durable/internal/inspect"
	"github.com/prometheus/client_golang/prometheus"
	"net"
)

const adminToken = "admin-test-token-0123456789"

// Tally keeps a number in memory, loaded from SQL when the object is
// constructed and written through on every change: after its storage is
// changed from outside, only a new activation sees the change.
type Tally struct {
	st  *durable.State
	sql *durable.SQL
	n   int64
	env tallyEnv
}

type tallyEnv struct {
	made    *atomic.Int64 // constructions
	release chan struct{} // Hold's WaitUntil function waits for it
}

func newTally(st *durable.State, env tallyEnv) (*Tally, error) {
	env.made.Add(1)
	t := &Tally{st: st, sql: st.Storage().SQL(), env: env}
	if _, err := t.sql.Exec("CREATE TABLE IF NOT EXISTS tally (id INTEGER PRIMARY KEY CHECK (id = 1), n INTEGER NOT NULL)"); err != nil {
		return nil, err
	}
	cur, err := t.sql.Exec("SELECT n FROM tally")
	if err != nil {
		return nil, err
	}
	if err := cur.One(&t.n); err != nil && !errors.Is(err, durable.ErrNoRows) {
		return nil, err
	}
	return t, nil
}

// Add adds d and returns the new value.
func (t *Tally) Add(ctx context.Context, d int64) (int64, error) {
	t.n += d
	_, err := t.sql.Exec("INSERT INTO tally VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET n = excluded.n", t.n)
	if err == nil {
		err = t.st.Storage().Put("last", d)
	}
	return t.n, err
}

// Hold keeps a WaitUntil function running until env.release is closed.
func (t *Tally) Hold(ctx context.Context) error {
	t.st.WaitUntil(func(ctx context.Context) {
		select {
		case <-t.env.release:
		case <-ctx.Done():
		}
	})
	return nil
}

// adminRuntime opens a runtime serving the admin API, with the Tally
// namespace registered, and a client of the API.
func adminRuntime(t *testing.T, dir string) (*durable.Runtime, *durable.Namespace[Tally], tallyEnv, *inspect.Client) {
	t.Helper()
	rt, err := durable.Open(durable.Options{Dir: dir, Durability: durable.NoSync, AdminAddr: "127.0.0.1:0", AdminToken: adminToken})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Shutdown(context.Background()) })
	env := tallyEnv{made: new(atomic.Int64), release: make(chan struct{})}
	ns, err := durable.Register(rt, "Tally", newTally, env)
	if err != nil {
		t.Fatal(err)
	}
	c, err := inspect.NewClient(rt.AdminURL(), adminToken, nil)
	if err != nil {
		t.Fatal(err)
	}
	return rt, ns, env, c
}

func add(t testing.TB, ns *durable.Namespace[Tally], name string, d int64) int64 {
	t.Helper()
	n, err := durable.Call1(context.Background(), ns.GetByName(name), (*Tally).Add, d)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestAdmin_Options(t *testing.T) {
	dir := t.TempDir()
	for _, o := range []durable.Options{
		{AdminAddr: "0.0.0.0:0", AdminToken: adminToken},
		{AdminAddr: ":0", AdminToken: adminToken},
		{AdminAddr: "192.0.2.1:7070", AdminToken: adminToken},
		{AdminAddr: "example.com:7070", AdminToken: adminToken},
		{AdminAddr: "127.0.0.1", AdminToken: adminToken}, // no port
		{AdminAddr: "127.0.0.1:0"},                       // no token
		{AdminAddr: "127.0.0.1:0", AdminToken: "short"},
		{AdminToken: adminToken}, // a token for nothing
	} {
		o.Dir = dir
		rt, err := durable.Open(o)
		if err == nil {
			rt.Close()
			t.Errorf("Open(%q, token %q) succeeded", o.AdminAddr, o.AdminToken)
			continue
		}
		if !strings.Contains(err.Error(), "Admin") {
			t.Errorf("Open(%q, token %q): unclear error %v", o.AdminAddr, o.AdminToken, err)
		}
	}
	// The failed Opens released the folder, and the API is off by default.
	rt, err := durable.Open(durable.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	if u := rt.AdminURL(); u != "" {
		t.Fatalf("AdminURL without AdminAddr: %q", u)
	}
	if _, err := rt.AdminHandler("short"); err == nil {
		t.Fatal("AdminHandler accepted a short token")
	}
	for _, addr := range []string{"[::1]:0", "localhost:0"} {
		rt, err := durable.Open(durable.Options{Dir: t.TempDir(), AdminAddr: addr, AdminToken: adminToken})
		if err != nil {
			if strings.Contains(err.Error(), "cannot assign") || strings.Contains(err.Error(), "address family") {
				continue // no IPv6 loopback here
			}
			t.Fatalf("%s: %v", addr, err)
		}
		if !strings.HasPrefix(rt.AdminURL(), "http://") {
			t.Errorf("%s: AdminURL %q", addr, rt.AdminURL())
		}
		rt.Close()
	}
}

// Ensure a request without the right token gets 401 and does nothing: no
// write, no import, no data read.
func TestAdmin_Token(t *testing.T) {
	dir := t.TempDir()
	rt, ns, env, c := adminRuntime(t, dir)
	add(t, ns, "x", 5)
	var dump bytes.Buffer
	if err := c.Export(context.Background(), "Tally", "x", inspect.FormatJSON, &dump); err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(dump.String(), `[[1,5]]`, `[[1,999]]`, 1)
	if changed == dump.String() {
		t.Fatalf("test setup: no row to change in %s", dump.String())
	}
	made := env.made.Load()
	for _, auth := range []string{"", "Bearer ", "Bearer not-the-token-0123456789", "Basic " + adminToken, "Bearer " + adminToken + "x", "Bearer  " + adminToken} {
		for _, r := range []struct{ method, path, body string }{
			{"POST", "/v1/objects/Tally/x/sql", `{"sql":"UPDATE tally SET n = 999","write":true}`},
			{"PUT", "/v1/objects/Tally/x/import?format=json", changed},
			{"GET", "/v1/objects/Tally/x/export?format=json", ""},
			{"GET", "/v1/objects/Tally/x/kv?key=last", ""},
		} {
			req, _ := http.NewRequest(r.method, rt.AdminURL()+r.path, strings.NewReader(r.body))
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized || bytes.Contains(body, []byte("tally")) {
				t.Errorf("%s %s, Authorization %q: %d %s, want 401", r.method, r.path, auth, resp.StatusCode, body)
			}
		}
	}
	// Nothing happened: the object was not even closed.
	if got := env.made.Load(); got != made {
		t.Errorf("refused requests reconstructed the object (%d constructions, want %d)", got, made)
	}
	if got := add(t, ns, "x", 1); got != 6 {
		t.Fatalf("after refused writes: got %d, want 6", got)
	}
	if _, err := c.Import(context.Background(), "Tally", "x", inspect.FormatJSON, strings.NewReader(changed)); err != nil {
		t.Fatal(err)
	}
	if got := add(t, ns, "x", 1); got != 1000 {
		t.Fatalf("after the authorized import: got %d, want 1000", got)
	}
}

// Ensure admin operations take the object's turn: listing and KV reads
// leave a live object in memory; SQL, exports and writes close it first,
// so its next event sees the new storage, never stale memory.
func TestAdmin_LiveObject(t *testing.T) {
	_, ns, env, c := adminRuntime(t, t.TempDir())
	ctx := context.Background()
	add(t, ns, "x", 5)
	made := env.made.Load()

	objs, err := c.Objects(ctx, "Tally")
	if err != nil || len(objs) != 1 || objs[0].Name != "x" {
		t.Fatalf("Objects: %+v, %v", objs, err)
	}
	kv, err := c.KVGet(ctx, "Tally", "x", []string{"last"})
	if err != nil || len(kv) != 1 || string(kv[0].Value) != "5" {
		t.Fatalf("KVGet: %+v, %v", kv, err)
	}
	if got := add(t, ns, "x", 1); got != 6 || env.made.Load() != made {
		t.Fatalf("after reads: %d with %d constructions, want 6 with %d", got, env.made.Load(), made)
	}

	res, err := c.Query(ctx, "Tally", "x", inspect.Query{SQL: "UPDATE tally SET n = n + 100", Write: true})
	if err != nil || res.Changes != 1 {
		t.Fatalf("write: %+v, %v", res, err)
	}
	if got := add(t, ns, "x", 1); got != 107 || env.made.Load() != made+1 {
		t.Fatalf("after an admin write: %d with %d constructions, want 107 with %d", got, env.made.Load(), made+1)
	}
	if _, err := c.Query(ctx, "Tally", "x", inspect.Query{SQL: "UPDATE tally SET n = 0"}); !errors.Is(err, inspect.ErrReadOnly) {
		t.Fatalf("write without Write: got %v, want ErrReadOnly", err)
	}
	if got := add(t, ns, "x", 0); got != 107 {
		t.Fatalf("after a refused write: got %d, want 107", got)
	}
	// An object of a namespace the app does not register is still reachable.
	if _, err := c.Object(ctx, "Other", "x"); !errors.Is(err, inspect.ErrNotFound) {
		t.Fatalf("object of an unregistered namespace: got %v, want ErrNotFound", err)
	}
}

// Ensure admin writes serialise with the object's own calls: none is lost.
func TestAdmin_Serialises(t *testing.T) {
	_, ns, _, c := adminRuntime(t, t.TempDir())
	ctx := context.Background()
	add(t, ns, "x", 0)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 25 {
				add(t, ns, "x", 1)
			}
		})
	}
	for range 5 {
		if _, err := c.Query(ctx, "Tally", "x", inspect.Query{SQL: "UPDATE tally SET n = n + 1000", Write: true}); err != nil {
			t.Error(err)
		}
	}
	wg.Wait()
	if got := add(t, ns, "x", 0); got != 5100 {
		t.Fatalf("got %d, want 5100: a write was lost", got)
	}
}

// Ensure an object with work in flight outside its turns is not closed
// under that work: the admin operation waits for it.
func TestAdmin_Busy(t *testing.T) {
	_, ns, env, c := adminRuntime(t, t.TempDir())
	add(t, ns, "x", 1)
	if err := durable.Do0(context.Background(), ns.GetByName("x"), (*Tally).Hold); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := c.Query(ctx, "Tally", "x", inspect.Query{SQL: "SELECT n FROM tally"}); err == nil {
		t.Fatal("SQL ran while a WaitUntil function of the object ran")
	}
	done := make(chan error, 1)
	go func() {
		_, err := c.Query(context.Background(), "Tally", "x", inspect.Query{SQL: "SELECT n FROM tally"})
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("SQL ran while a WaitUntil function of the object ran: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(env.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestAdmin_Shutdown(t *testing.T) {
	rt, ns, _, c := adminRuntime(t, t.TempDir())
	add(t, ns, "x", 1)
	if err := rt.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Objects(context.Background(), ""); err == nil {
		t.Fatal("the admin API answers after Shutdown")
	}
}

// Ensure references resolve with the data folder's ID keys, which
// migrations carry over: offline (the CLI's hook.FolderResolver) and
// through the admin API, after a class was renamed.
func TestAdmin_ResolveAfterRename(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	env := tallyEnv{made: new(atomic.Int64)}
	v1 := durable.Migration{Tag: "v1", NewSQLiteClasses: []string{"Room"}}
	rt, err := durable.Open(durable.Options{Dir: dir, Durability: durable.NoSync, Config: &durable.Config{Migrations: []durable.Migration{v1}}})
	if err != nil {
		t.Fatal(err)
	}
	rooms := durable.MustRegister(rt, "Room", newTally, env)
	if _, err := durable.Call1(ctx, rooms.GetByName("lobby"), (*Tally).Add, int64(7)); err != nil {
		t.Fatal(err)
	}
	want, _ := rooms.IDFromName("lobby")
	rt.Shutdown(ctx)

	v2 := durable.Migration{Tag: "v2", RenamedClasses: []durable.RenamedClass{{From: "Room", To: "Chat"}}}
	rt, err = durable.Open(durable.Options{Dir: dir, Durability: durable.NoSync, AdminAddr: "127.0.0.1:0", AdminToken: adminToken,
		Config: &durable.Config{Migrations: []durable.Migration{v1, v2}}})
	if err != nil {
		t.Fatal(err)
	}
	durable.MustRegister(rt, "Chat", newTally, env)
	c, err := inspect.NewClient(rt.AdminURL(), adminToken, nil)
	if err != nil {
		t.Fatal(err)
	}
	o, err := c.Object(ctx, "Chat", "lobby")
	if err != nil || o.ID != want.String() || o.Name != "lobby" {
		t.Fatalf("admin API after the rename: %+v, %v; want ID %s", o, err, want)
	}
	if _, err := c.Object(ctx, "Room", "lobby"); !errors.Is(err, inspect.ErrInvalid) || !strings.Contains(err.Error(), "renamed") {
		t.Fatalf("the old class name: got %v, want an error saying it was renamed", err)
	}
	rt.Shutdown(ctx)

	resolve, err := hook.FolderResolver(dir)
	if err != nil {
		t.Fatal(err)
	}
	id, err := resolve("Chat", "lobby")
	if err != nil || id.String() != want.String() {
		t.Fatalf("offline by name: %v, %v; want %s", id, err, want)
	}
	if name, _ := id.Name(); name != "lobby" {
		t.Fatalf("offline by name: name %q", name)
	}
	if again, err := resolve("Chat", want.String()); err != nil || again.String() != want.String() {
		t.Fatalf("offline by ID: %v, %v", again, err)
	}
	if _, err := resolve("Room", "lobby"); err == nil {
		t.Fatal("offline: the renamed class still resolves")
	}
	if _, err := resolve("Chat", strings.Repeat("ab", 32)); !errors.Is(err, durable.ErrForeignID) {
		t.Fatalf("offline, a foreign ID: got %v, want ErrForeignID", err)
	}
	if _, err := resolve("../x", "lobby"); err == nil {
		t.Fatal("offline: a bad namespace name resolved")
	}
	// A folder without migrations: keys come from the names.
	plain := t.TempDir()
	resolve, err = hook.FolderResolver(plain)
	if err != nil {
		t.Fatal(err)
	}
	rt, err = durable.Open(durable.Options{Dir: plain})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	others := durable.MustRegister(rt, "Other", newTally, env)
	id, err = resolve("Other", "x")
	if want, _ := others.IDFromName("x"); err != nil || id.String() != want.String() {
		t.Fatalf("folder without migrations: %v, %v; want %v", id, err, want)
	}
}

// Ensure the admin address serves the runtime's metrics at /metrics,
// behind the admin token like the rest of the API.
func TestAdmin_Metrics(t *testing.T) {
	rt, ns, _, _ := adminRuntime(t, t.TempDir())
	add(t, ns, "x", 5)
	get := func(auth string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", rt.AdminURL()+"/metrics", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	for _, auth := range []string{"", "Bearer not-the-token-0123456789", "Basic " + adminToken} {
		if code, body := get(auth); code != http.StatusUnauthorized || strings.Contains(body, "durable_") {
			t.Errorf("GET /metrics, Authorization %q: %d %.80q, want 401 without metrics", auth, code, body)
		}
	}
	code, body := get("Bearer " + adminToken)
	if code != http.StatusOK {
		t.Fatalf("GET /metrics with the token: %d %s", code, body)
	}
	want := `durable_calls_total{kind="rpc",namespace="Tally"} 1`
	if !strings.Contains(body, want) {
		t.Errorf("GET /metrics: no line %q in\n%s", want, body)
	}
}

// Ensure an Open that fails to start the admin API leaves the metrics
// registry it was given as it found it: a second Open can register there.
func TestAdmin_FailedOpenUnregistersMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close() // the admin address is taken
	dir := t.TempDir()
	if _, err := durable.Open(durable.Options{Dir: dir, Metrics: reg, AdminAddr: ln.Addr().String(), AdminToken: adminToken}); err == nil {
		t.Fatal("Open with a taken admin address succeeded")
	}
	rt, err := durable.Open(durable.Options{Dir: dir, Metrics: reg})
	if err != nil {
		t.Fatalf("Open after the failed one: %v", err)
	}
	rt.Close()
}
