package durable

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/durable-go/durable/internal/alarm"
	"github.com/durable-go/durable/internal/clock"
	"github.com/durable-go/durable/internal/durability"
	"github.com/durable-go/durable/internal/engine"
	"github.com/durable-go/durable/internal/socket"
	"github.com/durable-go/durable/internal/storage"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults of Options.
const (
	DefaultDir = "durable-data"
	// DefaultIdleTimeout is how long an idle object that can hibernate
	// stays in memory (Cloudflare: 10 s).
	DefaultIdleTimeout = 10 * time.Second
	// DefaultPinnedIdleTimeout is the idle time of an object whose type
	// reports Hibernatable() == false (Cloudflare: 70 s).
	DefaultPinnedIdleTimeout = 70 * time.Second
	// DefaultBlockConcurrencyTimeout bounds BlockConcurrencyWhile and
	// constructors (Cloudflare: 30 s).
	DefaultBlockConcurrencyTimeout = 30 * time.Second
	// DefaultMaxQueue bounds the calls waiting for one object; past it
	// calls fail at once with ErrOverloaded.
	DefaultMaxQueue = engine.DefaultMaxQueue
)

// Durability chooses when a write counts as done.
type Durability int

const (
	// Fsync (the default) holds every reply until the writes before it are
	// fsynced: an acknowledged write survives a power loss. Concurrent
	// commits share fsyncs (group commit).
	Fsync Durability = iota
	// NoSync releases replies once writes reach the operating system: they
	// survive a crash of the process, not of the machine. For tests and
	// caches.
	NoSync
)

// Clock is the time source of a runtime. Tests pass a fake one (see the
// durabletest package) to drive eviction, alarms and timeouts without
// sleeping.
type Clock = clock.Clock

// Timer is a call scheduled by Clock.AfterFunc; Stop cancels it.
type Timer = clock.Timer

// Options configure a Runtime. The zero value is ready to use: data in
// ./durable-data, fsync durability, Cloudflare's timeouts.
type Options struct {
	// Dir is the data folder. It is created if missing and locked while the
	// runtime is open, so two processes never open the same objects.
	Dir string
	// Durability is Fsync (default) or NoSync.
	Durability Durability
	// IdleTimeout is how long an idle object stays in memory before it is
	// evicted (its WebSockets stay open: it hibernates). 0 means
	// DefaultIdleTimeout.
	IdleTimeout time.Duration
	// PinnedIdleTimeout is the idle time of objects that report
	// Hibernatable() == false. 0 means DefaultPinnedIdleTimeout.
	PinnedIdleTimeout time.Duration
	// BlockConcurrencyTimeout bounds constructors and BlockConcurrencyWhile.
	// 0 means DefaultBlockConcurrencyTimeout.
	BlockConcurrencyTimeout time.Duration
	// MaxQueue bounds the calls waiting for one object. 0 means
	// DefaultMaxQueue.
	MaxQueue int
	// MaxLiveObjects bounds the objects in memory at once. Past it, the
	// least recently used idle objects are evicted early (their WebSockets
	// hibernate), so that their open databases (two or three file
	// descriptors each) cannot exhaust the process's descriptors. 0 means
	// DefaultMaxLiveObjects(); negative means no bound.
	MaxLiveObjects int
	// MaxDatabaseSize bounds each object's database, in bytes. 0 means
	// DefaultMaxDatabaseSize (10 GB); below MinDatabaseSize (64 KiB) Open
	// fails.
	MaxDatabaseSize int64
	// AlarmRetries is how often a failing alarm is retried before it is
	// dropped (and logged and counted in AlarmStats). 0 means
	// DefaultAlarmRetries (6); negative means no retry.
	AlarmRetries int
	// AlarmRetryDelay is the wait before an alarm's first retry; each
	// further retry waits twice as long. 0 means DefaultAlarmRetryDelay.
	AlarmRetryDelay time.Duration
	// AlarmRetryJitter is the largest random fraction added to each retry's
	// wait. 0 means DefaultAlarmRetryJitter (0.25); negative means none.
	AlarmRetryJitter float64
	// AlarmConcurrency bounds the alarms delivered at once. 0 means
	// DefaultAlarmConcurrency.
	AlarmConcurrency int
	// AdminAddr, if set, serves the admin API (the durable CLI's operations
	// on this running app, see Runtime.AdminHandler and docs/cli.md) on
	// this address, which must be a loopback one, such as "127.0.0.1:7070"
	// (port 0 picks one: see Runtime.AdminURL). Off by default.
	AdminAddr string
	// AdminToken is the bearer token the admin API requires, at least
	// MinAdminTokenLength characters; required with AdminAddr.
	AdminToken string
	// Clock is the time source; nil means the wall clock.
	Clock Clock
	// Config declares bindings and class migrations (see LoadConfig and
	// docs/config.md). Open applies the migrations not yet applied to Dir.
	// nil means none: any namespace may be registered, unless migrations
	// were applied to Dir before, whose record then stays in force.
	Config *Config
	// Logger receives the runtime's structured logs; nil discards them.
	// Records about one object carry its "namespace" and "id" attributes.
	Logger *slog.Logger
	// Metrics, if set, is where the runtime also registers its Prometheus
	// metrics (see Runtime.MetricsHandler and docs/observability.md);
	// Shutdown unregisters them. Open fails if they are registered there
	// already: runtimes sharing a registry must each wrap it with labels of
	// their own (prometheus.WrapRegistererWith).
	Metrics prometheus.Registerer
}

// Runtime hosts namespaces of objects. It is safe for concurrent use.
type Runtime struct {
	opts   Options
	eng    *engine.Engine
	dur    *durability.Group
	spares *storage.Spares
	alarms *alarm.Scheduler
	hub    *socket.Hub // WebSockets, outside activations (websocket.go)
	log    *slog.Logger
	lockFD *os.File
	admin  adminState // the admin API (admin.go)

	classes *classTable // classes, ID keys and bindings (migrate.go)

	metrics *metrics // Prometheus collectors (metrics.go)

	mu         sync.Mutex // guards namespaces, closed
	namespaces map[string]*nsCore
	closed     bool

	bg       sync.WaitGroup // WaitUntil goroutines
	bgCtx    context.Context
	bgCancel context.CancelFunc
}

// ErrLocked means another process has the data folder open.
var ErrLocked = errors.New("durable: data folder is in use by another process")

// Open starts a runtime over opts.Dir.
func Open(opts Options) (*Runtime, error) { return open(opts, durability.Config{}) }

// open opens a runtime; tests set the sync functions and batching of dur,
// and may choose dur.PerFile. A journal left by an earlier run is recovered
// first either way.
func open(opts Options, dur durability.Config) (*Runtime, error) {
	if opts.Dir == "" {
		opts.Dir = DefaultDir
	}
	if opts.IdleTimeout == 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.PinnedIdleTimeout == 0 {
		opts.PinnedIdleTimeout = DefaultPinnedIdleTimeout
	}
	if opts.BlockConcurrencyTimeout == 0 {
		opts.BlockConcurrencyTimeout = DefaultBlockConcurrencyTimeout
	}
	if opts.MaxQueue == 0 {
		opts.MaxQueue = DefaultMaxQueue
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.IdleTimeout < 0 || opts.PinnedIdleTimeout < 0 || opts.BlockConcurrencyTimeout < 0 || opts.MaxQueue < 0 {
		return nil, errors.New("durable: Options: negative timeout or queue size")
	}
	if opts.MaxDatabaseSize != 0 && opts.MaxDatabaseSize < MinDatabaseSize {
		return nil, fmt.Errorf("durable: Options: MaxDatabaseSize %d is below the minimum %d", opts.MaxDatabaseSize, MinDatabaseSize)
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("durable: open: %w", err)
	}
	lockFD, err := os.OpenFile(filepath.Join(opts.Dir, ".lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("durable: open: %w", err)
	}
	if err := syscall.Flock(int(lockFD.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lockFD.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s", ErrLocked, opts.Dir)
		}
		return nil, fmt.Errorf("durable: lock %s: %w", opts.Dir, err)
	}
	mode := durability.Fsync
	if opts.Durability == NoSync {
		mode = durability.NoSync
	}
	dur.Mode = mode
	m := newMetrics()
	dur.Observer = m
	// Recover the journal before anything reads an object's database:
	// migrations move and delete them.
	dur.Root = opts.Dir
	dur.Journal = filepath.Join(opts.Dir, durability.JournalDir)
	group, rec, err := durability.Open(dur)
	if err != nil {
		lockFD.Close()
		return nil, fmt.Errorf("durable: open: %w", err)
	}
	if !rec.Clean {
		opts.Logger.Info("durable: recovered the journal after an unclean stop",
			"records", rec.Records, "replayed", rec.Replayed, "files", rec.Files, "skipped", rec.Skipped)
	}
	classes, err := openClasses(opts.Dir, opts.Config) // migrate.go
	if err != nil {
		group.Close()
		lockFD.Close()
		return nil, err
	}
	sweep := min(opts.IdleTimeout, opts.PinnedIdleTimeout) / 4
	sweep = max(sweep, time.Millisecond)
	rt := &Runtime{
		metrics:    m,
		opts:       opts,
		log:        opts.Logger,
		lockFD:     lockFD,
		classes:    classes,
		namespaces: make(map[string]*nsCore),
		dur:        group,
		eng: engine.New(engine.Config{
			Clock:         opts.Clock,
			MaxQueue:      opts.MaxQueue,
			MaxLive:       maxLive(opts.MaxLiveObjects),
			SweepInterval: min(sweep, engine.DefaultSweepInterval),
			Logger:        opts.Logger,
		}),
	}
	rt.spares, err = storage.NewSpares(storage.SparesConfig{
		Dir:  filepath.Join(opts.Dir, ".spares"),
		Sync: mode == durability.Fsync,
	})
	if err != nil {
		rt.eng.Shutdown(context.Background())
		rt.dur.Close()
		lockFD.Close()
		return nil, fmt.Errorf("durable: open: %w", err)
	}
	if err := openAlarms(rt); err != nil { // alarm.go
		rt.spares.Close()
		rt.eng.Shutdown(context.Background())
		rt.dur.Close()
		lockFD.Close()
		return nil, err
	}
	rt.bgCtx, rt.bgCancel = context.WithCancel(context.Background())
	rt.hub = socket.NewHub(socket.Config{Clock: opts.Clock, Logger: opts.Logger})
	if err := m.register(rt); err != nil {
		rt.Close()
		return nil, err
	}
	// After the metrics: the admin API serves them.
	if err := startAdmin(rt); err != nil { // admin.go
		rt.Close()
		return nil, err
	}
	return rt, nil
}

// Dir returns the data folder.
func (rt *Runtime) Dir() string { return rt.opts.Dir }

// Shutdown stops the runtime gracefully: new calls fail with ErrClosed,
// calls in flight finish (until ctx ends), WaitUntil functions are
// cancelled and awaited, every object is closed and the data folder is
// unlocked. It leaves no goroutine behind.
func (rt *Runtime) Shutdown(ctx context.Context) error {
	rt.mu.Lock()
	if rt.closed {
		rt.mu.Unlock()
		return nil
	}
	rt.closed = true
	rt.mu.Unlock()

	rt.stopAdmin(ctx) // admin requests finish (until ctx ends) first: admin.go
	rt.alarms.Stop()  // no new alarm deliveries; those running finish below
	// WebSockets close with 1001; no new socket events.
	rt.hub.Close(ctx)
	err := rt.eng.Shutdown(ctx)
	rt.bgCancel()
	rt.bg.Wait()
	if err != nil {
		// Calls are still running: close what can be closed anyway.
		rt.eng.EvictAll()
	}
	if aerr := rt.alarms.Close(); aerr != nil && err == nil {
		err = aerr
	}
	rt.spares.Close()
	rt.dur.Close()
	rt.metrics.unregister()
	syscall.Flock(int(rt.lockFD.Fd()), syscall.LOCK_UN)
	rt.lockFD.Close()
	return err
}

// Close shuts the runtime down without waiting for calls in flight.
func (rt *Runtime) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := rt.Shutdown(ctx)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// Stats are counters of a runtime.
type Stats struct {
	Live      int64  // objects in memory
	Evictions uint64 // objects evicted for idleness
	// Shrinks counts idle objects whose database gave back its caches
	// while the object stayed in memory (after a couple of idle seconds).
	Shrinks uint64
	Commits uint64 // storage commits
	Syncs   uint64 // fsyncs (fewer than commits thanks to group commit)
}

// Stats returns the runtime's counters.
func (rt *Runtime) Stats() Stats {
	ds := rt.dur.Stats()
	return Stats{
		Live:      rt.eng.Live(),
		Evictions: rt.eng.Evictions(),
		Shrinks:   rt.eng.Shrinks(),
		Commits:   ds.Commits,
		Syncs:     ds.Syncs,
	}
}

// EvictIdle evicts every object that is not running or waiting for a call
// right now, as if its idle time had passed. Sockets of hibernatable
// objects stay open. It returns how many objects were evicted.
func (rt *Runtime) EvictIdle() int { return rt.eng.EvictAll() }

// goBackground runs fn in a goroutine owned by the runtime; Shutdown
// cancels ctx and waits for it. It reports false after shutdown.
func (rt *Runtime) goBackground(fn func(ctx context.Context)) bool {
	rt.mu.Lock()
	if rt.closed {
		rt.mu.Unlock()
		return false
	}
	rt.bg.Add(1)
	rt.mu.Unlock()
	go func() {
		defer rt.bg.Done()
		fn(rt.bgCtx)
	}()
	return true
}

// DefaultMaxLiveObjects is the bound on objects in memory when
// Options.MaxLiveObjects is 0: a quarter of the process's open-file limit
// (RLIMIT_NOFILE), at least 256. A live object holds up to three
// descriptors, so this leaves at least a quarter of them to WebSockets
// (one each, hibernated or not) and the rest of the program; raise the
// limit (ulimit -n) for more.
func DefaultMaxLiveObjects() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur > 1<<30 {
		return 1 << 17
	}
	return max(256, int(lim.Cur/4))
}

func maxLive(n int) int {
	switch {
	case n < 0:
		return 0
	case n == 0:
		return DefaultMaxLiveObjects()
	}
	return n
}
