package storage

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
	"zombiezen.com/go/sqlite"

	"github.com/durable-go/durable/internal/durability"
)

// schemaVersion is stored in the database header (PRAGMA user_version, which
// user SQL cannot read or write) and names the layout of the internal tables.
//
// Layout 2 keeps everything the runtime stores in one table, _durable_kv:
// the user's KV entries under TEXT keys, and the runtime's own rows (the
// alarm, the metadata SetMeta stores) under BLOB keys. SQLite orders every
// TEXT value before every BLOB, so the runtime's rows sit together after
// the last KV entry, where no KV query reaches (those bind TEXT keys, and
// List bounds its range below the empty BLOB), and for an object whose
// entries fit in one page a turn that writes KV entries and its alarm
// changes that one page: one WAL frame per commit, not one per table.
//
// Layout 1 kept the runtime's rows in a second table, _durable_meta, under
// TEXT keys; Open moves them into _durable_kv (upgradeFrom1).
const schemaVersion = 2

// pageSize is the page size of every database storage creates.
const pageSize = 4096

// schemaDDL creates the internal tables. Keys compare with memcmp (the
// BINARY collation), which for UTF-8 text is code point order.
var schemaDDL = []string{
	"CREATE TABLE IF NOT EXISTS _durable_kv (key TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL) WITHOUT ROWID",
	"PRAGMA user_version = " + strconv.Itoa(schemaVersion),
}

// upgradeFrom1 moves the rows of layout 1's _durable_meta into
// _durable_kv under BLOB keys (see schemaVersion).
var upgradeFrom1 = []string{
	"INSERT OR REPLACE INTO _durable_kv (key, value) SELECT CAST(key AS BLOB), value FROM _durable_meta",
	"DROP TABLE _durable_meta",
}

// internalTables lists the tables storage owns; DeleteAll keeps them.
var internalTables = map[string]bool{"_durable_kv": true}

var (
	templateOnce  sync.Once
	templateImage []byte
	templateErr   error
)

// template returns the bytes of a new, empty database file: the internal
// tables exist and the header selects WAL mode. Creating a database by
// writing this image replaces the journal-mode switch and the CREATE TABLE
// transaction, which would otherwise cost several writes per new object.
func template() ([]byte, error) {
	templateOnce.Do(func() {
		templateImage, templateErr = buildTemplate()
	})
	return templateImage, templateErr
}

func buildTemplate() ([]byte, error) {
	c, err := OpenConn(":memory:", sqlite.OpenReadWrite|sqlite.OpenCreate|sqlite.OpenMemory)
	if err != nil {
		return nil, fmt.Errorf("storage: build template: %w", err)
	}
	defer CloseConn(c)
	for _, q := range append([]string{"PRAGMA page_size = " + strconv.Itoa(pageSize)}, schemaDDL...) {
		if err := execTransient(c, q); err != nil {
			return nil, fmt.Errorf("storage: build template: %w", err)
		}
	}
	img, err := c.Serialize("main")
	if err != nil {
		return nil, fmt.Errorf("storage: build template: %w", err)
	}
	if len(img) < 100 || string(img[:16]) != "SQLite format 3\x00" {
		return nil, errors.New("storage: build template: unexpected image")
	}
	// File format read/write versions 2 = WAL (https://sqlite.org/fileformat2.html).
	img[18], img[19] = 2, 2
	return img, nil
}

// execTransient runs one statement to completion on c.
func execTransient(c *sqlite.Conn, query string) error {
	s, _, err := c.PrepareTransient(query)
	if err != nil {
		return err
	}
	for {
		row, err := s.Step()
		if err != nil {
			s.Finalize()
			return err
		}
		if !row {
			break
		}
	}
	return s.Finalize()
}

// removeStale deletes journal files left by a database that was removed
// without them, so they cannot be replayed into a new database.
func removeStale(path string) error {
	for _, p := range []string{path + "-wal", path + "-journal"} {
		// syscall.Unlink, not os.Remove: the latter retries as rmdir.
		if err := syscall.Unlink(p); err != nil && err != syscall.ENOENT {
			return &fs.PathError{Op: "remove", Path: p, Err: err}
		}
	}
	return nil
}

// createFromTemplate creates path with the template image and reports
// whether it did (false: path exists already). If keep is set, the new file
// is returned open, so that it can be fsynced later without closing a
// descriptor of a file SQLite holds locks on.
func createFromTemplate(path string, keep bool) (*os.File, bool, error) {
	img, err := template()
	if err != nil {
		return nil, false, err
	}
	if err := removeStale(path); err != nil {
		return nil, false, fmt.Errorf("storage: create %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, fs.ErrExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("storage: create %s: %w", path, err)
	}
	if _, err := f.Write(img); err != nil {
		f.Close()
		os.Remove(path)
		return nil, false, fmt.Errorf("storage: create %s: %w", path, err)
	}
	if keep {
		return f, true, nil
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return nil, false, fmt.Errorf("storage: create %s: %w", path, err)
	}
	return nil, true, nil
}

// DefaultSpares is the number of databases Spares keeps ready by default.
const DefaultSpares = 32

// spareBatch bounds the spares created between two syncs of the pool.
const spareBatch = 16

// SparesConfig configures Spares.
type SparesConfig struct {
	// Dir holds the spare files. It must be on the same file system as the
	// databases, because a spare is moved into place by renaming it (or
	// with a hard link). Its contents are deleted by NewSpares and Close.
	Dir string
	// Count is how many spares to keep ready; 0 means DefaultSpares.
	Count int
	// Sync makes each spare database file durable before offering it, so
	// that a database created from it needs no further fsync of its
	// initial contents. Set it when the durability Group runs in Fsync
	// mode. Spares are made in batches, each made durable by one syncfs(2)
	// of the pool's file system (one fsync per file would bound how many
	// new objects a second can be created without waiting).
	Sync bool
}

// Spares keeps empty databases (the template image plus an empty WAL file)
// ready in a directory, so that Open of a new database moves two files
// into place instead of creating them. Creating a file is the dominant cost
// of a new database (about 0.7 ms each on the reference machine, against
// tens of microseconds for a link or rename). A background goroutine
// refills the pool; Close stops it. Spares is safe for concurrent use.
type Spares struct {
	cfg  SparesConfig
	img  []byte
	wake chan struct{} // capacity 1: a spare was taken
	done chan struct{} // closed by Close
	wg   sync.WaitGroup

	mu     sync.Mutex // guards ready, next, err, closed
	ready  []string   // paths of spare database files, each with its -wal
	next   int        // sequence number of the next spare's name
	err    error      // last error of the refill goroutine
	closed bool
}

// NewSpares empties cfg.Dir (creating it if needed) and starts filling it.
func NewSpares(cfg SparesConfig) (*Spares, error) {
	if cfg.Dir == "" {
		return nil, &ArgError{Arg: "SparesConfig.Dir", Reason: "empty"}
	}
	if cfg.Count < 0 {
		return nil, &ArgError{Arg: "SparesConfig.Count", Reason: "negative"}
	}
	if cfg.Count == 0 {
		cfg.Count = DefaultSpares
	}
	img, err := template()
	if err != nil {
		return nil, err
	}
	// Leftovers of an earlier run may be hard links to live databases:
	// never reuse them, only drop their names.
	if err := os.RemoveAll(cfg.Dir); err != nil {
		return nil, fmt.Errorf("storage: spares: %w", err)
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("storage: spares: %w", err)
	}
	s := &Spares{cfg: cfg, img: img, wake: make(chan struct{}, 1), done: make(chan struct{})}
	s.wg.Add(1)
	go s.fill()
	return s, nil
}

// Ready returns how many spares are ready now.
func (s *Spares) Ready() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.ready)
}

// Err returns the last error met while creating spares, or nil.
func (s *Spares) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Close stops the refill goroutine, waits for it and deletes the spares.
func (s *Spares) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.ready = nil
	s.mu.Unlock()
	close(s.done)
	s.wg.Wait()
	return os.RemoveAll(s.cfg.Dir)
}

func (s *Spares) fill() {
	defer s.wg.Done()
	filling := true
	for {
		s.mu.Lock()
		// Refill from half empty to full, in batches: creating files slows
		// down the links and renames of concurrent Opens (they share the
		// file system journal), so it is better done in bursts, and a batch
		// shares one sync.
		if len(s.ready) <= s.cfg.Count/2 {
			filling = true
		}
		n := 0
		if filling && !s.closed {
			n = min(s.cfg.Count-len(s.ready), spareBatch)
		}
		if n <= 0 {
			filling = false
		}
		first := s.next
		s.next += max(n, 0)
		s.mu.Unlock()
		if n > 0 {
			paths, err := s.createBatch(first, n)
			s.mu.Lock()
			if err != nil {
				s.err = err
			}
			if s.closed {
				for _, p := range paths {
					os.Remove(p)
					os.Remove(p + "-wal")
				}
			} else {
				s.ready = append(s.ready, paths...)
			}
			s.mu.Unlock()
			if err == nil {
				continue
			}
		}
		// Full enough, closed or failing: wait until a spare is taken.
		select {
		case <-s.wake:
		case <-s.done:
			return
		}
	}
}

// createBatch creates n spares numbered from first and, with Sync, makes
// them durable with one syncfs. It returns the spares made (none if the
// sync failed).
func (s *Spares) createBatch(first, n int) ([]string, error) {
	var paths []string
	var err error
	for i := range n {
		var p string
		if p, err = s.create(first + i); err != nil {
			break
		}
		paths = append(paths, p)
	}
	if len(paths) > 0 && s.cfg.Sync {
		if serr := durability.SyncFS(s.cfg.Dir); serr != nil {
			for _, p := range paths {
				os.Remove(p)
				os.Remove(p + "-wal")
			}
			return nil, fmt.Errorf("storage: spares: %w", serr)
		}
	}
	return paths, err
}

func (s *Spares) create(n int) (string, error) {
	p := filepath.Join(s.cfg.Dir, strconv.Itoa(n)+".db")
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return "", fmt.Errorf("storage: spares: %w", err)
	}
	_, err = f.Write(s.img)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		var w *os.File
		w, err = os.OpenFile(p+"-wal", os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err == nil {
			err = w.Close()
		}
	}
	if err != nil {
		os.Remove(p)
		os.Remove(p + "-wal")
		return "", fmt.Errorf("storage: spares: %w", err)
	}
	return p, nil
}

// take removes a ready spare from the pool, or returns "".
func (s *Spares) take() string {
	s.mu.Lock()
	var p string
	if n := len(s.ready); n > 0 {
		p = s.ready[n-1]
		s.ready = s.ready[:n-1]
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return p
}

// putBack returns an unused spare to the pool.
func (s *Spares) putBack(p string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		os.Remove(p)
		os.Remove(p + "-wal")
		return
	}
	s.ready = append(s.ready, p)
}

// install moves a spare into place at path. It reports false, with no
// error, if no spare was ready or path already exists.
func (s *Spares) install(path string) (bool, error) {
	sp := s.take()
	if sp == "" {
		return false, nil
	}
	if err := removeStale(path); err != nil {
		s.putBack(sp)
		return false, fmt.Errorf("storage: create %s: %w", path, err)
	}
	// The move claims the name atomically: it fails if path exists. A
	// rename that refuses to replace does it in one step; where the file
	// system lacks it, a hard link claims the name and the spare's name is
	// removed after.
	err := renameNoReplace(sp, path)
	linked := false
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		err = os.Link(sp, path)
		linked = err == nil
	}
	if err != nil {
		// path exists, another file system (EXDEV) or similar: the
		// caller creates the database directly, or opens the one there.
		s.putBack(sp)
		return false, nil
	}
	if err := os.Rename(sp+"-wal", path+"-wal"); err != nil {
		// The database is in place without a WAL; SQLite creates one.
		os.Remove(sp + "-wal")
	}
	if linked {
		os.Remove(sp)
	}
	return true, nil
}
