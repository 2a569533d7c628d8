package durable

import (
	"context"
	"fmt"
	"iter"

	"github.com/durable-go/durable/internal/codec"
	"github.com/durable-go/durable/internal/storage"
)

// Storage errors. The storage methods return these (or the error types
// below) for bad input; the object stays usable and nothing is half-written.
var (
	// ErrNoRows is returned by Cursor.One when the query returned no row.
	ErrNoRows = storage.ErrNoRows
	// ErrTooManyRows is returned by Cursor.One for more than one row.
	ErrTooManyRows = storage.ErrTooManyRows
	// ErrCursorClosed is returned by a cursor used after the turn's
	// writes were committed (see Cursor).
	ErrCursorClosed = storage.ErrCursorClosed
	// ErrDiskFull is wrapped by the error of a write or commit that failed
	// because the file system is full (or the quota spent), whether
	// writing the object's database or making the commit durable (the
	// node's journal, an fsync); an object past its own
	// Options.MaxDatabaseSize gets a *LimitError instead. A commit that
	// fails this way is also an ErrDurability.
	ErrDiskFull = storage.ErrDiskFull
)

type (
	// ForbiddenError reports SQL an object may not run (BEGIN, ATTACH,
	// internal tables, PRAGMAs outside the allowlist), with a hint.
	ForbiddenError = storage.ForbiddenError
	// LimitError reports an input past a documented limit.
	LimitError = storage.LimitError
	// SQLError is an error SQLite reported for a statement.
	SQLError = storage.SQLError
	// ArgError reports a bad argument to a storage call.
	ArgError = storage.ArgError
	// ScanError reports a column that cannot be scanned into a destination.
	ScanError = storage.ScanError
	// TxAbortedError means SQLite rolled back the turn's transaction after
	// an error; the rest of the turn fails and the turn's writes are lost.
	TxAbortedError = storage.TxAbortedError
)

// Limits of an object's storage (Cloudflare's, unless noted).
const (
	MaxKeySize         = storage.MaxKeySize         // bytes of a KV key
	MaxEntrySize       = storage.MaxEntrySize       // bytes of a KV key plus its encoded value
	MaxBatchKeys       = storage.MaxBatchKeys       // keys per GetMany, PutMany, DeleteMany
	MaxSQLLength       = storage.MaxSQLLength       // bytes of SQL text in one Exec
	MaxBoundParameters = storage.MaxBoundParameters // ? parameters per statement
	MaxColumns         = storage.MaxColumns         // columns per table or result
	MaxLength          = storage.MaxLength          // bytes of a string, BLOB or row
	// DefaultMaxDatabaseSize is the default storage limit of one object.
	DefaultMaxDatabaseSize = storage.DefaultMaxDatabaseSize
	// MinDatabaseSize is the smallest Options.MaxDatabaseSize accepted.
	MinDatabaseSize = storage.MinDatabaseSize
)

// Storage is an object's private, durable storage: one SQLite database
// holding the object's SQL tables, its key-value pairs and its alarm.
//
// Every call must be made during one of the object's turns (a handler or
// the constructor). All writes of a turn, SQL and KV together, form one
// implicit transaction: they commit atomically when the handler returns
// (or earlier, at a commit point: an outgoing call, Sync, or the start of
// an outermost Transaction), and no reply, frame or outgoing call leaves
// the object before they are durable. A handler that returns an error,
// panics or aborts rolls back the writes made since the last commit
// point; writes committed before it stand.
//
// The database file is created on first use; an object that never touches
// storage has no file.
type Storage struct {
	a *activation
}

// Storage returns the object's storage.
func (s *State) Storage() *Storage { return &Storage{a: s.a} }

// db returns the object's open database, opening it on first use.
func (a *activation) database() (*storage.DB, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		if a.cause != nil {
			return nil, fmt.Errorf("%w: %w", ErrObjectReset, a.cause)
		}
		return nil, ErrObjectReset
	}
	if a.turn == nil {
		return nil, ErrNoTurn
	}
	if a.db != nil {
		return a.db.(*storage.DB), nil
	}
	rt := a.c.rt
	hexID := a.id.String()
	path := storage.ObjectPath(rt.opts.Dir, a.c.name, hexID)
	db, err := storage.Open(path, storage.Options{
		Durability:      rt.dur,
		MaxDatabaseSize: rt.opts.MaxDatabaseSize,
		Spares:          rt.spares,
	})
	if err != nil {
		return nil, fmt.Errorf("durable: open storage of %s %s: %w", a.c.name, hexID, err)
	}
	// Remember the object's name, so it knows it even when reached by ID.
	if name, ok := a.id.Name(); ok {
		if _, stored, err := db.GetMeta("name"); err == nil && !stored {
			err = db.SetMeta("name", name)
			if err != nil {
				db.Close()
				return nil, err
			}
		}
	} else if name, ok, err := db.GetMeta("name"); err == nil && ok {
		a.id.name = name
	}
	a.db = db
	return db, nil
}

// SQL returns the object's SQL interface.
func (s *Storage) SQL() *SQL { return &SQL{a: s.a} }

// SQL runs statements against the object's database.
type SQL struct {
	a *activation
}

// Exec runs query with args bound to its ? parameters and returns a cursor
// over the rows of its last statement. query may hold several statements
// separated by ';': all but the last run to completion first, and args bind
// to the last. Exec runs a statement that writes to completion, and any
// other up to its first row, so a write has happened (or failed) when
// Exec returns; further rows of a query are read lazily.
//
// Arguments may be nil, bool, any integer type (uint64 up to MaxInt64),
// float32/64, string and []byte. Results come back as int64, float64,
// string, []byte or nil.
//
// Transaction statements (BEGIN, COMMIT, SAVEPOINT...), ATTACH, PRAGMAs
// outside an allowlist and the runtime's internal tables are refused with a
// *ForbiddenError; see Storage.TransactionSync for explicit transactions.
func (q *SQL) Exec(query string, args ...any) (*Cursor, error) {
	db, err := q.a.database()
	if err != nil {
		return nil, err
	}
	c, err := db.Exec(query, args...)
	if err != nil {
		return nil, err
	}
	return &Cursor{c: c}, nil
}

// DatabaseSize returns the bytes the object's database uses.
func (q *SQL) DatabaseSize() (int64, error) {
	db, err := q.a.database()
	if err != nil {
		return 0, err
	}
	return db.DatabaseSize()
}

// Cursor iterates over the rows of a query. It is valid until the turn's
// writes are next committed: the end of the turn, or an earlier commit
// point (an outgoing call, Storage.Sync, the start of an outermost
// Storage.Transaction, Storage.DeleteAll). A cursor used after that
// returns ErrCursorClosed; read what you need first.
type Cursor struct {
	c *storage.Cursor
}

// Next advances to the next row and reports whether there is one.
func (c *Cursor) Next() bool { return c.c.Next() }

// Scan copies the current row's columns into dest, one pointer per
// column: *int and the other integer kinds (range-checked), *float32,
// *float64, *bool, *string, *[]byte, *any, or a pointer to a pointer of
// one of these (set to nil for NULL). Other combinations are a *ScanError.
func (c *Cursor) Scan(dest ...any) error { return c.c.Scan(dest...) }

// Values returns a copy of the current row's values.
func (c *Cursor) Values() []any { return c.c.Values() }

// ColumnNames returns the names of the result columns.
func (c *Cursor) ColumnNames() []string { return c.c.ColumnNames() }

// One scans the only row into dest; it fails with ErrNoRows or
// ErrTooManyRows unless there is exactly one row.
func (c *Cursor) One(dest ...any) error { return c.c.One(dest...) }

// Raw reads the remaining rows as slices of values.
func (c *Cursor) Raw() ([][]any, error) { return c.c.Raw() }

// All reads the remaining rows as maps from column name to value.
func (c *Cursor) All() ([]map[string]any, error) { return c.c.All() }

// Rows iterates over the remaining rows.
func (c *Cursor) Rows() iter.Seq2[[]any, error] { return c.c.Rows() }

// Err returns the error that stopped Next, if any.
func (c *Cursor) Err() error { return c.c.Err() }

// Close releases the cursor; it is closed anyway when the turn ends.
func (c *Cursor) Close() error { return c.c.Close() }

// RowsRead returns the rows the statement has read so far.
func (c *Cursor) RowsRead() int64 { return c.c.RowsRead() }

// RowsWritten returns the rows the statement has written.
func (c *Cursor) RowsWritten() int64 { return c.c.RowsWritten() }

// TransactionSync runs fn as a nested transaction (a SAVEPOINT inside the
// turn's transaction): if fn returns an error or panics, its writes are
// rolled back and the error (or panic) passes on; otherwise they join the
// turn's transaction.
func (s *Storage) TransactionSync(fn func() error) error {
	db, err := s.a.database()
	if err != nil {
		return err
	}
	done := false
	defer func() { s.a.forgetAlarmUnless(done && err == nil) }() // alarm.go
	err = db.TransactionSync(fn)
	done = true
	return err
}

// Transaction runs fn as a transaction that, unlike TransactionSync, may
// make outgoing calls (to other objects) while it is open, and keeps the
// object exclusive until it ends: no other event reaches the object in the
// meantime, as with State.BlockConcurrencyWhile, and the same timeout
// applies (Options.BlockConcurrencyTimeout; past it the object is reset).
//
// Every storage call fn makes, directly or through helpers, joins the
// transaction. If fn returns an error, its writes (SQL, KV and alarm) are
// rolled back and Transaction returns the error; the object is not reset
// and its earlier writes stand. If fn panics, its writes are rolled back
// and the panic continues (the turn then fails and resets the object, as
// any panic does). If fn returns nil, its writes join the turn's implicit
// transaction and commit with it.
//
// To keep the output gate, Transaction first commits the turn's earlier
// writes, as an outgoing call would; a call made inside fn leaves once
// those are durable. fn's own writes are not committed until the
// transaction ends, so they may still roll back after such a call has
// left: make the calls inside a transaction ones that are safe to repeat.
// WebSocket messages sent inside fn stay held until the turn's writes are
// durable.
//
// ctx must be the handler's ctx. Transactions nest (an inner one that
// fails rolls back only its own writes). Transaction inside
// TransactionSync and Sync inside Transaction return an error wrapping
// ErrInTransaction.
func (s *Storage) Transaction(ctx context.Context, fn func(ctx context.Context) error) (err error) {
	t := turnFrom(ctx)
	if t == nil || t.a != s.a {
		return ErrNoTurn
	}
	if t.stale.Load() {
		return t.a.closedErr()
	}
	db, err := s.a.database()
	if err != nil {
		return err
	}
	t.mu.Lock()
	outer := t.tx == 0
	t.mu.Unlock()
	if outer {
		if db.InSavepoint() {
			return fmt.Errorf("%w: Transaction inside TransactionSync", ErrInTransaction)
		}
		if _, err := s.a.commitDB(db); err != nil {
			err = commitError(err)
			s.a.setBroken(err)
			return err
		}
	}
	return t.hold(ctx, false, func(ctx context.Context) (err error) {
		t.mu.Lock()
		t.tx++
		t.mu.Unlock()
		defer func() {
			t.mu.Lock()
			t.tx--
			t.mu.Unlock()
		}()
		done := false
		defer func() { s.a.forgetAlarmUnless(done && err == nil) }() // alarm.go
		err = db.TransactionSync(func() error { return fn(ctx) })
		done = true
		return err
	})
}

// Sync commits the turn's writes so far and waits until they are durable.
// It ends the turn's implicit transaction early, as an outgoing call does.
// Inside TransactionSync or Transaction it returns an error wrapping
// ErrInTransaction. If the commit fails (an error wrapping ErrCommit) or
// cannot be made durable (ErrDurability), the turn's writes are lost and
// the object is reset when the turn ends.
func (s *Storage) Sync(ctx context.Context) error {
	db, err := s.a.database()
	if err != nil {
		return err
	}
	if t := turnFrom(ctx); db.InSavepoint() || (t != nil && t.inTx()) {
		return fmt.Errorf("%w: Sync would commit an open transaction", ErrInTransaction)
	}
	ticket, err := s.a.commitDB(db)
	if err != nil {
		err = commitError(err)
		s.a.setBroken(err) // the turn's writes are gone: reset at its end
		return err
	}
	return s.a.waitDurable(ctx, ticket)
}

// DeleteAll deletes everything the object stored, atomically: SQL tables,
// key-value pairs and the alarm.
func (s *Storage) DeleteAll() error {
	db, err := s.a.database()
	if err != nil {
		return err
	}
	s.a.touchAlarm()
	return db.DeleteAll()
}

// Get decodes the value stored under key into the value dst points to. It
// reports whether the key exists.
func (s *Storage) Get(key string, dst any) (bool, error) {
	db, err := s.a.database()
	if err != nil {
		return false, err
	}
	b, ok, err := db.Get(key)
	if err != nil || !ok {
		return false, err
	}
	return true, codec.Unmarshal(b, dst)
}

// Put stores v under key. v is encoded with the package's codec (see
// internal/codec: structs, maps, slices, []byte and time.Time round-trip).
// Keys are 1 to MaxKeySize bytes; key plus encoded value at most
// MaxEntrySize bytes.
func (s *Storage) Put(key string, v any) error {
	db, err := s.a.database()
	if err != nil {
		return err
	}
	b, err := codec.Marshal(v)
	if err != nil {
		return &ArgError{Arg: "value", Reason: err.Error()}
	}
	return db.Put(key, b)
}

// Delete deletes key and reports whether it existed.
func (s *Storage) Delete(key string) (bool, error) {
	db, err := s.a.database()
	if err != nil {
		return false, err
	}
	return db.Delete(key)
}

// DeleteMany deletes up to MaxBatchKeys keys and returns how many existed.
func (s *Storage) DeleteMany(keys []string) (int, error) {
	db, err := s.a.database()
	if err != nil {
		return 0, err
	}
	return db.DeleteMany(keys)
}

// Entry is a key and its decoded value.
type Entry[T any] struct {
	Key   string
	Value T
}

// ListOptions selects keys for List. Keys sort by their UTF-8 bytes.
// Start and StartAfter cannot both be set.
type ListOptions = storage.ListOptions

// Get returns the value of key decoded as a T, and whether it exists.
func Get[T any](s *Storage, key string) (T, bool, error) {
	var v T
	ok, err := s.Get(key, &v)
	return v, ok, err
}

// GetMany returns the entries of up to MaxBatchKeys keys, in key order;
// keys that do not exist are left out.
func GetMany[T any](s *Storage, keys []string) ([]Entry[T], error) {
	db, err := s.a.database()
	if err != nil {
		return nil, err
	}
	raw, err := db.GetMany(keys)
	if err != nil {
		return nil, err
	}
	return decodeEntries[T](raw)
}

// PutMany stores up to MaxBatchKeys entries atomically.
func PutMany[T any](s *Storage, entries []Entry[T]) error {
	db, err := s.a.database()
	if err != nil {
		return err
	}
	raw := make([]storage.Entry, len(entries))
	for i, e := range entries {
		b, err := codec.Marshal(e.Value)
		if err != nil {
			return &ArgError{Arg: fmt.Sprintf("entries[%d]", i), Reason: err.Error()}
		}
		raw[i] = storage.Entry{Key: e.Key, Value: b}
	}
	return db.PutMany(raw)
}

// List returns the entries selected by opts, decoded as T.
func List[T any](s *Storage, opts ListOptions) ([]Entry[T], error) {
	db, err := s.a.database()
	if err != nil {
		return nil, err
	}
	raw, err := db.List(opts)
	if err != nil {
		return nil, err
	}
	return decodeEntries[T](raw)
}

func decodeEntries[T any](raw []storage.Entry) ([]Entry[T], error) {
	out := make([]Entry[T], len(raw))
	for i, e := range raw {
		out[i].Key = e.Key
		if err := codec.Unmarshal(e.Value, &out[i].Value); err != nil {
			return nil, fmt.Errorf("durable: key %q: %w", e.Key, err)
		}
	}
	return out, nil
}
