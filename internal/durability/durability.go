package durability

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Mode selects how commits become durable.
type Mode int

const (
	// Fsync makes a commit durable against power loss before its Ticket
	// is released. It is the default.
	Fsync Mode = iota
	// NoSync releases Tickets at once. Commits survive a process crash
	// (they are in the kernel's page cache) but not a power loss or a
	// kernel crash. Meant for tests and caches.
	NoSync
)

// String returns "fsync" or "nosync".
func (m Mode) String() string {
	switch m {
	case Fsync:
		return "fsync"
	case NoSync:
		return "nosync"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// DefaultWorkers is the number of fsyncs a Group runs at once.
const DefaultWorkers = 4

// ErrClosed is returned by Wait when the File or Group was closed before the
// commit became durable.
var ErrClosed = errors.New("durability: closed")

// ErrDiskFull wraps the error of a commit that could not be made durable
// because the file system is full (ENOSPC) or the user's quota is spent
// (EDQUOT): a write or sync of the journal or of the file failed so.
// (storage.ErrDiskFull is the same error.)
var ErrDiskFull = errors.New("the disk is full")

// diskFull wraps err with ErrDiskFull if it says the file system is full.
func diskFull(err error) error {
	if err != nil && !errors.Is(err, ErrDiskFull) && (errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT)) {
		return fmt.Errorf("%w: %w", ErrDiskFull, err)
	}
	return err
}

// Config configures a Group. The zero value fsyncs with DefaultWorkers.
type Config struct {
	Mode Mode
	// Workers bounds the number of concurrent fsyncs; 0 means DefaultWorkers.
	Workers int
	// SyncFile makes one file durable. Nil means (*os.File).Sync. Tests
	// wrap it to inject faults or to record what had been synced when.
	SyncFile func(*os.File) error
	// SyncDir makes a directory entry durable. Nil means opening the
	// directory and calling Sync on it.
	SyncDir func(dir string) error
	// BatchThreshold is the number of files waiting for a sync at which a
	// worker syncs them all with one syncfs(2) of their file system instead
	// of one fsync each. 0 means DefaultBatchThreshold; negative disables
	// batching.
	BatchThreshold int
	// SyncFS makes every file of a batch durable, with their directory
	// entries. Nil means syncfs(2) on the first file, which flushes the
	// whole file system: every file of a Group must live on one file system
	// (New's caller guarantees it; Group.File checks it).
	SyncFS func(files []*os.File) error
	// Observer, if set, receives the Group's measurements (metrics).
	Observer Observer

	// Journal, if set, is the directory of the node journal (see Open):
	// in Fsync mode commits made with File.CommitWAL are copied into it
	// and made durable by syncing it, instead of fsyncing each file. The
	// paths of files are recorded relative to Root, which must hold every
	// file of the Group.
	Journal string
	Root    string
	// JournalSize is the size of each of the journal's two files; 0 means
	// DefaultJournalSize.
	JournalSize int64
	// SyncJournal makes the journal's writes durable. Nil means
	// fdatasync(2).
	SyncJournal func(*os.File) error
	// PerFile, with Journal set, recovers the journal at Open but then
	// makes commits durable by fsyncing each file, as New does: tests of
	// that mode use it.
	PerFile bool
	// JournalAlways journals a batch whose commits all belong to one
	// file too, which is otherwise made durable by fsyncing that file
	// (SyncFile): tests of the journal set it.
	JournalAlways bool
}

// Observer receives measurements from a Group. Its methods are called by
// the Group's workers, concurrently (Durable with a File's lock held): they
// must be quick and must not call back into the Group.
type Observer interface {
	// Synced reports one fsync, or one batch of syncfs, that succeeded:
	// how long it took and how many commits it made durable (more than
	// one thanks to group commit).
	Synced(elapsed time.Duration, commits int)
	// Durable reports that one commit became durable, wait after its
	// File.Commit. It is not called in NoSync mode.
	Durable(wait time.Duration)
}

// epoch is the origin of the monotonic commit times kept for Observer.
var epoch = time.Now()

// DefaultBatchThreshold is where one syncfs becomes cheaper than an fsync
// per file (measured on ext4: 10 files, 0.9 ms against 4.4 ms; 1,000 files,
// 28 ms against 330 ms).
const DefaultBatchThreshold = 4

// Stats are counters of a Group since it was made.
type Stats struct {
	Commits      uint64        // Commit calls
	Syncs        uint64        // file fsyncs issued
	SyncFailures uint64        // fsyncs that returned an error
	SyncTime     time.Duration // total time spent in fsync
	Batches      uint64        // syncfs calls, each covering several files
}

// Group makes commits of many files durable. It is safe for concurrent use.
type Group struct {
	cfg             Config
	defaultSyncFile bool // cfg.SyncFile was nil: the journal may use quickSync

	mu     sync.Mutex // guards queue, closed
	queue  []*File
	closed bool
	signal chan struct{} // capacity 1: work was queued
	done   chan struct{} // closed by Close
	wg     sync.WaitGroup
	// named remembers the files whose directory entry this Group made
	// durable, by path and inode, so that a file opened again (an object
	// re-activated after eviction) skips the directory fsync. Bounded:
	// when full it is emptied, which only costs extra directory fsyncs.
	namedMu sync.Mutex
	named   map[fileKey]struct{}

	j *journal // nil unless journaling

	commits atomic.Uint64
	syncs   atomic.Uint64
	fails   atomic.Uint64
	syncNs  atomic.Int64
	batches atomic.Uint64
}

// Open recovers the journal in cfg.Journal, if set (see Recover), and
// starts a Group that journals its commits (in Fsync mode, unless
// cfg.PerFile, or on a system without syncfs(2), which the journal's
// rotation needs: only Linux has it). Without cfg.Journal it is New.
func Open(cfg Config) (*Group, Recovery, error) {
	if cfg.Journal == "" {
		return New(cfg), Recovery{Clean: true}, nil
	}
	if cfg.Root == "" {
		return nil, Recovery{}, errors.New("durability: Config.Root is required with Config.Journal")
	}
	rec, err := Recover(cfg.Journal, cfg.Root)
	if err != nil {
		return nil, rec, err
	}
	if cfg.Mode != Fsync || cfg.PerFile || !hasSyncFS {
		return New(cfg), rec, nil
	}
	if cfg.JournalSize <= 0 {
		cfg.JournalSize = DefaultJournalSize
	}
	g := newGroup(cfg)
	j, err := openJournal(g, cfg.Journal, cfg.Root, cfg.JournalSize, rec.Epoch)
	if err != nil {
		return nil, rec, err
	}
	g.j = j
	j.start()
	return g, rec, nil
}

// New starts a Group and its workers. Close stops them. New ignores
// cfg.Journal: see Open.
func New(cfg Config) *Group {
	cfg.Journal = ""
	g := newGroup(cfg)
	if g.cfg.Mode == Fsync {
		for range g.cfg.Workers {
			g.wg.Add(1)
			go g.work()
		}
	}
	return g
}

func newGroup(cfg Config) *Group {
	if cfg.Workers <= 0 {
		cfg.Workers = DefaultWorkers
	}
	defaultSyncFile := cfg.SyncFile == nil
	if defaultSyncFile {
		cfg.SyncFile = (*os.File).Sync
	}
	if cfg.SyncDir == nil {
		cfg.SyncDir = SyncDir
	}
	if cfg.BatchThreshold == 0 {
		cfg.BatchThreshold = DefaultBatchThreshold
	}
	if cfg.SyncFS == nil {
		cfg.SyncFS = syncFS
	}
	return &Group{cfg: cfg, defaultSyncFile: defaultSyncFile, signal: make(chan struct{}, 1), done: make(chan struct{})}
}

// Journaled reports whether the Group makes commits durable through its
// journal: then commits must be made with File.CommitWAL.
func (g *Group) Journaled() bool { return g.j != nil }

// Mode returns the group's durability mode.
func (g *Group) Mode() Mode { return g.cfg.Mode }

// Stats returns the counters.
func (g *Group) Stats() Stats {
	return Stats{
		Commits:      g.commits.Load(),
		Syncs:        g.syncs.Load(),
		SyncFailures: g.fails.Load(),
		SyncTime:     time.Duration(g.syncNs.Load()),
		Batches:      g.batches.Load(),
	}
}

// Close stops the workers after the syncs already queued have run. Waiting
// Tickets whose sync never ran fail with ErrClosed.
func (g *Group) Close() {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return
	}
	g.closed = true
	close(g.done)
	g.mu.Unlock()
	g.wg.Wait()
	// Fail whatever is still queued.
	g.mu.Lock()
	q := g.queue
	g.queue = nil
	g.mu.Unlock()
	for _, f := range q {
		f.fail(ErrClosed)
	}
}

// File returns the handle for one durable file. path is the file whose
// fsync makes a commit durable (an object's WAL); dir is its directory,
// fsynced once before the first commit is acknowledged so that a newly
// created file cannot vanish on power loss. The file is opened lazily on
// the first sync, so it need not exist yet.
func (g *Group) File(path, dir string) *File {
	f := &File{g: g, path: path, dir: dir, changed: make(chan struct{})}
	if g.j != nil {
		if rel, err := filepath.Rel(g.cfg.Root, path); err == nil && filepath.IsLocal(rel) {
			f.rel = filepath.ToSlash(rel)
		} else {
			f.err = fmt.Errorf("durability: %s is not under the journal's root %s", path, g.cfg.Root)
		}
	}
	return f
}

func (g *Group) enqueue(f *File) {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		f.fail(ErrClosed)
		return
	}
	g.queue = append(g.queue, f)
	g.mu.Unlock()
	select {
	case g.signal <- struct{}{}:
	default:
	}
}

func (g *Group) work() {
	defer g.wg.Done()
	for {
		g.mu.Lock()
		var batch []*File
		switch n := len(g.queue); {
		case n == 0:
		case g.cfg.BatchThreshold > 0 && n >= g.cfg.BatchThreshold:
			// Enough files wait: sync them all at once.
			batch = g.queue
			g.queue = nil
		default:
			batch = []*File{g.queue[0]}
			g.queue[0] = nil
			g.queue = g.queue[1:]
			if len(g.queue) > 0 {
				// Let another worker take the next file.
				select {
				case g.signal <- struct{}{}:
				default:
				}
			}
		}
		g.mu.Unlock()
		switch len(batch) {
		case 0:
		case 1:
			batch[0].syncOnce()
			continue
		default:
			g.syncBatch(batch)
			continue
		}
		select {
		case <-g.signal:
		case <-g.done:
			// Drain what is queued before leaving.
			g.mu.Lock()
			empty := len(g.queue) == 0
			g.mu.Unlock()
			if empty {
				return
			}
		}
	}
}

// syncBatch makes every commit made so far to the files durable with one
// SyncFS call.
func (g *Group) syncBatch(files []*File) {
	targets := make([]uint64, len(files))
	fds := make([]*os.File, 0, len(files))
	ok := files[:0:0]
	var okTargets []uint64
	for i, f := range files {
		fd, err := f.open()
		if err != nil {
			g.fails.Add(1)
			f.fail(fmt.Errorf("durability: sync %s: %w", f.path, err))
			continue
		}
		f.mu.Lock()
		targets[i] = f.committed
		f.mu.Unlock()
		fds = append(fds, fd)
		ok = append(ok, f)
		okTargets = append(okTargets, targets[i])
	}
	if len(ok) == 0 {
		return
	}
	// One syncfs per file system among the files.
	byDev := map[uint64][]*os.File{}
	devOf := make([]uint64, len(fds))
	for i, fd := range fds {
		var st unix.Stat_t
		if err := unix.Fstat(int(fd.Fd()), &st); err == nil {
			devOf[i] = uint64(st.Dev) // int32 on some systems
		}
		byDev[devOf[i]] = append(byDev[devOf[i]], fd)
	}
	errs := map[uint64]error{}
	start := time.Now()
	for dev, group := range byDev {
		errs[dev] = g.cfg.SyncFS(group)
		g.syncs.Add(1)
		g.batches.Add(1)
	}
	elapsed := time.Since(start)
	g.syncNs.Add(int64(elapsed))
	covered := 0
	for i, f := range ok {
		if err := errs[devOf[i]]; err != nil {
			g.fails.Add(1)
			f.fail(fmt.Errorf("durability: syncfs with %s: %w", f.path, err))
			continue
		}
		covered += f.markSynced(okTargets[i], true)
	}
	if obs := g.cfg.Observer; obs != nil && covered > 0 {
		obs.Synced(elapsed, covered)
	}
}

// fileKey identifies a directory entry and the file it names: a hash of
// the path, the inode and the file's birth time. A file replaced under
// the same name is a new key, even if it reuses a freed inode number.
type fileKey struct {
	path  uint64
	ino   uint64
	birth int64 // nanoseconds since 1970
}

// maxNamed bounds Group.named (about 40 bytes an entry).
const maxNamed = 1 << 20

var pathSeed = maphash.MakeSeed()

// open returns the file's descriptor, opening it on first use. It fails
// with ErrClosed once Close has been called.
func (f *File) open() (*os.File, error) {
	f.mu.Lock()
	fd, closed := f.fd, f.closed
	f.mu.Unlock()
	if fd != nil {
		return fd, nil
	}
	if closed {
		return nil, ErrClosed
	}
	if err := f.learnKey(); err != nil {
		return nil, err
	}
	fd, err := os.OpenFile(f.path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fd != nil || f.closed {
		fd.Close()
		if f.closed {
			return nil, ErrClosed
		}
		return f.fd, nil
	}
	f.fd = fd
	return fd, nil
}

// learnKey identifies the file under its path (keyOf), once, and learns
// whether the Group made its directory entry durable before (then no
// directory fsync is needed). It fails only if the file is missing.
func (f *File) learnKey() error {
	f.mu.Lock()
	known := f.keyKnown
	f.mu.Unlock()
	if known {
		return nil
	}
	// Without a birth time (a file system that does not record it) the
	// key stays zero and the directory is always synced.
	key, err := keyOf(f.path)
	if err != nil {
		return err
	}
	named := key != (fileKey{}) && f.g.isNamed(key)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.key, f.keyKnown = key, true
	if named {
		f.dirSynced = true
	}
	return nil
}

func (g *Group) isNamed(k fileKey) bool {
	g.namedMu.Lock()
	defer g.namedMu.Unlock()
	_, ok := g.named[k]
	return ok
}

// rememberNamed records that k's directory entry is durable.
func (g *Group) rememberNamed(k fileKey) {
	if k == (fileKey{}) {
		return
	}
	g.namedMu.Lock()
	defer g.namedMu.Unlock()
	if g.named == nil || len(g.named) >= maxNamed {
		g.named = make(map[fileKey]struct{})
	}
	g.named[k] = struct{}{}
}

// markSynced records that commits up to target are durable, and queues the
// file again if more commits arrived meanwhile. It returns how many
// commits became durable.
func (f *File) markSynced(target uint64, dirSynced bool) int {
	f.mu.Lock()
	if dirSynced && !f.dirSynced {
		f.dirSynced = true
		f.g.rememberNamed(f.key)
	}
	covered := 0
	if target > f.synced {
		covered = int(target - f.synced)
		f.observeDurableLocked(covered)
		f.synced = target
	}
	f.broadcast()
	again := f.committed > f.synced && f.err == nil
	if !again {
		f.inflight = false
	}
	f.mu.Unlock()
	if again {
		f.g.enqueue(f)
	}
	return covered
}

// observeDurableLocked reports the n oldest commits not yet durable to the
// Observer, and forgets their times. f.mu must be held.
func (f *File) observeDurableLocked(n int) {
	obs := f.g.cfg.Observer
	if obs == nil || len(f.since) == 0 {
		return
	}
	n = min(n, len(f.since))
	now := time.Since(epoch)
	for _, t := range f.since[:n] {
		obs.Durable(now - t)
	}
	f.since = f.since[:copy(f.since, f.since[n:])]
}

// File tracks the commits of one file and how far they are durable.
type File struct {
	g    *Group
	path string
	dir  string
	rel  string // path relative to the Group's root, for its journal

	mu sync.Mutex // guards the fields below
	// fd is the File's own descriptor of the file, opened on first use
	// (open): a journaled commit whose bytes the caller hands over
	// needs none, so most files never open one (one descriptor less per
	// live object, and no open and close per activation).
	fd        *os.File
	key       fileKey // set by learnKey
	keyKnown  bool
	dirSynced bool
	committed uint64        // sequence of the last commit
	synced    uint64        // commits up to here are durable
	inflight  bool          // queued or being synced
	err       error         // sticky: the file is poisoned
	closed    bool          // Close was called
	changed   chan struct{} // closed and replaced when synced or err changes
	// unsynced counts the WAL bytes journaled since the journal last
	// started their writeback (see kick).
	unsynced int64
	// since holds, for an Observer, the time (since epoch) of each commit
	// not yet durable, oldest first: since[i] is commit synced+1+i.
	since []time.Duration
}

// Ticket stands for one commit; Wait returns once it is durable.
type Ticket struct {
	f   *File
	seq uint64
}

// Commit records that a transaction has been written to the file and
// returns its Ticket. Committing never blocks.
func (f *File) Commit() Ticket {
	f.g.commits.Add(1)
	f.mu.Lock()
	f.committed++
	t := Ticket{f: f, seq: f.committed}
	if f.g.cfg.Mode == NoSync {
		f.synced = f.committed
		f.mu.Unlock()
		return t
	}
	start := !f.inflight && f.err == nil && !f.closed
	if start {
		f.inflight = true
	}
	if f.g.cfg.Observer != nil && f.err == nil && !f.closed {
		f.since = append(f.since, time.Since(epoch))
	}
	f.mu.Unlock()
	if start {
		f.g.enqueue(f)
	}
	return t
}

// CommitWAL records that a transaction has been written to the file, a
// SQLite WAL, adding the bytes r locates, and returns its Ticket. In a
// journaled Group it copies those bytes into the journal before it
// returns, so it must be called before the WAL changes again; otherwise it
// is Commit. An empty range is no commit: it returns Last.
func (f *File) CommitWAL(r WALRange) Ticket { return f.CommitWALData(r, nil) }

// CommitWALData is CommitWAL for a caller that still holds the bytes r
// locates, as written to the file: data, len(data) == r.End-r.Off, is
// copied into the journal instead of being read back from the file. A nil
// data reads them.
func (f *File) CommitWALData(r WALRange, data []byte) Ticket {
	j := f.g.j
	if j == nil {
		return f.Commit()
	}
	if r.End <= r.Off {
		return f.Last()
	}
	f.g.commits.Add(1)
	f.mu.Lock()
	closed := f.closed
	f.mu.Unlock()
	var fd *os.File
	err := ErrClosed
	switch {
	case closed:
	case int64(len(data)) == r.End-r.Off:
		err = f.learnKey() // the journal copies data: no descriptor needed
	default:
		fd, err = f.open() // the journal reads the bytes from the file
	}
	f.mu.Lock()
	f.committed++
	t := Ticket{f: f, seq: f.committed}
	if f.err != nil || err != nil {
		f.mu.Unlock()
		if err != nil {
			f.fail(fmt.Errorf("durability: journal %s: %w", f.path, err))
		}
		return t
	}
	if f.g.cfg.Observer != nil {
		f.since = append(f.since, time.Since(epoch))
	}
	f.mu.Unlock()
	if err := j.add(f, t.seq, fd, r, data); err != nil {
		f.fail(err)
	}
	return t
}

// markJournaled records that commits up to seq are durable.
func (f *File) markJournaled(seq uint64) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if seq <= f.synced {
		return 0
	}
	n := int(seq - f.synced)
	f.observeDurableLocked(n)
	f.synced = seq
	f.broadcast()
	return n
}

// Last returns the Ticket of the latest commit, which is durable when every
// commit before it is. A File with no commits returns a Ticket that is
// already durable.
func (f *File) Last() Ticket {
	f.mu.Lock()
	defer f.mu.Unlock()
	return Ticket{f: f, seq: f.committed}
}

// Err returns the error that poisoned the file, or nil.
func (f *File) Err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// Close waits for an in-flight sync to finish, then releases the file
// descriptor. Commits not yet durable fail with ErrClosed.
func (f *File) Close() error {
	f.mu.Lock()
	f.closed = true
	for f.inflight || (f.g.j != nil && f.synced < f.committed && f.err == nil) {
		ch := f.changed
		f.mu.Unlock()
		<-ch
		f.mu.Lock()
	}
	if f.synced < f.committed && f.err == nil {
		f.err = ErrClosed
		f.broadcast()
	}
	f.since = nil
	fd := f.fd
	f.fd = nil
	f.mu.Unlock()
	if fd != nil {
		return fd.Close()
	}
	return nil
}

// broadcast wakes every waiter. f.mu must be held.
func (f *File) broadcast() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// fail fails every waiting and later commit of f with err (wrapped with
// ErrDiskFull if the file system is full).
func (f *File) fail(err error) {
	err = diskFull(err)
	f.mu.Lock()
	f.inflight = false
	if f.err == nil {
		f.err = err
	}
	f.since = nil // these commits never become durable
	f.broadcast()
	f.mu.Unlock()
}

// syncOnce runs on a worker: it fsyncs everything committed so far.
func (f *File) syncOnce() {
	fd, err := f.open() // first, since it may find the entry durable
	f.mu.Lock()
	target := f.committed
	needDir := !f.dirSynced
	f.mu.Unlock()

	var elapsed time.Duration
	if err == nil {
		start := time.Now()
		err = f.g.cfg.SyncFile(fd)
		elapsed = time.Since(start)
		f.g.syncNs.Add(int64(elapsed))
		f.g.syncs.Add(1)
	}
	if err == nil && needDir {
		err = f.g.cfg.SyncDir(f.dir)
	}
	if err != nil {
		f.g.fails.Add(1)
		f.fail(fmt.Errorf("durability: sync %s: %w", f.path, err))
		return
	}
	if n := f.markSynced(target, needDir); n > 0 && f.g.cfg.Observer != nil {
		f.g.cfg.Observer.Synced(elapsed, n)
	}
}

// Durable reports whether the ticket's commit is durable already.
func (t Ticket) Durable() bool {
	if t.f == nil {
		return true
	}
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	return t.f.synced >= t.seq
}

// Wait blocks until the commit is durable, the file fails, or ctx is done.
// The zero Ticket is always durable.
func (t Ticket) Wait(ctx context.Context) error {
	f := t.f
	if f == nil {
		return nil
	}
	for {
		f.mu.Lock()
		if f.synced >= t.seq {
			f.mu.Unlock()
			return nil
		}
		if f.err != nil {
			err := f.err
			f.mu.Unlock()
			return err
		}
		ch := f.changed
		f.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

func syncFS(files []*os.File) error {
	if hasSyncFS {
		return syncfsFD(files[0].Fd())
	}
	for _, f := range files {
		if err := fdatasync(f.Fd()); err != nil {
			return err
		}
	}
	return nil
}

// SyncDir fsyncs the directory dir, making the names of the files created,
// renamed or removed in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
