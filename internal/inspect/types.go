package inspect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// Errors of the operations. They are returned wrapped (the message names
// the object); test with errors.Is. Client returns errors that match the
// same sentinels.
var (
	// ErrLocked means a running app has the data folder open: use its
	// admin API instead.
	ErrLocked = errors.New("inspect: data folder is in use by a running app")
	// ErrNotFound means the object (or namespace) has no database.
	ErrNotFound = errors.New("inspect: not found")
	// ErrReadOnly means a query tried to write without Query.Write. SQLite
	// refused it (the connection was opened read-only): nothing changed.
	ErrReadOnly = errors.New("inspect: the query would write to the database, which is open read-only")
	// ErrForbidden means SQL that this API does not run (ATTACH), or that
	// objects may not run (see internal/storage's restrictions on writes).
	ErrForbidden = errors.New("inspect: not allowed")
	// ErrInvalid means a bad argument: a malformed namespace, object
	// reference, format or option.
	ErrInvalid = errors.New("inspect: invalid argument")
	// ErrBusy means the object stayed busy (work in flight outside its
	// turns, or a handler waiting on another object) for longer than the
	// operation could wait to close it.
	ErrBusy = errors.New("inspect: object busy")
	// ErrUnauthorized is returned by Client when the admin API refused the
	// token.
	ErrUnauthorized = errors.New("inspect: admin API refused the token")
	// ErrExists means Backup's destination is not empty.
	ErrExists = errors.New("inspect: destination exists and is not empty")
)

// API is every operation on a data folder. *Folder implements it on the
// files, *Client through a running app's admin API (NewHandler serves any
// API over HTTP). Objects are named by namespace and ref: the object's
// ID (64 hex digits) or its name.
type API interface {
	// Namespaces lists the namespaces that have objects on disk.
	Namespaces(ctx context.Context) ([]Namespace, error)
	// Objects lists the objects of namespace, or of every namespace if
	// namespace is "", sorted by namespace and ID.
	Objects(ctx context.Context, namespace string) ([]Object, error)
	// Object describes one object; ErrNotFound if it has no database.
	Object(ctx context.Context, namespace, ref string) (Object, error)
	// Query runs SQL against the object's database.
	Query(ctx context.Context, namespace, ref string, q Query) (*Result, error)
	// KVGet returns the entries of keys that exist, in key order.
	KVGet(ctx context.Context, namespace, ref string, keys []string) ([]KVEntry, error)
	// KVList returns the entries opts selects.
	KVList(ctx context.Context, namespace, ref string, opts KVList) ([]KVEntry, error)
	// Alarms lists the pending alarms of every object, earliest first.
	Alarms(ctx context.Context) ([]Alarm, error)
	// Export writes a consistent copy of the object in format to w.
	Export(ctx context.Context, namespace, ref string, format Format, w io.Writer) error
	// Import replaces the object's content with an export read from r,
	// creating the object if it does not exist.
	Import(ctx context.Context, namespace, ref string, format Format, r io.Reader) (*ImportResult, error)
	// Check checks the integrity of the objects of namespace (every
	// namespace if ""), calling progress after each one if it is not nil.
	Check(ctx context.Context, namespace string, progress Progress) ([]CheckResult, error)
}

// Progress is told how many of total items are done.
type Progress func(done, total int)

// Ref names one object on disk.
type Ref struct {
	Namespace string `json:"namespace"`
	ID        string `json:"id"`             // 64 lowercase hex digits
	Name      string `json:"name,omitempty"` // set when the reference was a name
}

// Resolver turns a namespace and an object reference (an ID or a name)
// into a Ref, with the runtime's ID rules. It also validates the
// namespace name.
type Resolver func(namespace, ref string) (Ref, error)

// IDResolver makes a Resolver from a function returning the runtime's ID
// type (or hook.ObjectID).
func IDResolver[I interface {
	String() string
	Name() (string, bool)
}](resolve func(namespace, ref string) (I, error)) Resolver {
	return func(namespace, ref string) (Ref, error) {
		id, err := resolve(namespace, ref)
		if err != nil {
			return Ref{}, err
		}
		name, _ := id.Name()
		return Ref{Namespace: namespace, ID: id.String(), Name: name}, nil
	}
}

// Namespace summarises one namespace folder.
type Namespace struct {
	Name     string    `json:"name"`
	Objects  int       `json:"objects"`
	Size     int64     `json:"size"`     // bytes on disk of its objects
	Modified time.Time `json:"modified"` // the latest Object.Modified
}

// Object describes one object's database.
type Object struct {
	Namespace string     `json:"namespace"`
	ID        string     `json:"id"`
	Name      string     `json:"name,omitempty"`  // stored when it was reached by name
	Size      int64      `json:"size"`            // bytes on disk: database plus WAL
	Modified  time.Time  `json:"modified"`        // last change of its files
	Alarm     *time.Time `json:"alarm,omitempty"` // the pending alarm, if any
}

// Alarm is one object's pending alarm.
type Alarm struct {
	Namespace string    `json:"namespace"`
	ID        string    `json:"id"`
	Name      string    `json:"name,omitempty"`
	At        time.Time `json:"at"`
}

// Query is SQL to run against one object.
type Query struct {
	// SQL is one or more statements separated by ';'; the result is the
	// last statement's.
	SQL string `json:"sql"`
	// Write allows the query to write. Without it the database is opened
	// read-only and a writing statement fails with ErrReadOnly. With it the
	// query runs like an object's own SQL, in one transaction made durable
	// before Query returns.
	Write bool `json:"write,omitempty"`
	// MaxRows bounds the rows returned; 0 means DefaultMaxRows, and it
	// cannot exceed MaxRows. Result.Truncated reports a cut.
	MaxRows int `json:"max_rows,omitempty"`
}

// Row limits of Query.
const (
	DefaultMaxRows = 10_000
	MaxRows        = 1_000_000
)

// Result is the outcome of a Query.
type Result struct {
	Columns   []string  `json:"columns"`
	Rows      [][]Value `json:"rows"`
	Truncated bool      `json:"truncated,omitempty"` // more rows than Query.MaxRows
	Changes   int64     `json:"changes,omitempty"`   // rows written by the last statement (Write only)
}

// KVEntry is one KV entry. Values are stored encoded (CBOR, see
// internal/codec); Value is the decoded value as JSON.
type KVEntry struct {
	Key   string          `json:"key"`
	Value json.RawMessage `json:"value,omitempty"`
	Size  int             `json:"size"`            // bytes of the encoded value
	Error string          `json:"error,omitempty"` // why Value is missing: the bytes do not decode
}

// KVList selects KV entries, as storage.ListOptions does: keys sort by
// their UTF-8 bytes; Start and StartAfter cannot both be set.
type KVList struct {
	Prefix     string `json:"prefix,omitempty"`
	Start      string `json:"start,omitempty"`       // first key, inclusive
	StartAfter string `json:"start_after,omitempty"` // first key, exclusive
	End        string `json:"end,omitempty"`         // last key, exclusive
	Reverse    bool   `json:"reverse,omitempty"`
	Limit      int    `json:"limit,omitempty"` // 0 means no limit
}

// CheckResult is the verdict on one object.
type CheckResult struct {
	Namespace string   `json:"namespace"`
	ID        string   `json:"id"`
	Name      string   `json:"name,omitempty"`
	OK        bool     `json:"ok"`
	Problems  []string `json:"problems,omitempty"`
}

// Format is an export format.
type Format string

// Export formats.
const (
	// FormatSQLite is a consistent copy of the object's SQLite database
	// file, made with SQLite's backup API.
	FormatSQLite Format = "sqlite"
	// FormatJSON is a Dump.
	FormatJSON Format = "json"
)

// ParseFormat checks a format name; "" means FormatSQLite.
func ParseFormat(s string) (Format, error) {
	switch Format(s) {
	case "", FormatSQLite:
		return FormatSQLite, nil
	case FormatJSON:
		return FormatJSON, nil
	}
	return "", fmt.Errorf("%w: format %q: want sqlite or json", ErrInvalid, s)
}

// ImportResult says what Import wrote.
type ImportResult struct {
	Ref
	Tables int        `json:"tables"` // user tables, virtual ones included
	Rows   int64      `json:"rows"`   // rows of those tables
	KV     int        `json:"kv"`     // KV entries
	Alarm  *time.Time `json:"alarm,omitempty"`
}

// DumpVersion is the Format field of a Dump.
const DumpVersion = "durable-object/v1"

// Dump is the JSON export of one object: everything Import needs to
// rebuild it.
type Dump struct {
	Format    string            `json:"format"` // DumpVersion
	Namespace string            `json:"namespace"`
	ID        string            `json:"id"`
	Name      string            `json:"name,omitempty"`
	Meta      map[string]string `json:"meta,omitempty"` // the runtime's metadata (the name among it)
	Alarm     *time.Time        `json:"alarm,omitempty"`
	// Schema lists the user's tables, indexes, views and triggers in the
	// order they were created.
	Schema []SchemaEntry `json:"schema"`
	// Tables holds the rows of every table of Schema (and of
	// sqlite_sequence, the AUTOINCREMENT counters).
	Tables []Table     `json:"tables"`
	KV     []DumpEntry `json:"kv"`
}

// SchemaEntry is one row of sqlite_schema.
type SchemaEntry struct {
	Type  string `json:"type"` // table, index, view or trigger
	Name  string `json:"name"`
	Table string `json:"table"`
	SQL   string `json:"sql"`
}

// Table is the rows of one table. For a rowid table without an INTEGER
// PRIMARY KEY the first column is its rowid (named rowid, oid or _rowid_,
// whichever is not a column of the table).
type Table struct {
	Name    string    `json:"name"`
	Columns []string  `json:"columns"`
	Rows    [][]Value `json:"rows"`
}

// DumpEntry is one KV entry: its encoded bytes, which Import stores back
// as they are, and for reading their decoded form.
type DumpEntry struct {
	Key     string          `json:"key"`
	Value   []byte          `json:"value"`
	Decoded json.RawMessage `json:"decoded,omitempty"`
}
