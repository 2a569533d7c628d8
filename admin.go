package durable

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/durable-go/durable/internal/engine"
	"github.com/durable-go/durable/internal/hook"
	"github.com/durable-go/durable/internal/inspect"
	"github.com/durable-go/durable/internal/storage"
)

// The admin API: the operations of the durable CLI (cmd/durable) on a
// running app. The CLI works on a data folder directly when no app has it
// open; while an app runs (and holds the folder's lock) it asks the app's
// admin API instead, and prints the same thing.
//
// Every operation on an object holds the object's turn, so it serialises
// with the object's own events exactly as a call would, without
// constructing the object:
//
//   - Listing (ls, alarms) and KV reads read an object that is in memory
//     through its open database (and roll back the read transaction); an
//     object that is not in memory is read from its file.
//   - SQL, exports, backups, checks and every write need the database to
//     themselves: an object in memory is first closed, exactly as an idle
//     eviction closes it (its WebSockets stay connected, hibernated), and
//     the operation opens the file itself: reads through a read-only
//     SQLite connection, writes through the runtime's storage layer, made
//     durable (and an imported alarm announced to the scheduler) before
//     the operation returns. The object's next event constructs it again
//     from storage, so it never sees stale memory after an import. An
//     object with work in flight outside its turns (WaitUntil) or a
//     handler waiting on another object is not closed under it: the
//     operation waits for that to end, up to AdminBusyWait, then fails.
//
// Neither kind runs the object's code.

// MinAdminTokenLength is the shortest admin token accepted.
const MinAdminTokenLength = 16

// AdminBusyWait bounds how long an admin operation that needs an object's
// database to itself waits for the object's work in flight to end.
const AdminBusyWait = 30 * time.Second

func init() {
	hook.FolderResolver = func(dir string) (func(namespace, ref string) (hook.ObjectID, error), error) {
		ct, err := readClasses(dir)
		if err != nil {
			return nil, err
		}
		return func(namespace, ref string) (hook.ObjectID, error) { return resolveID(ct, namespace, ref) }, nil
	}
}

// resolveID returns the ID that ref names in namespace, with the ID keys
// of ct: if ref is 64 lowercase hexadecimal digits it is parsed as an ID
// (and must be one of namespace), otherwise it is an object name and the
// ID carries it. It fails for a namespace name Register would refuse.
func resolveID(ct *classTable, namespace, ref string) (ID, error) {
	if !namespaceName.MatchString(namespace) {
		return ID{}, fmt.Errorf("durable: namespace name %q: want 1-63 letters, digits, '_' or '-', starting with a letter", namespace)
	}
	k, err := ct.key(namespace)
	if err != nil {
		return ID{}, err
	}
	if len(ref) == 64 && isLowerHex(ref) {
		return k.parse(namespace, ref)
	}
	return k.fromName(namespace, ref)
}

// readClasses reads the class table of the data folder dir from its
// migration record, changing nothing (unlike openClasses, which applies
// migrations): what the CLI needs to resolve references offline.
func readClasses(dir string) (*classTable, error) {
	st, err := readState(dir)
	if err != nil {
		return nil, err
	}
	if st.Pending != nil {
		return nil, fmt.Errorf("%w: the data folder %s has a migration in progress: open it with the app once to finish it", ErrMigration, dir)
	}
	ct := &classTable{dir: dir, active: len(st.Applied) > 0, keys: make(map[string]idKey, len(st.Classes)), gone: st.Gone}
	for name, rec := range st.Classes {
		var k idKey
		if n, err := hex.Decode(k[:], []byte(rec.Key)); err != nil || n != len(k) {
			return nil, fmt.Errorf("%w: %s: class %q has a malformed ID key", ErrMigration, migrationsFile, name)
		}
		ct.keys[name] = k
	}
	return ct, nil
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// adminState is the admin API of a runtime.
type adminState struct {
	once sync.Once
	api  inspect.API // the folder, seen through objects' turns
	err  error

	srv  *http.Server  // serves Options.AdminAddr; nil if not set
	url  string        // its URL
	done chan struct{} // closed when srv stops serving
}

// adminAPI returns the runtime's admin API, making it on first use.
func (rt *Runtime) adminAPI() (inspect.API, error) {
	a := &rt.admin
	a.once.Do(func() {
		var f *inspect.Folder
		f, a.err = inspect.NewFolder(inspect.Config{
			Dir:             rt.opts.Dir,
			Resolve:         inspect.IDResolver(func(ns, ref string) (ID, error) { return resolveID(rt.classes, ns, ref) }),
			Gate:            adminGate{rt},
			Durability:      rt.dur,
			Spares:          rt.spares,
			Alarms:          rt.alarms,
			MaxDatabaseSize: rt.opts.MaxDatabaseSize,
		})
		a.api = loggedAPI{API: f, log: rt.log}
	})
	return a.api, a.err
}

// AdminHandler returns the HTTP handler of the admin API, for serving it
// yourself (Options.AdminAddr serves it on a loopback address). Requests
// must carry "Authorization: Bearer <token>"; token is compared in
// constant time, and a request without it, or with another, gets 401 and
// does nothing. The token must have at least MinAdminTokenLength
// characters.
//
// The handler also serves the runtime's Prometheus metrics at GET
// /metrics (MetricsHandler), behind the same token: a scraper sends it as
// its bearer token.
//
// The API reads and writes every object's data: serve it where only
// operators can reach it, over TLS if it leaves the machine. The routes
// are documented in docs/cli.md.
func (rt *Runtime) AdminHandler(token string) (http.Handler, error) {
	if len(token) < MinAdminTokenLength {
		return nil, fmt.Errorf("durable: admin token: %d characters, want at least %d", len(token), MinAdminTokenLength)
	}
	api, err := rt.adminAPI()
	if err != nil {
		return nil, err
	}
	return inspect.NewHandler(api, token, inspect.Route{Pattern: "GET /metrics", Handler: rt.MetricsHandler()})
}

// AdminURL returns the URL of the admin API that Options.AdminAddr
// serves, such as "http://127.0.0.1:7070" (with the port chosen if the
// address asked for port 0), or "" if it is not served.
func (rt *Runtime) AdminURL() string { return rt.admin.url }

// startAdmin serves the admin API on Options.AdminAddr, if set. The
// address must be a loopback one (127.0.0.0/8, ::1 or localhost).
func startAdmin(rt *Runtime) error {
	addr := rt.opts.AdminAddr
	if addr == "" {
		if rt.opts.AdminToken != "" {
			return errors.New("durable: Options: AdminToken without AdminAddr")
		}
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("durable: Options.AdminAddr %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("durable: Options.AdminAddr %q: the admin API listens only on a loopback address (127.0.0.1, ::1, localhost)", addr)
	}
	h, err := rt.AdminHandler(rt.opts.AdminToken)
	if err != nil {
		return fmt.Errorf("durable: Options.AdminToken: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("durable: admin API: %w", err)
	}
	if tcp, ok := ln.Addr().(*net.TCPAddr); !ok || !tcp.IP.IsLoopback() {
		ln.Close()
		return fmt.Errorf("durable: Options.AdminAddr %q: listening on %v, not a loopback address", addr, ln.Addr())
	}
	a := &rt.admin
	a.srv = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: DefaultReadHeaderTimeout,
		MaxHeaderBytes:    DefaultMaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(rt.log.Handler(), slog.LevelWarn),
	}
	a.url = "http://" + ln.Addr().String()
	a.done = make(chan struct{})
	go func() {
		defer close(a.done)
		a.srv.Serve(ln)
	}()
	rt.log.Info("admin API listening", "url", a.url)
	return nil
}

// stopAdmin stops serving the admin API: it waits for the requests in
// flight until ctx ends, then cuts them.
func (rt *Runtime) stopAdmin(ctx context.Context) error {
	a := &rt.admin
	if a.srv == nil {
		return nil
	}
	err := a.srv.Shutdown(ctx)
	if err != nil {
		a.srv.Close()
	}
	<-a.done
	return err
}

// adminGate implements inspect.Gate with objects' turns.
type adminGate struct{ rt *Runtime }

var _ inspect.Gate = adminGate{}

// enter takes the turn of ref's object, whether or not its namespace is
// registered (the engine key depends only on the namespace's name and
// the ID).
func (g adminGate) enter(ctx context.Context, ref inspect.Ref) (*engine.Object, uint64, error) {
	id := ID{ns: ref.Namespace}
	if n, err := hex.Decode(id.raw[:], []byte(ref.ID)); err != nil || n != len(id.raw) {
		return nil, 0, fmt.Errorf("%w: object ID %q", inspect.ErrInvalid, ref.ID)
	}
	key := (&nsCore{name: ref.Namespace}).objectKey(id)
	o, err := g.rt.eng.Enter(key)
	if err != nil {
		return nil, 0, err
	}
	tok, err := o.Acquire(ctx, false)
	if err != nil {
		o.Leave()
		return nil, 0, err
	}
	return o, tok, nil
}

func leaveTurn(o *engine.Object, tok uint64) {
	o.Release(tok)
	o.Leave()
}

// Peek implements inspect.Gate.
func (g adminGate) Peek(ctx context.Context, ref inspect.Ref, fn func(live *storage.DB) error) error {
	o, tok, err := g.enter(ctx, ref)
	if err != nil {
		return err
	}
	defer leaveTurn(o, tok)
	var db *storage.DB
	if a, ok := o.Activation().(*activation); ok {
		a.mu.Lock()
		if !a.closed {
			db, _ = a.db.(*storage.DB)
		}
		a.mu.Unlock()
	}
	if db == nil {
		return fn(nil)
	}
	if db.InTx() {
		// Between turns an object has no open transaction; never roll
		// back one we did not begin.
		return fmt.Errorf("%w: %s %s: a transaction is open outside a turn", inspect.ErrBusy, ref.Namespace, ref.ID)
	}
	defer db.Rollback()
	return fn(db)
}

// Exclusive implements inspect.Gate.
func (g adminGate) Exclusive(ctx context.Context, ref inspect.Ref, fn func() error) error {
	deadline := time.Now().Add(AdminBusyWait)
	for wait := time.Millisecond; ; wait = min(2*wait, 100*time.Millisecond) {
		o, tok, err := g.enter(ctx, ref)
		if err != nil {
			return err
		}
		a, _ := o.Activation().(*activation)
		busy := false
		if a != nil {
			a.mu.Lock()
			busy = a.turn != nil // a handler waits on another object
			a.mu.Unlock()
			busy = busy || a.Busy() // WaitUntil functions run
		}
		if !busy {
			if a != nil {
				o.Reset(a, nil) // closes it as an eviction does
			}
			err := fn()
			leaveTurn(o, tok)
			return err
		}
		leaveTurn(o, tok)
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: %s %s: work in flight for over %v", inspect.ErrBusy, ref.Namespace, ref.ID, AdminBusyWait)
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return context.Cause(ctx)
		}
	}
}

// loggedAPI logs the admin API's writes.
type loggedAPI struct {
	inspect.API
	log *slog.Logger
}

// Query implements inspect.API, logging writes.
func (l loggedAPI) Query(ctx context.Context, namespace, ref string, q inspect.Query) (*inspect.Result, error) {
	res, err := l.API.Query(ctx, namespace, ref, q)
	if q.Write {
		attrs := []any{"namespace", namespace, "object", ref, "sql", q.SQL}
		if err != nil {
			l.log.Warn("admin SQL write failed", append(attrs, "err", err)...)
		} else {
			l.log.Info("admin SQL write", append(attrs, "changes", res.Changes)...)
		}
	}
	return res, err
}

// Import implements inspect.API, logging the import.
func (l loggedAPI) Import(ctx context.Context, namespace, ref string, format inspect.Format, r io.Reader) (*inspect.ImportResult, error) {
	res, err := l.API.Import(ctx, namespace, ref, format, r)
	if err != nil {
		l.log.Warn("admin import failed", "namespace", namespace, "object", ref, "err", err)
	} else {
		l.log.Info("admin import", "namespace", namespace, "id", res.ID, "tables", res.Tables, "rows", res.Rows, "kv", res.KV)
	}
	return res, err
}
