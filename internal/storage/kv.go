package storage

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"zombiezen.com/go/sqlite"
)

// KV limits.
const (
	MaxKeySize   = 2048      // bytes of a key
	MaxEntrySize = 2_000_000 // bytes of key plus value
	MaxBatchKeys = 128       // keys per GetMany, PutMany or DeleteMany
	MaxMetaSize  = 2048      // bytes of a metadata key or value
)

// Entry is a KV pair.
type Entry struct {
	Key   string
	Value []byte
}

// ListOptions selects a range of keys for List. Keys are ordered by their
// UTF-8 bytes (so by code point). An empty string means "not set".
type ListOptions struct {
	Start      string // first key, inclusive
	StartAfter string // first key, exclusive; cannot be combined with Start
	End        string // last key, exclusive
	Prefix     string // only keys with this prefix (narrows Start/End)
	Reverse    bool   // descending order; the bounds keep their meaning
	Limit      int    // at most this many entries; 0 means no limit
}

func checkKey(arg, key string) error {
	if key == "" {
		return &ArgError{Arg: arg, Reason: "empty key"}
	}
	if len(key) > MaxKeySize {
		return &LimitError{Limit: LimitKeySize, Max: MaxKeySize, Got: int64(len(key))}
	}
	return nil
}

func checkEntry(arg, key string, val []byte) error {
	if err := checkKey(arg, key); err != nil {
		return err
	}
	if n := len(key) + len(val); n > MaxEntrySize {
		return &LimitError{Limit: LimitEntrySize, Max: MaxEntrySize, Got: int64(n)}
	}
	return nil
}

func checkBatch(n int) error {
	if n > MaxBatchKeys {
		return &LimitError{Limit: LimitBatchKeys, Max: MaxBatchKeys, Got: int64(n)}
	}
	return nil
}

// Get returns the value stored under key. ok is false if there is none.
// Keys are non-empty strings of at most MaxKeySize bytes.
func (db *DB) Get(key string) (val []byte, ok bool, err error) {
	if err := checkKey("key", key); err != nil {
		return nil, false, err
	}
	if err := db.lock(); err != nil {
		return nil, false, err
	}
	defer db.mu.Unlock()
	if err := db.begin(); err != nil {
		return nil, false, err
	}
	return db.getLocked(key)
}

func (db *DB) getLocked(key string) ([]byte, bool, error) {
	s, err := db.prep("SELECT value FROM _durable_kv WHERE key = ?")
	if err != nil {
		return nil, false, err
	}
	defer db.finish(s)
	if err := bindText(s, 1, key); err != nil {
		return nil, false, err
	}
	row, err := db.step(s)
	db.rowsRead++
	if err != nil || !row {
		return nil, false, err
	}
	return columnBytes(s, 0), true, nil
}

// GetMany returns the entries stored under keys, in key order, omitting
// keys that have no value (and duplicates). At most MaxBatchKeys keys.
func (db *DB) GetMany(keys []string) ([]Entry, error) {
	if err := checkBatch(len(keys)); err != nil {
		return nil, err
	}
	for i, k := range keys {
		if err := checkKey(fmt.Sprintf("keys[%d]", i), k); err != nil {
			return nil, err
		}
	}
	sorted := slices.Clone(keys)
	slices.Sort(sorted)
	sorted = slices.Compact(sorted)
	if err := db.lock(); err != nil {
		return nil, err
	}
	defer db.mu.Unlock()
	if err := db.begin(); err != nil {
		return nil, err
	}
	var out []Entry
	for _, k := range sorted {
		v, ok, err := db.getLocked(k)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, Entry{Key: k, Value: v})
		}
	}
	return out, nil
}

// Put stores val under key, replacing any value. A nil val is stored as
// an empty value. len(key)+len(val) may be at most MaxEntrySize.
func (db *DB) Put(key string, val []byte) error {
	if err := checkEntry("key", key, val); err != nil {
		return err
	}
	if err := db.lock(); err != nil {
		return err
	}
	defer db.mu.Unlock()
	if err := db.begin(); err != nil {
		return err
	}
	return db.putLocked(key, val)
}

func (db *DB) putLocked(key string, val []byte) error {
	// INSERT ... SELECT makes SQLite keep a statement journal, so that
	// hitting MaxDatabaseSize undoes this statement only, not the whole
	// transaction.
	s, err := db.prep("INSERT OR REPLACE INTO _durable_kv (key, value) SELECT ?, ?")
	if err != nil {
		return err
	}
	defer db.finish(s)
	// The row (key, value and a record header of a few bytes) may exceed
	// MaxLength, the limit user SQL gets, by that header.
	db.conn.Limit(sqlite.LimitLength, MaxLength+64)
	defer db.conn.Limit(sqlite.LimitLength, MaxLength)
	if err := bindText(s, 1, key); err != nil {
		return err
	}
	if err := bindBytes(s, 2, val); err != nil {
		return err
	}
	_, err = db.step(s)
	if err == nil {
		db.rowsWritten++
	}
	return err
}

// PutMany stores every entry, atomically, in order (for a key given twice
// the last value wins). At most MaxBatchKeys entries.
func (db *DB) PutMany(entries []Entry) error {
	if err := checkBatch(len(entries)); err != nil {
		return err
	}
	for i, e := range entries {
		if err := checkEntry(fmt.Sprintf("entries[%d].Key", i), e.Key, e.Value); err != nil {
			return err
		}
	}
	if err := db.lock(); err != nil {
		return err
	}
	defer db.mu.Unlock()
	if err := db.begin(); err != nil {
		return err
	}
	return db.atomically(func() error {
		for _, e := range entries {
			if err := db.putLocked(e.Key, e.Value); err != nil {
				return err
			}
		}
		return nil
	})
}

// atomically runs fn inside a savepoint, undoing its changes if it fails.
// db.mu must be held and the transaction open.
func (db *DB) atomically(fn func() error) error {
	if err := db.execInternal("SAVEPOINT _durable_batch"); err != nil {
		return err
	}
	if err := fn(); err != nil {
		if db.aborted == nil {
			db.execInternal("ROLLBACK TO _durable_batch")
			db.execInternal("RELEASE _durable_batch")
		}
		return err
	}
	return db.execInternal("RELEASE _durable_batch")
}

// Delete removes key and reports whether it existed.
func (db *DB) Delete(key string) (bool, error) {
	if err := checkKey("key", key); err != nil {
		return false, err
	}
	if err := db.lock(); err != nil {
		return false, err
	}
	defer db.mu.Unlock()
	if err := db.begin(); err != nil {
		return false, err
	}
	return db.deleteLocked(key)
}

func (db *DB) deleteLocked(key string) (bool, error) {
	s, err := db.prep("DELETE FROM _durable_kv WHERE key = ?")
	if err != nil {
		return false, err
	}
	defer db.finish(s)
	if err := bindText(s, 1, key); err != nil {
		return false, err
	}
	if _, err := db.step(s); err != nil {
		return false, err
	}
	n := db.conn.Changes()
	db.rowsWritten += int64(n)
	return n > 0, nil
}

// DeleteMany removes keys, atomically, and returns how many existed (a
// key given twice counts once). At most MaxBatchKeys keys.
func (db *DB) DeleteMany(keys []string) (int, error) {
	if err := checkBatch(len(keys)); err != nil {
		return 0, err
	}
	for i, k := range keys {
		if err := checkKey(fmt.Sprintf("keys[%d]", i), k); err != nil {
			return 0, err
		}
	}
	if err := db.lock(); err != nil {
		return 0, err
	}
	defer db.mu.Unlock()
	if err := db.begin(); err != nil {
		return 0, err
	}
	n := 0
	err := db.atomically(func() error {
		for _, k := range keys {
			ok, err := db.deleteLocked(k)
			if err != nil {
				return err
			}
			if ok {
				n++
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// List returns the entries in the range opts selects, in key order (or
// reverse order). It loads them all into memory: use Limit and Start or
// StartAfter to page through large ranges.
func (db *DB) List(opts ListOptions) ([]Entry, error) {
	q, args, empty, err := listQuery(opts)
	if err != nil {
		return nil, err
	}
	if err := db.lock(); err != nil {
		return nil, err
	}
	defer db.mu.Unlock()
	if err := db.begin(); err != nil {
		return nil, err
	}
	if empty {
		db.rowsRead++
		return nil, nil
	}
	s, err := db.prep(q)
	if err != nil {
		return nil, err
	}
	defer db.finish(s)
	for i, a := range args {
		switch v := a.(type) {
		case string:
			if err := bindText(s, i+1, v); err != nil {
				return nil, err
			}
		case int:
			s.BindInt64(i+1, int64(v))
		}
	}
	var out []Entry
	for {
		row, err := db.step(s)
		if err != nil {
			return nil, err
		}
		if !row {
			break
		}
		out = append(out, Entry{Key: s.ColumnText(0), Value: columnBytes(s, 1)})
	}
	db.rowsRead += max(int64(len(out)), 1)
	return out, nil
}

// listQuery builds the statement for opts. empty reports a range that
// cannot hold any key.
func listQuery(opts ListOptions) (query string, args []any, empty bool, err error) {
	if opts.Start != "" && opts.StartAfter != "" {
		return "", nil, false, &ArgError{Arg: "ListOptions", Reason: "Start and StartAfter are mutually exclusive"}
	}
	if opts.Limit < 0 {
		return "", nil, false, &ArgError{Arg: "ListOptions.Limit", Reason: "negative"}
	}
	for _, k := range []string{opts.Start, opts.StartAfter, opts.End, opts.Prefix} {
		if len(k) > MaxKeySize {
			return "", nil, false, &LimitError{Limit: LimitKeySize, Max: MaxKeySize, Got: int64(len(k))}
		}
	}
	// Lower bound: the largest of Start (>=), StartAfter (>), Prefix (>=).
	lo, loExcl := opts.Start, false
	if opts.StartAfter != "" {
		lo, loExcl = opts.StartAfter, true
	}
	if opts.Prefix != "" && opts.Prefix > lo {
		lo, loExcl = opts.Prefix, false
	}
	// Upper bound (exclusive): the smaller of End and the prefix's end.
	hi := opts.End
	if opts.Prefix != "" {
		if pe, ok := prefixEnd(opts.Prefix); ok && (hi == "" || pe < hi) {
			hi = pe
		}
	}
	if hi != "" && lo >= hi {
		return "", nil, true, nil
	}
	var b strings.Builder
	b.WriteString("SELECT key, value FROM _durable_kv")
	switch {
	case lo != "" && loExcl:
		b.WriteString(" WHERE key > ?")
		args = append(args, lo)
	case lo != "":
		b.WriteString(" WHERE key >= ?")
		args = append(args, lo)
	}
	if hi != "" {
		if len(args) > 0 {
			b.WriteString(" AND key < ?")
		} else {
			b.WriteString(" WHERE key < ?")
		}
		args = append(args, hi)
	}
	// The runtime's own rows have BLOB keys, ordered after every TEXT
	// key: end the range below them (a TEXT bound already does).
	if hi == "" {
		if len(args) > 0 {
			b.WriteString(" AND key < x''")
		} else {
			b.WriteString(" WHERE key < x''")
		}
	}
	b.WriteString(" ORDER BY key")
	if opts.Reverse {
		b.WriteString(" DESC")
	}
	if opts.Limit > 0 {
		b.WriteString(" LIMIT ?")
		args = append(args, opts.Limit)
	}
	return b.String(), args, false, nil
}

// ListQuery returns the statement List runs for opts, for packages that
// read KV tables through connections of their own (internal/inspect), so
// that they select exactly what List would. empty reports a range that
// cannot hold any key.
func ListQuery(opts ListOptions) (query string, args []any, empty bool, err error) {
	return listQuery(opts)
}

// prefixEnd returns the smallest string greater than every string with
// the prefix p, or false if there is none (p is all 0xff bytes).
func prefixEnd(p string) (string, bool) {
	b := []byte(p)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return string(b[:i+1]), true
		}
	}
	return "", false
}

// DeleteAll deletes every user table, view, index and trigger, every KV
// entry and the alarm, atomically in the current transaction (Rollback
// restores them). The metadata set with SetMeta is kept. Open cursors are
// closed first.
func (db *DB) DeleteAll() error {
	if err := db.lock(); err != nil {
		return err
	}
	defer db.mu.Unlock()
	db.closeCursors()
	// Dropping a virtual table calls its module.
	if err := db.loadExtensions(); err != nil {
		return err
	}
	if err := db.begin(); err != nil {
		return err
	}
	err := db.atomically(func() error {
		s, err := db.prep("PRAGMA defer_foreign_keys")
		if err != nil {
			return err
		}
		deferred, err := db.queryInt(s)
		if err != nil {
			return err
		}
		// Dropping a parent table before its children must not trip
		// immediate foreign key checks; when all are dropped nothing
		// dangles.
		if err := db.execInternal("PRAGMA defer_foreign_keys = ON"); err != nil {
			return err
		}
		// Virtual tables first: dropping one drops its shadow tables.
		for _, q := range []string{
			"SELECT type, name FROM sqlite_schema WHERE type = 'view' OR (type = 'table' AND sql LIKE 'CREATE VIRTUAL TABLE%')",
			"SELECT type, name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
		} {
			objs, err := db.schemaObjects(q)
			if err != nil {
				return err
			}
			for _, o := range objs {
				if o.typ == "table" && internalTables[o.name] {
					continue
				}
				if err := db.execInternalTransient("DROP " + strings.ToUpper(o.typ) + " IF EXISTS " + quoteIdent(o.name)); err != nil {
					return err
				}
			}
		}
		// The KV entries (TEXT keys) and the alarm; the metadata stays.
		if err := db.execInternal("DELETE FROM _durable_kv WHERE key < x''"); err != nil {
			return err
		}
		if err := db.metaDeleteLocked("alarm"); err != nil {
			return err
		}
		if deferred == 0 {
			return db.execInternal("PRAGMA defer_foreign_keys = OFF")
		}
		return nil
	})
	db.cache.forgetColumns()
	db.alarm = alarmMemo{}
	return err
}

type schemaObject struct{ typ, name string }

func (db *DB) schemaObjects(query string) ([]schemaObject, error) {
	s, err := db.prep(query)
	if err != nil {
		return nil, err
	}
	defer db.finish(s)
	var out []schemaObject
	for {
		row, err := db.step(s)
		if err != nil {
			return nil, err
		}
		if !row {
			return out, nil
		}
		out = append(out, schemaObject{typ: s.ColumnText(0), name: s.ColumnText(1)})
	}
}

// execInternalTransient runs an internal statement that is not worth
// caching.
func (db *DB) execInternalTransient(query string) error {
	db.userSQL = false
	if err := execTransient(db.conn, query); err != nil {
		return db.sqlErr(err)
	}
	return nil
}

func quoteIdent(name string) string {
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}

// Alarm returns the stored alarm time, if any.
func (db *DB) Alarm() (t time.Time, ok bool, err error) {
	if err := db.lock(); err != nil {
		return time.Time{}, false, err
	}
	defer db.mu.Unlock()
	if !db.alarm.known {
		if db.aborted != nil {
			return time.Time{}, false, db.aborted
		}
		v, ok, err := db.metaGetLocked("alarm")
		if err != nil {
			return time.Time{}, false, err
		}
		n, isInt := v.(int64)
		if ok && !isInt {
			return time.Time{}, false, fmt.Errorf("storage: stored alarm has type %T", v)
		}
		db.alarm = alarmMemo{known: true, set: ok, at: n}
	}
	if !db.alarm.set {
		return time.Time{}, false, nil
	}
	return time.Unix(0, db.alarm.at).UTC(), true, nil
}

// alarmMemo is what DB.Alarm would read: known says the other fields
// hold it.
type alarmMemo struct {
	known bool
	set   bool
	at    int64 // Unix nanoseconds
}

// SetAlarm stores the alarm time t, replacing any. It is kept with
// nanosecond precision; t must lie between the years 1678 and 2261.
func (db *DB) SetAlarm(t time.Time) error {
	if t.Year() < 1678 || t.Year() > 2261 {
		return &ArgError{Arg: "alarm time", Reason: fmt.Sprintf("%v is outside the years 1678 to 2261", t)}
	}
	if err := db.lock(); err != nil {
		return err
	}
	defer db.mu.Unlock()
	db.alarm = alarmMemo{}
	if err := db.metaSetLocked("alarm", t.UnixNano()); err != nil {
		return err
	}
	db.alarm = alarmMemo{known: true, set: true, at: t.UnixNano()}
	return nil
}

// DeleteAlarm removes the stored alarm, if any.
func (db *DB) DeleteAlarm() error {
	if err := db.lock(); err != nil {
		return err
	}
	defer db.mu.Unlock()
	db.alarm = alarmMemo{}
	if err := db.metaDeleteLocked("alarm"); err != nil {
		return err
	}
	db.alarm = alarmMemo{known: true}
	return nil
}

// GetMeta returns a small metadata value of the runtime (such as the
// object's name), stored apart from user data and kept by DeleteAll.
func (db *DB) GetMeta(key string) (string, bool, error) {
	if key == "" || len(key) > MaxMetaSize {
		return "", false, &ArgError{Arg: "meta key", Reason: fmt.Sprintf("length %d, want 1 to %d bytes", len(key), MaxMetaSize)}
	}
	v, ok, err := db.metaGet("m/" + key)
	if err != nil || !ok {
		return "", false, err
	}
	s, _ := v.(string)
	return s, true, nil
}

// SetMeta stores a metadata value (see GetMeta). Keys and values are at
// most MaxMetaSize bytes.
func (db *DB) SetMeta(key, val string) error {
	if key == "" || len(key) > MaxMetaSize {
		return &ArgError{Arg: "meta key", Reason: fmt.Sprintf("length %d, want 1 to %d bytes", len(key), MaxMetaSize)}
	}
	if len(val) > MaxMetaSize {
		return &LimitError{Limit: LimitMetaSize, Max: MaxMetaSize, Got: int64(len(val))}
	}
	return db.metaSet("m/"+key, val)
}

func (db *DB) metaGet(key string) (any, bool, error) {
	if err := db.lock(); err != nil {
		return nil, false, err
	}
	defer db.mu.Unlock()
	return db.metaGetLocked(key)
}

func (db *DB) metaGetLocked(key string) (any, bool, error) {
	if err := db.begin(); err != nil {
		return nil, false, err
	}
	s, err := db.prep("SELECT value FROM _durable_kv WHERE key = ?")
	if err != nil {
		return nil, false, err
	}
	defer db.finish(s)
	if err := bindRowKey(s, 1, key); err != nil {
		return nil, false, err
	}
	row, err := db.step(s)
	if err != nil || !row {
		return nil, false, err
	}
	return columnValue(s, 0), true, nil
}

func (db *DB) metaSet(key string, val any) error {
	if err := db.lock(); err != nil {
		return err
	}
	defer db.mu.Unlock()
	return db.metaSetLocked(key, val)
}

func (db *DB) metaSetLocked(key string, val any) error {
	if err := db.begin(); err != nil {
		return err
	}
	s, err := db.prep("INSERT OR REPLACE INTO _durable_kv (key, value) SELECT ?, ?") // see putLocked
	if err != nil {
		return err
	}
	defer db.finish(s)
	if err := bindRowKey(s, 1, key); err != nil {
		return err
	}
	switch v := val.(type) {
	case int64:
		s.BindInt64(2, v)
	case string:
		if err := bindText(s, 2, v); err != nil {
			return err
		}
	}
	_, err = db.step(s)
	return err
}

func (db *DB) metaDeleteLocked(key string) error {
	if err := db.begin(); err != nil {
		return err
	}
	s, err := db.prep("DELETE FROM _durable_kv WHERE key = ?")
	if err != nil {
		return err
	}
	defer db.finish(s)
	if err := bindRowKey(s, 1, key); err != nil {
		return err
	}
	_, err = db.step(s)
	return err
}
