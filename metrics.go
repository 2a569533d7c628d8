package durable

// Observability: the runtime's Prometheus metrics and the attributes of its
// log records. docs/observability.md lists every metric.
//
// The hot path (every call) costs one atomic add on a counter of the
// call's namespace and kind (striped by object ID), plus one more when the
// call fails. Counters the runtime keeps anyway (engine, durability, alarm
// scheduler, WebSocket hub) are read only when /metrics is scraped, by a
// custom Collector; only the histograms are prometheus types, observed off
// the per-call path (activation, commit, fsync, alarm delivery).

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/durable-go/durable/internal/durability"
	"github.com/durable-go/durable/internal/storage"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// MetricsHandler returns an http.Handler that serves the runtime's
// Prometheus metrics in the text exposition format: mount it at /metrics.
// It serves only the runtime's own metrics (see docs/observability.md),
// whether or not Options.Metrics is set, and keeps working after
// Shutdown. To serve them with others (Go runtime, process), set
// Options.Metrics to your registry and serve that instead.
func (rt *Runtime) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(rt.metrics.reg, promhttp.HandlerOpts{})
}

// callKind is the kind of event a turn delivers: the "kind" label of
// durable_calls_total.
type callKind uint8

const (
	kindRPC              callKind = iota // Call*, Do*, Stub.Call
	kindFetch                            // Stub.Fetch, Stub.ServeHTTP, Route
	kindAlarm                            // Alarm deliveries
	kindWebSocketMessage                 // WebSocketMessage
	kindWebSocketClose                   // WebSocketClose
	kindWebSocketError                   // WebSocketError
	kindDirect                           // a function run in a turn by durabletest or the admin API
	numKinds
)

var callKindNames = [numKinds]string{
	kindRPC:              "rpc",
	kindFetch:            "fetch",
	kindAlarm:            "alarm",
	kindWebSocketMessage: "websocket_message",
	kindWebSocketClose:   "websocket_close",
	kindWebSocketError:   "websocket_error",
	kindDirect:           "direct",
}

// socketKind returns the kind of the WebSocket event whose handler method
// is method.
func socketKind(method string) callKind {
	switch method {
	case "WebSocketClose":
		return kindWebSocketClose
	case "WebSocketError":
		return kindWebSocketError
	}
	return kindWebSocketMessage
}

// invoke delivers an RPC call to object id as one of its turns; see
// invokeKind (turn.go).
func (c *nsCore) invoke(ctx context.Context, id ID, name func() string, fn func(ctx context.Context, inst any) error) error {
	return c.invokeKind(ctx, kindRPC, id, name, fn)
}

// kindCounters count the events of one kind in one namespace (one stripe
// of them).
type kindCounters struct {
	calls, errors atomic.Uint64
}

// finish counts the event's failure if *err is set.
func (k *kindCounters) finish(err *error) {
	if *err != nil {
		k.errors.Add(1)
	}
}

// callStripes is how many copies of the event counters a namespace keeps,
// each object using the one its ID picks: calls to different objects from
// different cores then rarely write the same cache line.
const callStripes = 16

// callStripe is one copy of the event counters, 128 bytes long, so that
// the counters of neighbouring stripes never share a cache line.
type callStripe struct {
	kinds [numKinds]kindCounters
	_     [128 - numKinds*16]byte
}

// nsMetrics are the counters of one namespace. They have their own
// allocation, away from the namespace's read-only fields.
type nsMetrics struct {
	stripes [callStripes]callStripe

	live            atomic.Int64  // constructed and not yet closed activations
	evictions       atomic.Uint64 // activations closed without a cause
	resets          atomic.Uint64 // activations closed with a cause
	rowsRead        atomic.Uint64
	rowsWritten     atomic.Uint64
	alarmsSet       atomic.Uint64 // Storage.SetAlarm calls that succeeded
	alarmsFired     atomic.Uint64 // Alarm handler runs started
	alarmsRetried   atomic.Uint64 // of which retries
	alarmsFailed    atomic.Uint64 // scheduled deliveries that failed
	socketsAccepted atomic.Uint64

	activation prometheus.Observer // durable_activation_duration_seconds
	lateness   prometheus.Observer // durable_alarm_lateness_seconds
}

// counters returns the counters of events of kind for object id.
func (m *nsMetrics) counters(id ID, kind callKind) *kindCounters {
	return &m.stripes[id.raw[0]%callStripes].kinds[kind]
}

// events sums the stripes' counters of kind.
func (m *nsMetrics) events(kind callKind) (calls, errors uint64) {
	for i := range m.stripes {
		k := &m.stripes[i].kinds[kind]
		calls += k.calls.Load()
		errors += k.errors.Load()
	}
	return calls, errors
}

// activated records the construction of an object that took d; ok reports
// that it succeeded (the activation is live).
func (m *nsMetrics) activated(d time.Duration, ok bool) {
	m.activation.Observe(d.Seconds())
	if ok {
		m.live.Add(1)
	}
}

// closed records the closing of an activation; wasLive reports that its
// construction had succeeded, cause why it was reset (nil: evicted).
func (m *nsMetrics) closed(wasLive bool, cause error) {
	if !wasLive {
		return
	}
	m.live.Add(-1)
	if cause != nil {
		m.resets.Add(1)
	} else {
		m.evictions.Add(1)
	}
}

// alarmFired records the start of an Alarm handler for the alarm set for
// at, now; retry is the delivery's retry count, and forced deliveries
// (durabletest's FireAlarm) are not late.
func (m *nsMetrics) alarmFired(retry int, at, now time.Time, forced bool) {
	m.alarmsFired.Add(1)
	if retry > 0 {
		m.alarmsRetried.Add(1)
		return
	}
	if !forced {
		m.lateness.Observe(max(now.Sub(at), 0).Seconds())
	}
}

// harvestRows adds the rows db metered since the last harvest to the
// namespace's counters. It runs after each commit and before the database
// closes.
func (a *activation) harvestRows(db objectDB) {
	sdb, ok := db.(*storage.DB)
	if !ok {
		return
	}
	r, w := sdb.Rows()
	a.mu.Lock()
	dr, dw := r-a.rowsRead, w-a.rowsWritten
	a.rowsRead, a.rowsWritten = r, w
	a.mu.Unlock()
	if dr > 0 {
		a.c.m.rowsRead.Add(uint64(dr))
	}
	if dw > 0 {
		a.c.m.rowsWritten.Add(uint64(dw))
	}
}

// Buckets of the histograms, in seconds unless noted.
var (
	activationBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
	commitBuckets     = []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1}
	batchBuckets      = prometheus.ExponentialBuckets(1, 2, 11) // 1 … 1024 commits
	latenessBuckets   = []float64{.001, .005, .01, .05, .1, .5, 1, 5, 10, 30, 60, 300}
)

// metrics are the runtime's collectors. It is the Collector registered in
// the runtime's private registry (and in Options.Metrics), and the
// durability Group's Observer.
type metrics struct {
	reg  *prometheus.Registry // private: MetricsHandler serves it
	user prometheus.Registerer
	rt   *Runtime

	activation *prometheus.HistogramVec
	lateness   *prometheus.HistogramVec
	commit     prometheus.Histogram
	fsync      prometheus.Histogram
	batch      prometheus.Histogram
}

// Descriptions of the metrics read at collection time.
var (
	nsLabel = []string{"namespace"}

	descCalls        = prometheus.NewDesc("durable_calls_total", "Events delivered to objects as turns, by namespace and kind of event.", []string{"namespace", "kind"}, nil)
	descCallErrors   = prometheus.NewDesc("durable_call_errors_total", "Events that failed: the handler returned an error, panicked or aborted, or the object was overloaded, reset or could not be constructed, or its writes could not be made durable.", []string{"namespace", "kind"}, nil)
	descLive         = prometheus.NewDesc("durable_objects_live", "Objects in memory (constructed and not evicted or reset).", nsLabel, nil)
	descHibernated   = prometheus.NewDesc("durable_objects_hibernated", "Objects not in memory whose WebSockets are open.", nsLabel, nil)
	descEvictions    = prometheus.NewDesc("durable_object_evictions_total", "Objects evicted from memory (idle, EvictIdle or shutdown).", nsLabel, nil)
	descResets       = prometheus.NewDesc("durable_object_resets_total", "Objects reset: panic, Abort, failed BlockConcurrencyWhile, event timeout or failed write.", nsLabel, nil)
	descRowsRead     = prometheus.NewDesc("durable_storage_rows_read_total", "Rows read by SQL statements and KV calls, as Cursor.RowsRead meters them.", nsLabel, nil)
	descRowsWritten  = prometheus.NewDesc("durable_storage_rows_written_total", "Rows written by SQL statements and KV calls, as Cursor.RowsWritten meters them.", nsLabel, nil)
	descAlarmsSet    = prometheus.NewDesc("durable_alarms_set_total", "Storage.SetAlarm calls that succeeded (their turn may still roll back).", nsLabel, nil)
	descAlarmsFired  = prometheus.NewDesc("durable_alarms_fired_total", "Alarm handler runs started, retries included.", nsLabel, nil)
	descAlarmsRetry  = prometheus.NewDesc("durable_alarms_retried_total", "Alarm handler runs that were retries of a failed delivery.", nsLabel, nil)
	descAlarmsFailed = prometheus.NewDesc("durable_alarms_failed_total", "Alarm deliveries that failed (handler error, panic or Abort, or the object could not be reached); each is retried.", nsLabel, nil)
	descSocketsOpen  = prometheus.NewDesc("durable_websockets_open", "WebSockets accepted and not closing.", nsLabel, nil)
	descSocketsAcc   = prometheus.NewDesc("durable_websockets_accepted_total", "State.AcceptWebSocket calls that succeeded.", nsLabel, nil)

	descCommits     = prometheus.NewDesc("durable_commits_total", "Transactions committed by objects (turns that wrote).", nil, nil)
	descFsyncErrors = prometheus.NewDesc("durable_fsync_errors_total", "Fsyncs that failed (each resets the objects whose writes it carried).", nil, nil)
	descAlarmsPend  = prometheus.NewDesc("durable_alarms_pending", "Alarms and retries waiting for their time.", nil, nil)
	descAlarmsDue   = prometheus.NewDesc("durable_alarms_due", "Alarms due and not yet delivered, or being delivered.", nil, nil)
	descAlarmsDrop  = prometheus.NewDesc("durable_alarms_dropped_total", "Alarms given up after Options.AlarmRetries failed retries.", nil, nil)
	collectedDescs  = []*prometheus.Desc{descCalls, descCallErrors, descLive, descHibernated, descEvictions, descResets, descRowsRead, descRowsWritten, descAlarmsSet, descAlarmsFired, descAlarmsRetry, descAlarmsFailed, descSocketsOpen, descSocketsAcc, descCommits, descFsyncErrors, descAlarmsPend, descAlarmsDue, descAlarmsDrop}

	_ prometheus.Collector = (*metrics)(nil)
	_ durability.Observer  = (*metrics)(nil)
)

func newMetrics() *metrics {
	return &metrics{
		activation: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "durable_activation_duration_seconds",
			Help:    "Time to construct an object: its constructor and the commit of its writes.",
			Buckets: activationBuckets,
		}, nsLabel),
		lateness: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "durable_alarm_lateness_seconds",
			Help:    "Delay between an alarm's time and the start of its handler, on first deliveries (runtime clock).",
			Buckets: latenessBuckets,
		}, nsLabel),
		commit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "durable_commit_duration_seconds",
			Help:    "Time from a transaction's commit to its durability (the output gate's wait); not observed with NoSync.",
			Buckets: commitBuckets,
		}),
		fsync: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "durable_fsync_duration_seconds",
			Help:    "Duration of each fsync (or syncfs batch) that made commits durable.",
			Buckets: commitBuckets,
		}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "durable_fsync_batch_commits",
			Help:    "Commits made durable by each fsync (group commit).",
			Buckets: batchBuckets,
		}),
	}
}

// register registers m in a new private registry and in rt's
// Options.Metrics, if set.
func (m *metrics) register(rt *Runtime) error {
	m.rt = rt
	m.reg = prometheus.NewRegistry()
	if err := m.reg.Register(m); err != nil {
		return err
	}
	if rt.opts.Metrics != nil {
		if err := rt.opts.Metrics.Register(m); err != nil {
			return err
		}
		m.user = rt.opts.Metrics
	}
	return nil
}

// unregister removes m from Options.Metrics.
func (m *metrics) unregister() {
	if m.user != nil {
		m.user.Unregister(m)
	}
}

// namespace returns the counters of a new namespace.
func (m *metrics) namespace(name string) *nsMetrics {
	return &nsMetrics{
		activation: m.activation.WithLabelValues(name),
		lateness:   m.lateness.WithLabelValues(name),
	}
}

// Synced implements durability.Observer.
func (m *metrics) Synced(elapsed time.Duration, commits int) {
	m.fsync.Observe(elapsed.Seconds())
	m.batch.Observe(float64(commits))
}

// Durable implements durability.Observer.
func (m *metrics) Durable(wait time.Duration) { m.commit.Observe(wait.Seconds()) }

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range collectedDescs {
		ch <- d
	}
	m.activation.Describe(ch)
	m.lateness.Describe(ch)
	m.commit.Describe(ch)
	m.fsync.Describe(ch)
	m.batch.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	rt := m.rt
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}

	rt.mu.Lock()
	nss := make(map[string]*nsMetrics, len(rt.namespaces))
	for name, c := range rt.namespaces {
		nss[name] = c.m
	}
	rt.mu.Unlock()

	// WebSockets and hibernated objects, from the hub and the engine.
	open := make(map[string]int64, len(nss))
	hibernated := make(map[string]int64, len(nss))
	rt.hub.Objects(func(key string, n int) {
		ns, _, _ := strings.Cut(key, "/") // see nsCore.objectKey
		open[ns] += int64(n)
		if o := rt.eng.Lookup(key); o == nil || o.Activation() == nil {
			hibernated[ns]++
		}
	})

	for name, c := range nss {
		for k := range numKinds {
			calls, errors := c.events(k)
			counter(descCalls, calls, name, callKindNames[k])
			counter(descCallErrors, errors, name, callKindNames[k])
		}
		gauge(descLive, c.live.Load(), name)
		gauge(descHibernated, hibernated[name], name)
		counter(descEvictions, c.evictions.Load(), name)
		counter(descResets, c.resets.Load(), name)
		counter(descRowsRead, c.rowsRead.Load(), name)
		counter(descRowsWritten, c.rowsWritten.Load(), name)
		counter(descAlarmsSet, c.alarmsSet.Load(), name)
		counter(descAlarmsFired, c.alarmsFired.Load(), name)
		counter(descAlarmsRetry, c.alarmsRetried.Load(), name)
		counter(descAlarmsFailed, c.alarmsFailed.Load(), name)
		gauge(descSocketsOpen, open[name], name)
		counter(descSocketsAcc, c.socketsAccepted.Load(), name)
	}

	ds := rt.dur.Stats()
	counter(descCommits, ds.Commits)
	counter(descFsyncErrors, ds.SyncFailures)
	as := rt.alarms.Stats()
	gauge(descAlarmsPend, int64(as.Scheduled))
	gauge(descAlarmsDue, int64(as.Running))
	counter(descAlarmsDrop, as.Dropped)

	m.activation.Collect(ch)
	m.lateness.Collect(ch)
	m.commit.Collect(ch)
	m.fsync.Collect(ch)
	m.batch.Collect(ch)
}

// resetAttrs are the attributes of the log record of an object's reset:
// its namespace and ID, the cause and, for a panic, the stack.
func resetAttrs(ns string, id ID, cause error) []any {
	attrs := []any{"namespace", ns, "id", id.String(), "cause", cause}
	if p, ok := cause.(*panicError); ok {
		attrs = append(attrs, "stack", string(p.stack))
	}
	return attrs
}
