package inspect

import (
	"cmp"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"zombiezen.com/go/sqlite"

	"github.com/durable-go/durable/internal/alarm"
	"github.com/durable-go/durable/internal/durability"
	"github.com/durable-go/durable/internal/storage"
)

// Files of a data folder, as the runtime lays it out.
const (
	lockFile       = ".lock"          // flock'ed by the runtime that has the folder open
	alarmIndexFile = ".alarms.sqlite" // the node's alarm index (internal/alarm)
)

// Gate keeps a Folder's accesses to an object's database apart from a
// runtime that may be using it. A runtime implements it with the object's
// turn; offline (Config.Gate nil) the folder lock is enough.
type Gate interface {
	// Peek runs fn while the object runs no event. If the object is in
	// memory with its database open, live is that database: fn may only
	// read it (the gate rolls back whatever fn began). Otherwise live is
	// nil and fn may open the file.
	Peek(ctx context.Context, ref Ref, fn func(live *storage.DB) error) error
	// Exclusive runs fn while the object runs no event and no connection
	// is open on its database (an object in memory is closed first, as an
	// eviction would): fn may open, read and write the file. It fails
	// with an error wrapping ErrBusy if the object cannot be closed in
	// time.
	Exclusive(ctx context.Context, ref Ref, fn func() error) error
}

// Config configures a Folder.
type Config struct {
	// Dir is the data folder.
	Dir string
	// Resolve turns object references into IDs. Required.
	Resolve Resolver
	// Gate orders accesses with a running app; nil means none runs (the
	// Folder holds the folder lock: see OpenFolder).
	Gate Gate
	// Durability, Spares and Alarms are the write machinery of a running
	// app. Nil ones are made on the first write and closed by Close: a
	// durability group that fsyncs, and a scheduler over the folder's
	// alarm index that delivers nothing.
	Durability *durability.Group
	Spares     *storage.Spares
	Alarms     *alarm.Scheduler
	// MaxDatabaseSize bounds an object's database, as
	// durable.Options.MaxDatabaseSize; 0 means the default.
	MaxDatabaseSize int64
	// TempDir holds the temporary files of exports and imports; "" means
	// os.TempDir().
	TempDir string
}

// Folder is the API over a data folder's files. It is safe for concurrent
// use.
type Folder struct {
	cfg  Config
	lock *os.File // held by OpenFolder

	mu        sync.Mutex // guards dur, alarms, ownDur, ownAlarms, closed
	dur       *durability.Group
	alarms    *alarm.Scheduler
	ownDur    bool
	ownAlarms bool
	closed    bool
}

var _ API = (*Folder)(nil)

// OpenFolder opens the data folder cfg.Dir for offline use: it takes the
// folder's lock (shared: a runtime takes it exclusively), so no app can
// open the folder until Close. It fails with ErrLocked if an app has it
// open, and with ErrNotFound if the folder does not exist. Several Folders
// may be open on one folder; two writing one object at once is refused by
// SQLite's own locks (the second write fails, nothing is half-written).
func OpenFolder(cfg Config) (*Folder, error) {
	cfg.Gate = nil
	f, err := NewFolder(cfg)
	if err != nil {
		return nil, err
	}
	if st, err := os.Stat(cfg.Dir); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("%w: data folder %s", ErrNotFound, cfg.Dir)
	}
	path := filepath.Join(cfg.Dir, lockFile)
	lf, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS) {
		// A folder we may not write (a backup on read-only media): no app
		// can have opened it either, since opening takes this lock.
		if lf, err = os.Open(path); err != nil {
			return f, nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("inspect: open %s: %w", cfg.Dir, err)
	}
	// Replay the journal an app that stopped uncleanly left, holding the
	// lock exclusively; if another offline user holds it, that one did.
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err == nil {
		_, err := durability.Recover(filepath.Join(cfg.Dir, durability.JournalDir), cfg.Dir)
		if err != nil {
			lf.Close()
			return nil, fmt.Errorf("inspect: open %s: %w", cfg.Dir, err)
		}
	}
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		lf.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s", ErrLocked, cfg.Dir)
		}
		return nil, fmt.Errorf("inspect: lock %s: %w", cfg.Dir, err)
	}
	f.lock = lf
	return f, nil
}

// NewFolder returns a Folder over cfg.Dir without taking the folder's
// lock: the caller (a runtime) holds it, and cfg.Gate orders accesses.
func NewFolder(cfg Config) (*Folder, error) {
	if cfg.Dir == "" {
		return nil, fmt.Errorf("%w: Config.Dir is empty", ErrInvalid)
	}
	if cfg.Resolve == nil {
		return nil, fmt.Errorf("%w: Config.Resolve is nil", ErrInvalid)
	}
	return &Folder{cfg: cfg, dur: cfg.Durability, alarms: cfg.Alarms}, nil
}

// Close releases the folder lock and the write machinery the Folder made.
func (f *Folder) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.closed = true
	var errs []error
	if f.ownAlarms {
		errs = append(errs, f.alarms.Close())
	}
	if f.ownDur {
		f.dur.Close()
	}
	if f.lock != nil {
		errs = append(errs, f.lock.Close()) // releases the flock
	}
	return errors.Join(errs...)
}

// Dir returns the data folder.
func (f *Folder) Dir() string { return f.cfg.Dir }

// path returns the database file of ref.
func (f *Folder) path(ref Ref) string {
	return storage.ObjectPath(f.cfg.Dir, ref.Namespace, ref.ID)
}

// resolve resolves an object reference.
func (f *Folder) resolve(ns, ref string) (Ref, error) {
	r, err := f.cfg.Resolve(ns, ref)
	if err != nil {
		return Ref{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if len(r.ID) != 64 || r.Namespace != ns {
		return Ref{}, fmt.Errorf("%w: resolver returned %q for %s %q", ErrInvalid, r.ID, ns, ref)
	}
	return r, nil
}

// peek runs fn through the gate's Peek (directly offline).
func (f *Folder) peek(ctx context.Context, ref Ref, fn func(live *storage.DB) error) error {
	if f.cfg.Gate == nil {
		return fn(nil)
	}
	return f.cfg.Gate.Peek(ctx, ref, fn)
}

// exclusive runs fn through the gate's Exclusive (directly offline).
func (f *Folder) exclusive(ctx context.Context, ref Ref, fn func() error) error {
	if f.cfg.Gate == nil {
		return fn()
	}
	return f.cfg.Gate.Exclusive(ctx, ref, fn)
}

// withRead runs fn on a read-only connection to ref's database, inside
// the gate's Exclusive.
func (f *Folder) withRead(ctx context.Context, ref Ref, fn func(conn *sqlite.Conn) error) error {
	return f.exclusive(ctx, ref, func() error {
		conn, closeConn, err := openRead(ctx, f.path(ref))
		if err != nil {
			return f.objErr(ref, err)
		}
		defer closeConn()
		return fn(conn)
	})
}

// objErr names the object in err.
func (f *Folder) objErr(ref Ref, err error) error {
	if err == nil {
		return nil
	}
	what := ref.ID
	if ref.Name != "" {
		what = fmt.Sprintf("%q (%s)", ref.Name, ref.ID[:12])
	}
	return fmt.Errorf("%s %s: %w", ref.Namespace, what, err)
}

// fileInfo is what the file system says of an object's files.
type fileInfo struct {
	size     int64
	modified time.Time
}

// stat sums the object's database and WAL files.
func stat(path string) (fileInfo, error) {
	st, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fileInfo{}, ErrNotFound
		}
		return fileInfo{}, err
	}
	fi := fileInfo{size: st.Size(), modified: st.ModTime()}
	if w, err := os.Stat(path + "-wal"); err == nil {
		fi.size += w.Size()
		if w.ModTime().After(fi.modified) {
			fi.modified = w.ModTime()
		}
	}
	fi.modified = fi.modified.UTC()
	return fi, nil
}

// namespaceDirs lists the namespace folders, sorted.
func (f *Folder) namespaceDirs() ([]string, error) {
	ents, err := os.ReadDir(f.cfg.Dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() && f.checkNamespace(e.Name()) == nil {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// checkNamespace reports whether ns is a valid namespace name, asking the
// resolver to resolve an object name in it.
func (f *Folder) checkNamespace(ns string) error {
	if _, err := f.cfg.Resolve(ns, "x"); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}

// refs lists the objects with a database in namespace ns, sorted by ID.
// Files whose name is not an ID of ns are skipped.
func (f *Folder) refs(ns string) ([]Ref, error) {
	if _, err := os.Stat(filepath.Join(f.cfg.Dir, ns)); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: namespace %s", ErrNotFound, ns)
	}
	ids, err := storage.ObjectIDs(f.cfg.Dir, ns)
	if err != nil {
		return nil, err
	}
	var out []Ref
	for _, id := range ids {
		if r, err := f.cfg.Resolve(ns, id); err == nil && r.ID == id {
			out = append(out, Ref{Namespace: ns, ID: id})
		}
	}
	return out, nil
}

// Namespaces implements API.
func (f *Folder) Namespaces(ctx context.Context) ([]Namespace, error) {
	names, err := f.namespaceDirs()
	if err != nil {
		return nil, err
	}
	out := []Namespace{}
	for _, ns := range names {
		refs, err := f.refs(ns)
		if err != nil {
			return nil, err
		}
		if len(refs) == 0 {
			continue
		}
		n := Namespace{Name: ns}
		for _, r := range refs {
			fi, err := stat(f.path(r))
			if errors.Is(err, ErrNotFound) {
				continue // deleted meanwhile
			}
			if err != nil {
				return nil, err
			}
			n.Objects++
			n.Size += fi.size
			if fi.modified.After(n.Modified) {
				n.Modified = fi.modified
			}
		}
		out = append(out, n)
	}
	return out, nil
}

// Objects implements API.
func (f *Folder) Objects(ctx context.Context, namespace string) ([]Object, error) {
	refs, err := f.allRefs(namespace)
	if err != nil {
		return nil, err
	}
	out := []Object{}
	for _, r := range refs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		o, err := f.object(ctx, r)
		if errors.Is(err, ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, nil
}

// allRefs lists the objects of namespace, or of every namespace if it is
// "", sorted by namespace and ID.
func (f *Folder) allRefs(namespace string) ([]Ref, error) {
	if namespace != "" {
		if err := f.checkNamespace(namespace); err != nil {
			return nil, err
		}
		return f.refs(namespace)
	}
	names, err := f.namespaceDirs()
	if err != nil {
		return nil, err
	}
	var out []Ref
	for _, ns := range names {
		refs, err := f.refs(ns)
		if err != nil && !errors.Is(err, ErrNotFound) { // ErrNotFound: removed meanwhile
			return nil, err
		}
		out = append(out, refs...)
	}
	return out, nil
}

// Object implements API.
func (f *Folder) Object(ctx context.Context, namespace, ref string) (Object, error) {
	r, err := f.resolve(namespace, ref)
	if err != nil {
		return Object{}, err
	}
	return f.object(ctx, r)
}

func (f *Folder) object(ctx context.Context, r Ref) (Object, error) {
	o := Object{Namespace: r.Namespace, ID: r.ID}
	err := f.peek(ctx, r, func(live *storage.DB) error {
		fi, err := stat(f.path(r))
		if err != nil {
			return err
		}
		o.Size, o.Modified = fi.size, fi.modified
		if live != nil {
			o.Name, o.Alarm, err = liveMeta(live)
			return err
		}
		conn, closeConn, err := openRead(ctx, f.path(r))
		if err != nil {
			return err
		}
		defer closeConn()
		m, err := readMeta(conn)
		if err != nil {
			return err
		}
		o.Name, o.Alarm = m.name(), m.alarm
		return nil
	})
	if err != nil {
		return Object{}, f.objErr(r, err)
	}
	return o, nil
}

// Alarms implements API. The node's alarm index names every object that
// may have an alarm (a row no later than the alarm, written before the
// alarm's commit); each object's own database says whether it has one,
// and when.
func (f *Folder) Alarms(ctx context.Context) ([]Alarm, error) {
	var keys []indexRow
	if f.alarms != nil {
		// Live: the runtime's scheduler holds the index open to itself
		// and knows every row of it.
		for _, k := range f.alarms.Keys() {
			keys = append(keys, indexRow{Namespace: k.NS, ID: hex.EncodeToString(k.ID[:])})
		}
	} else {
		var err error
		if keys, err = readIndex(ctx, f.cfg.Dir); err != nil {
			return nil, err
		}
	}
	out := []Alarm{}
	for _, k := range keys {
		r, err := f.cfg.Resolve(k.Namespace, k.ID)
		if err != nil || r.ID != k.ID {
			continue // not an object of this folder's namespaces
		}
		o, err := f.object(ctx, Ref{Namespace: k.Namespace, ID: k.ID})
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if o.Alarm != nil {
			out = append(out, Alarm{Namespace: o.Namespace, ID: o.ID, Name: o.Name, At: *o.Alarm})
		}
	}
	slices.SortFunc(out, func(a, b Alarm) int {
		return cmp.Or(a.At.Compare(b.At), strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.ID, b.ID))
	})
	return out, nil
}

// indexRow is one row of the node's alarm index.
type indexRow struct {
	Namespace string
	ID        string
	At        time.Time
}

// readIndex reads the alarm index of dir; a folder without one has none.
func readIndex(ctx context.Context, dir string) ([]indexRow, error) {
	conn, closeConn, err := openRead(ctx, filepath.Join(dir, alarmIndexFile))
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("inspect: alarm index: %w", err)
	}
	defer closeConn()
	var rows []indexRow
	err = exec(conn, "SELECT ns, id, at FROM alarms ORDER BY at", nil, func(s *sqlite.Stmt) error {
		id := column(s, 1)
		if b, ok := id.([]byte); ok && len(b) == 32 {
			rows = append(rows, indexRow{Namespace: s.ColumnText(0), ID: hex.EncodeToString(b), At: time.Unix(0, s.ColumnInt64(2)).UTC()})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("inspect: alarm index: %w", sqlErr(ctx, err))
	}
	return rows, nil
}

// KVGet implements API.
func (f *Folder) KVGet(ctx context.Context, namespace, ref string, keys []string) ([]KVEntry, error) {
	sorted := slices.Clone(keys)
	slices.Sort(sorted)
	sorted = slices.Compact(sorted)
	out := []KVEntry{}
	err := f.readKV(ctx, namespace, ref, func(live *storage.DB) error {
		for _, k := range sorted {
			v, ok, err := live.Get(k)
			if err != nil {
				return err
			}
			if ok {
				out = append(out, kvEntry(k, v))
			}
		}
		return nil
	}, func(conn *sqlite.Conn) error {
		for _, k := range sorted {
			err := exec(conn, "SELECT value FROM "+kvTable+" WHERE key = ?", []any{k}, func(s *sqlite.Stmt) error {
				b, _ := column(s, 0).([]byte)
				out = append(out, kvEntry(k, b))
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

// KVList implements API. It selects what storage.DB.List selects, with
// the same statement.
func (f *Folder) KVList(ctx context.Context, namespace, ref string, opts KVList) ([]KVEntry, error) {
	lo := storage.ListOptions{Start: opts.Start, StartAfter: opts.StartAfter, End: opts.End,
		Prefix: opts.Prefix, Reverse: opts.Reverse, Limit: opts.Limit}
	q, args, empty, err := storage.ListQuery(lo)
	if err != nil {
		return nil, fmt.Errorf("%w: KV list: %w", ErrInvalid, err)
	}
	out := []KVEntry{}
	err = f.readKV(ctx, namespace, ref, func(live *storage.DB) error {
		ents, err := live.List(lo)
		for _, e := range ents {
			out = append(out, kvEntry(e.Key, e.Value))
		}
		return err
	}, func(conn *sqlite.Conn) error {
		if empty {
			return nil
		}
		return exec(conn, q, args, func(s *sqlite.Stmt) error {
			b, _ := column(s, 1).([]byte)
			out = append(out, kvEntry(s.ColumnText(0), b))
			return nil
		})
	})
	return out, err
}

// readKV reads the KV table of an object: through its open database if it
// is live, else through a read-only connection to its file (a database
// without the table has no entries).
func (f *Folder) readKV(ctx context.Context, namespace, ref string, live func(*storage.DB) error, file func(*sqlite.Conn) error) error {
	r, err := f.resolve(namespace, ref)
	if err != nil {
		return err
	}
	err = f.peek(ctx, r, func(db *storage.DB) error {
		if db != nil {
			return live(db)
		}
		conn, closeConn, err := openRead(ctx, f.path(r))
		if err != nil {
			return err
		}
		defer closeConn()
		if ok, err := hasTable(conn, kvTable); err != nil || !ok {
			return sqlErr(ctx, err)
		}
		return sqlErr(ctx, file(conn))
	})
	return f.objErr(r, err)
}

// Query implements API.
func (f *Folder) Query(ctx context.Context, namespace, ref string, q Query) (*Result, error) {
	r, err := f.resolve(namespace, ref)
	if err != nil {
		return nil, err
	}
	switch {
	case q.MaxRows == 0:
		q.MaxRows = DefaultMaxRows
	case q.MaxRows < 0 || q.MaxRows > MaxRows:
		return nil, fmt.Errorf("%w: max rows %d: want 1 to %d", ErrInvalid, q.MaxRows, MaxRows)
	}
	if strings.TrimSpace(q.SQL) == "" {
		return nil, fmt.Errorf("%w: empty query", ErrInvalid)
	}
	var res *Result
	if q.Write {
		err = f.write(ctx, r, false, func(db *storage.DB) (bool, error) {
			res, err = queryWrite(db, q)
			return false, err
		})
		return res, f.objErr(r, err)
	}
	err = f.withRead(ctx, r, func(conn *sqlite.Conn) error {
		res, err = queryRead(ctx, conn, q)
		return err
	})
	return res, f.objErr(r, err)
}

// queryRead runs q on a read-only connection: every statement in turn,
// returning the last one's rows.
func queryRead(ctx context.Context, conn *sqlite.Conn, q Query) (*Result, error) {
	res := &Result{Columns: []string{}, Rows: [][]Value{}}
	rest := q.SQL
	for strings.TrimSpace(rest) != "" {
		s, trailing, err := conn.PrepareTransient(rest)
		if err != nil {
			return nil, sqlErr(ctx, err)
		}
		consumed := len(rest) - trailing
		rest = rest[consumed:]
		if s == nil {
			if consumed == 0 {
				break
			}
			continue
		}
		res, err = collect(s, q.MaxRows)
		s.Finalize()
		if err != nil {
			return nil, sqlErr(ctx, err)
		}
	}
	return res, nil
}

// collect reads up to max rows of s.
func collect(s *sqlite.Stmt, max int) (*Result, error) {
	n := s.ColumnCount()
	res := &Result{Columns: make([]string, n), Rows: [][]Value{}}
	for i := range n {
		res.Columns[i] = s.ColumnName(i)
	}
	for {
		ok, err := s.Step()
		if err != nil {
			return nil, err
		}
		if !ok {
			return res, nil
		}
		if len(res.Rows) == max {
			res.Truncated = true
			return res, nil
		}
		row := make([]Value, n)
		for i := range n {
			row[i] = Value{column(s, i)}
		}
		res.Rows = append(res.Rows, row)
	}
}

// queryWrite runs q through the runtime's storage layer, in the
// transaction write commits.
func queryWrite(db *storage.DB, q Query) (*Result, error) {
	cur, err := db.Exec(q.SQL)
	if err != nil {
		return nil, writeErr(err)
	}
	defer cur.Close()
	res := &Result{Columns: cur.ColumnNames(), Rows: [][]Value{}}
	if res.Columns == nil {
		res.Columns = []string{}
	}
	for cur.Next() {
		if len(res.Rows) == q.MaxRows {
			res.Truncated = true
			break
		}
		vals := cur.Values()
		row := make([]Value, len(vals))
		for i, v := range vals {
			row[i] = Value{v}
		}
		res.Rows = append(res.Rows, row)
	}
	if err := cur.Err(); err != nil {
		return nil, writeErr(err)
	}
	res.Changes = cur.RowsWritten()
	return res, nil
}

// writeErr marks storage's refusals with ErrForbidden.
func writeErr(err error) error {
	var fe *storage.ForbiddenError
	if errors.As(err, &fe) {
		return fmt.Errorf("%w: %w", ErrForbidden, err)
	}
	return err
}
