package durable_test

import (
	"context"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/durable-go/durable"
	"github.com/durable-go/durable/internal/clock"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Meter is the object of the observability tests: a little of everything.
type Meter struct {
	st  *durable.State
	env *meterEnv
	n   int
}

type meterEnv struct {
	held    chan struct{} // Hold has the turn
	release chan struct{} // Hold returns
	fail    bool          // Alarm and WebSocketMessage fail
}

func newMeter(st *durable.State, e *meterEnv) (*Meter, error) { return &Meter{st: st, env: e}, nil }

func (m *Meter) Add(ctx context.Context, d int) (int, error) { m.n += d; return m.n, nil }

func (m *Meter) Fail(ctx context.Context) error { return errors.New("no") }

func (m *Meter) Panic(ctx context.Context) error { panic("boom") }

func (m *Meter) Put(ctx context.Context, keys []string) error {
	for _, k := range keys {
		if err := m.st.Storage().Put(k, 1); err != nil {
			return err
		}
	}
	return nil
}

func (m *Meter) Get(ctx context.Context, key string) (int, error) {
	var v int
	_, err := m.st.Storage().Get(key, &v)
	return v, err
}

func (m *Meter) SetAlarm(ctx context.Context, at time.Time) error {
	return m.st.Storage().SetAlarm(at)
}

// Hold keeps the object's turn until the test releases it.
func (m *Meter) Hold(ctx context.Context) error {
	m.env.held <- struct{}{}
	<-m.env.release
	return nil
}

func (m *Meter) Alarm(ctx context.Context, info durable.AlarmInfo) error {
	if m.env.fail {
		return errors.New("alarm failed")
	}
	return nil
}

func (m *Meter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/panic":
		panic("http boom")
	case r.Header.Get("Upgrade") != "":
		if _, err := m.st.AcceptWebSocket(w, r); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
		}
	default:
		io.WriteString(w, "ok")
	}
}

func (m *Meter) WebSocketMessage(ctx context.Context, ws *durable.WebSocket, msg durable.Message) error {
	if m.env.fail {
		return errors.New("message refused")
	}
	return ws.SendText(ctx, "echo "+msg.Text())
}

// metricsRig is a runtime on a fake clock with a Meter namespace, an HTTP
// server routing /{name}/ to it, and a loopback server for /metrics.
type metricsRig struct {
	rt      *durable.Runtime
	fc      *clock.Fake
	env     *meterEnv
	ns      *durable.Namespace[Meter]
	app     *httptest.Server
	metrics *httptest.Server
}

func newMetricsRig(t *testing.T, opts durable.Options) *metricsRig {
	t.Helper()
	r := &metricsRig{fc: clock.NewFake(t0), env: &meterEnv{held: make(chan struct{}), release: make(chan struct{})}}
	opts.Clock = r.fc
	opts.IdleTimeout = noEviction
	opts.AlarmRetryJitter = -1
	r.rt = openRuntime(t, opts)
	r.ns = durable.MustRegister(r.rt, "Meter", newMeter, r.env)
	durable.MustRegister(r.rt, "Idle", newMeter, r.env) // a namespace nobody calls
	r.app = httptest.NewServer(durable.Route(r.ns))
	t.Cleanup(r.app.Close)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", r.rt.MetricsHandler())
	r.metrics = httptest.NewServer(mux)
	t.Cleanup(r.metrics.Close)
	return r
}

// scrape gets /metrics over HTTP and parses it.
func (r *metricsRig) scrape(t *testing.T) scraped {
	t.Helper()
	resp, err := http.Get(r.metrics.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return mfs
}

// scraped are parsed metric families by name.
type scraped map[string]*dto.MetricFamily

// find returns the metric of family name whose labels are exactly labels
// (name=value pairs), or nil.
func (s scraped) find(name string, labels ...string) *dto.Metric {
	mf := s[name]
	if mf == nil {
		return nil
	}
	for _, m := range mf.GetMetric() {
		if len(m.GetLabel())*2 != len(labels) {
			continue
		}
		match := true
		for i := 0; i < len(labels); i += 2 {
			found := false
			for _, lp := range m.GetLabel() {
				if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
					found = true
				}
			}
			match = match && found
		}
		if match {
			return m
		}
	}
	return nil
}

// value returns the value of a counter or gauge; missing fails the test.
func (s scraped) value(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	m := s.find(name, labels...)
	if m == nil {
		t.Fatalf("no metric %s%v", name, labels)
	}
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	t.Fatalf("%s%v is neither a counter nor a gauge", name, labels)
	return 0
}

// histogram returns a histogram's count and sum; missing fails the test.
func (s scraped) histogram(t *testing.T, name string, labels ...string) (uint64, float64) {
	t.Helper()
	m := s.find(name, labels...)
	if m == nil || m.Histogram == nil {
		t.Fatalf("no histogram %s%v", name, labels)
	}
	return m.Histogram.GetSampleCount(), m.Histogram.GetSampleSum()
}

// want checks counters and gauges: name, labels… → value.
type wantValue struct {
	name   string
	labels []string
	value  float64
}

func (s scraped) check(t *testing.T, wants []wantValue) {
	t.Helper()
	for _, w := range wants {
		if got := s.value(t, w.name, w.labels...); got != w.value {
			t.Errorf("%s%v = %v, want %v", w.name, w.labels, got, w.value)
		}
	}
}

func calls(ns, kind string, n float64) wantValue {
	return wantValue{"durable_calls_total", []string{"namespace", ns, "kind", kind}, n}
}

func callErrors(ns, kind string, n float64) wantValue {
	return wantValue{"durable_call_errors_total", []string{"namespace", ns, "kind", kind}, n}
}

func nsValue(name, ns string, n float64) wantValue {
	return wantValue{name, []string{"namespace", ns}, n}
}

// Ensure /metrics, scraped over HTTP after a known workload, shows exactly
// the calls, errors, objects, rows, commits, alarms and WebSockets of the
// workload.
func TestMetrics_Workload(t *testing.T) {
	r := newMetricsRig(t, durable.Options{Dir: t.TempDir(), Durability: durable.Fsync})
	ctx := t.Context()

	// Nothing happened yet: every series of a namespace is there, at zero.
	s := r.scrape(t)
	s.check(t, []wantValue{calls("Meter", "rpc", 0), calls("Idle", "alarm", 0), nsValue("durable_objects_live", "Meter", 0)})

	// N RPC calls on M objects, one failing call, one panicking call.
	const N, M = 5, 3
	var stubs []*durable.Stub[Meter]
	for i := range M {
		stub := r.ns.GetByName("obj-" + string(rune('0'+i)))
		stubs = append(stubs, stub)
		for range N {
			if _, err := durable.Call1(ctx, stub, (*Meter).Add, 1); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := durable.Do0(ctx, stubs[0], (*Meter).Fail); err == nil {
		t.Fatal("Fail succeeded")
	}
	if err := durable.Do0(ctx, stubs[2], (*Meter).Panic); err == nil {
		t.Fatal("Panic succeeded")
	}

	// Storage: 3 rows written (one commit), 1 read (no commit).
	if err := durable.Do1(ctx, stubs[0], (*Meter).Put, []string{"a", "b", "c"}); err != nil {
		t.Fatal(err)
	}
	if v, err := durable.Call1(ctx, stubs[0], (*Meter).Get, "a"); err != nil || v != 1 {
		t.Fatalf("Get = %d, %v", v, err)
	}

	// An alarm (one commit) that fires 2 s late: its object is held while
	// the clock passes its time, so the handler starts at t0+3s (its
	// delivery commits the alarm's deletion).
	if err := durable.Do1(ctx, stubs[1], (*Meter).SetAlarm, t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	holdDone := make(chan error, 1)
	go func() { holdDone <- durable.Do0(context.Background(), stubs[1], (*Meter).Hold) }()
	<-r.env.held
	r.fc.Advance(3 * time.Second)
	if n := r.rt.AlarmStats().Running; n != 1 {
		t.Fatalf("alarms due = %d, want 1", n)
	}
	close(r.env.release)
	if err := <-holdDone; err != nil {
		t.Fatal(err)
	}
	settle(t, r.rt)

	// A fetch, and a WebSocket (its upgrade is a fetch too) with a message.
	resp, err := stubs[2].Fetch(ctx, httptest.NewRequest("GET", "/", nil))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("Fetch: %v, %v", resp, err)
	}
	c := dialWS(t, "ws"+strings.TrimPrefix(r.app.URL, "http")+"/room/", nil)
	if got := c.call("hi"); got != "echo hi" {
		t.Fatalf("echo = %q", got)
	}

	s = r.scrape(t)
	s.check(t, []wantValue{
		calls("Meter", "rpc", 3*N+2+2+1+1), // Add, Fail and Panic, Put and Get, SetAlarm, Hold
		callErrors("Meter", "rpc", 2),
		calls("Meter", "fetch", 2),
		callErrors("Meter", "fetch", 0),
		calls("Meter", "alarm", 1),
		callErrors("Meter", "alarm", 0),
		calls("Meter", "websocket_message", 1),
		calls("Meter", "websocket_close", 0),
		calls("Meter", "direct", 0),
		calls("Idle", "rpc", 0),
		nsValue("durable_objects_live", "Meter", 4), // obj-0, obj-1, obj-2 (again), room
		nsValue("durable_objects_hibernated", "Meter", 0),
		nsValue("durable_object_resets_total", "Meter", 1),
		nsValue("durable_object_evictions_total", "Meter", 0),
		nsValue("durable_storage_rows_written_total", "Meter", 3),
		nsValue("durable_storage_rows_read_total", "Meter", 1),
		nsValue("durable_alarms_set_total", "Meter", 1),
		nsValue("durable_alarms_fired_total", "Meter", 1),
		nsValue("durable_alarms_retried_total", "Meter", 0),
		nsValue("durable_alarms_failed_total", "Meter", 0),
		nsValue("durable_websockets_open", "Meter", 1),
		nsValue("durable_websockets_accepted_total", "Meter", 1),
		nsValue("durable_objects_live", "Idle", 0),
		{"durable_commits_total", nil, 3}, // Put, SetAlarm, the alarm's delivery
		{"durable_fsync_errors_total", nil, 0},
		{"durable_alarms_pending", nil, 0},
		{"durable_alarms_due", nil, 0},
		{"durable_alarms_dropped_total", nil, 0},
	})
	// Five constructions: obj-0, obj-1, obj-2 (reset by its panic, then
	// constructed again by the fetch), room.
	if n, _ := s.histogram(t, "durable_activation_duration_seconds", "namespace", "Meter"); n != 5 {
		t.Errorf("activations = %d, want 5", n)
	}
	if n, sum := s.histogram(t, "durable_alarm_lateness_seconds", "namespace", "Meter"); n != 1 || sum != 2 {
		t.Errorf("alarm lateness: %d observations summing to %vs, want 1 of 2s", n, sum)
	}
	// Every commit waited for an fsync; the fsyncs covered all 3 commits.
	if n, _ := s.histogram(t, "durable_commit_duration_seconds"); n != 3 {
		t.Errorf("commit durations = %d, want 3", n)
	}
	fsyncs, _ := s.histogram(t, "durable_fsync_duration_seconds")
	batches, covered := s.histogram(t, "durable_fsync_batch_commits")
	if fsyncs < 1 || fsyncs > 3 || batches != fsyncs || covered != 3 {
		t.Errorf("fsyncs = %d, batches = %d covering %v commits; want 1 to 3 fsyncs covering 3", fsyncs, batches, covered)
	}

	// Hibernation: evicted objects leave memory, the room's socket stays
	// open; a message wakes the room again.
	hibernate(t, r.rt)
	s = r.scrape(t)
	s.check(t, []wantValue{
		nsValue("durable_objects_live", "Meter", 0),
		nsValue("durable_objects_hibernated", "Meter", 1),
		nsValue("durable_object_evictions_total", "Meter", 4),
		nsValue("durable_websockets_open", "Meter", 1),
	})
	if got := c.call("again"); got != "echo again" {
		t.Fatalf("echo = %q", got)
	}
	s = r.scrape(t)
	s.check(t, []wantValue{
		calls("Meter", "websocket_message", 2),
		nsValue("durable_objects_live", "Meter", 1),
		nsValue("durable_objects_hibernated", "Meter", 0),
	})
	if n, _ := s.histogram(t, "durable_activation_duration_seconds", "namespace", "Meter"); n != 6 {
		t.Errorf("activations = %d, want 6", n)
	}
}

// Ensure failed and retried alarms are counted, and that NoSync commits
// are counted without commit latencies.
func TestMetrics_AlarmRetries(t *testing.T) {
	r := newMetricsRig(t, durable.Options{Durability: durable.NoSync, AlarmRetries: 1, AlarmRetryDelay: time.Second})
	r.env.fail = true
	stub := r.ns.GetByName("a")
	if err := durable.Do1(t.Context(), stub, (*Meter).SetAlarm, t0); err != nil {
		t.Fatal(err)
	}
	settle(t, r.rt)                       // first delivery fails
	advance(t, r.rt, r.fc, 2*time.Second) // the retry fails: dropped
	settle(t, r.rt)
	s := r.scrape(t)
	s.check(t, []wantValue{
		nsValue("durable_alarms_set_total", "Meter", 1),
		nsValue("durable_alarms_fired_total", "Meter", 2),
		nsValue("durable_alarms_retried_total", "Meter", 1),
		nsValue("durable_alarms_failed_total", "Meter", 2),
		calls("Meter", "alarm", 3), // two runs, then the drop
		callErrors("Meter", "alarm", 2),
		{"durable_alarms_dropped_total", nil, 1},
		{"durable_commits_total", nil, 2}, // SetAlarm, the drop
	})
	if n, sum := s.histogram(t, "durable_alarm_lateness_seconds", "namespace", "Meter"); n != 1 || sum != 0 {
		t.Errorf("alarm lateness: %d observations summing to %vs, want 1 of 0s (retries are not observed)", n, sum)
	}
	if n, _ := s.histogram(t, "durable_commit_duration_seconds"); n != 0 {
		t.Errorf("commit durations with NoSync = %d, want 0", n)
	}
}

// Ensure Options.Metrics receives the runtime's metrics, that a second
// runtime cannot register the same metrics there unless each has its own
// labels, and that Shutdown frees them for the next runtime.
func TestMetrics_Registerer(t *testing.T) {
	reg := prometheus.NewRegistry()
	gather := func(reg *prometheus.Registry) scraped {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		byName := scraped{}
		for _, mf := range mfs {
			byName[mf.GetName()] = mf
		}
		return byName
	}
	call := func(rt *durable.Runtime, ns string) {
		t.Helper()
		n := durable.MustRegister(rt, ns, newCounter, &env{})
		if _, err := durable.Call1(t.Context(), n.GetByName("x"), (*Counter).Add, 1); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	rt, err := durable.Open(durable.Options{Dir: dir, Durability: durable.NoSync, Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	call(rt, "Counter")
	gather(reg).check(t, []wantValue{calls("Counter", "rpc", 1)})
	if rt2, err := durable.Open(durable.Options{Dir: t.TempDir(), Metrics: reg}); err == nil {
		rt2.Close()
		t.Fatal("a second runtime registered the same metrics")
	}
	if err := rt.Close(); err != nil {
		t.Fatal(err)
	}
	if got := gather(reg)["durable_calls_total"]; got != nil {
		t.Fatalf("metrics still registered after Shutdown: %v", got)
	}

	rt, err = durable.Open(durable.Options{Dir: dir, Durability: durable.NoSync, Metrics: reg})
	if err != nil {
		t.Fatalf("Open after Shutdown: %v", err)
	}
	rt.Close()

	// Two runtimes in one registry, each with its own labels. (A registry
	// keeps the label names of a metric for its lifetime: hence a new one.)
	reg = prometheus.NewRegistry()
	for _, name := range []string{"a", "b"} {
		wrapped := prometheus.WrapRegistererWith(prometheus.Labels{"runtime": name}, reg)
		rt, err := durable.Open(durable.Options{Dir: t.TempDir(), Durability: durable.NoSync, Metrics: wrapped})
		if err != nil {
			t.Fatalf("runtime %s: %v", name, err)
		}
		defer rt.Close()
		call(rt, "Counter")
	}
	got := gather(reg)
	for _, name := range []string{"a", "b"} {
		if v := got.value(t, "durable_calls_total", "namespace", "Counter", "kind", "rpc", "runtime", name); v != 1 {
			t.Errorf("runtime %s: calls = %v, want 1", name, v)
		}
	}
}

// logRecorder is a slog.Handler that keeps every record.
type logRecorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r.Clone())
	return nil
}
func (h *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logRecorder) WithGroup(string) slog.Handler      { return h }

func (h *logRecorder) all() []slog.Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.records)
}

// Ensure every log record about an object carries its namespace and id:
// a panicking RPC (with the stack), a panicking and a failing ServeHTTP, a
// failing WebSocket handler and a failing alarm.
func TestLog_ObjectAttributes(t *testing.T) {
	rec := &logRecorder{}
	r := newMetricsRig(t, durable.Options{Durability: durable.NoSync, Logger: slog.New(rec), AlarmRetries: 1})
	ctx := t.Context()
	ids := map[string]string{} // object name -> ID
	id := func(name string) string {
		if ids[name] == "" {
			sid, err := r.ns.IDFromName(name)
			if err != nil {
				t.Fatal(err)
			}
			ids[name] = sid.String()
		}
		return ids[name]
	}

	if err := durable.Do0(ctx, r.ns.GetByName("rpc"), (*Meter).Panic); err == nil {
		t.Fatal("Panic succeeded")
	}
	resp, err := http.Get(r.app.URL + "/web/panic")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusInternalServerError {
		t.Fatalf("GET /web/panic: %s", resp.Status)
	}
	c := dialWS(t, "ws"+strings.TrimPrefix(r.app.URL, "http")+"/sock/", nil)
	r.env.fail = true
	c.sendText("x")
	if err := durable.Do1(ctx, r.ns.GetByName("alarm"), (*Meter).SetAlarm, t0); err != nil {
		t.Fatal(err)
	}
	settle(t, r.rt)
	waitFor(t, "the WebSocket handler's failure to be logged", func() bool {
		for _, rec := range rec.all() {
			if rec.Message == "websocket handler failed" {
				return true
			}
		}
		return false
	})

	want := map[string]string{ // message -> object name
		"object reset":                 "", // rpc and web
		"object panicked in ServeHTTP": "web",
		"websocket handler failed":     "sock",
		"alarm: failed, will retry":    "alarm",
	}
	seen := map[string]bool{}
	for _, rec := range rec.all() {
		attrs := map[string]string{}
		rec.Attrs(func(a slog.Attr) bool {
			attrs[a.Key] = a.Value.String()
			return true
		})
		ns, hasNS := attrs["namespace"]
		oid, hasID := attrs["id"]
		if !hasNS || !hasID {
			t.Errorf("record %q %v lacks namespace or id", rec.Message, attrs)
			continue
		}
		if ns != "Meter" {
			t.Errorf("record %q: namespace = %q, want Meter", rec.Message, ns)
		}
		if name, ok := want[rec.Message]; ok && name != "" && oid != id(name) {
			t.Errorf("record %q: id = %s, want %s's %s", rec.Message, oid, name, id(name))
		}
		if rec.Message == "object reset" {
			if oid != id("rpc") && oid != id("web") {
				t.Errorf("reset of an unexpected object %s", oid)
			}
			if !strings.Contains(attrs["stack"], "(*Meter).Panic") && !strings.Contains(attrs["stack"], "(*Meter).ServeHTTP") {
				t.Errorf("reset after a panic: stack %q does not show the panicking method", attrs["stack"])
			}
		}
		seen[rec.Message] = true
	}
	for msg := range want {
		if !seen[msg] {
			t.Errorf("no %q record", msg)
		}
	}
}

// Ensure no library package prints to stdout: logs go through the
// runtime's *slog.Logger (package main programs may print).
func TestNoPrintInLibraryCode(t *testing.T) {
	fset := token.NewFileSet()
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != "." && (name == "testdata" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		f, err := parser.ParseFile(fset, path, src, 0)
		if err != nil {
			return err
		}
		if f.Name.Name == "main" {
			return nil
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			switch fn := call.Fun.(type) {
			case *ast.SelectorExpr:
				if x, ok := fn.X.(*ast.Ident); ok && x.Name == "fmt" && strings.HasPrefix(fn.Sel.Name, "Print") {
					t.Errorf("%s: fmt.%s in library code", fset.Position(call.Pos()), fn.Sel.Name)
				}
			case *ast.Ident:
				if fn.Name == "print" || fn.Name == "println" {
					t.Errorf("%s: %s in library code", fset.Position(call.Pos()), fn.Name)
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Serve a runtime's metrics next to the application.
func ExampleRuntime_MetricsHandler() {
	rt, err := durable.Open(durable.Options{Dir: "data"})
	if err != nil {
		panic(err)
	}
	defer rt.Close()
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", rt.MetricsHandler())
	// mux.Handle("/rooms/", ...) and so on; then serve mux:
	_ = durable.NewServer(":8080", mux)
}
