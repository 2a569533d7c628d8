package inspect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"strings"
	"sync"
	"time"

	"zombiezen.com/go/sqlite"

	"github.com/durable-go/durable/internal/codec"
	"github.com/durable-go/durable/internal/storage"
)

// The runtime's internal tables, as internal/storage lays them out
// (TestLayout pins this against storage itself).
const (
	internalPrefix = "_durable_"
	kvTable        = "_durable_kv"   // key TEXT PRIMARY KEY, value BLOB (codec-encoded)
	metaTable      = "_durable_meta" // layout 1 only: key TEXT PRIMARY KEY, value
	metaAlarm      = "alarm"         // INTEGER, Unix nanoseconds
	metaPrefix     = "m/"            // storage.DB.SetMeta("k", v) is the row "m/k"
	metaName       = "name"          // the object's name (State.Name)

	// The runtime's rows are in kvTable under BLOB keys (layout 2), which
	// order after every KV entry's TEXT key; in layout 1 they were the rows
	// of metaTable, under TEXT keys. storage.Open upgrades a file to
	// layout 2; files not opened since keep layout 1.
	kvEntries = "SELECT key, value FROM " + kvTable + " WHERE key < x'' ORDER BY key"
	metaRows  = "SELECT CAST(key AS TEXT), value FROM " + kvTable + " WHERE key >= x''"
)

// readAuthorizer keeps read connections on their own file.
var readAuthorizer = sqlite.AuthorizeFunc(func(a sqlite.Action) sqlite.AuthResult {
	switch a.Type() {
	case sqlite.OpAttach, sqlite.OpDetach:
		return sqlite.AuthResultDeny
	}
	return sqlite.AuthResultOK
})

// shmFiles tracks the read connections open on each database file of the
// process. A read-only connection to a WAL database needs a -shm file (the
// runtime's own connections keep their WAL index in memory and never make
// one): the first reader notes whether the file was there, and the last
// one removes it if it was not, so reads leave the folder as they found it.
var shmFiles = struct {
	mu      sync.Mutex // guards open, created
	open    map[string]int
	created map[string]bool
}{open: make(map[string]int), created: make(map[string]bool)}

func acquireShm(path string) (release func()) {
	shmFiles.mu.Lock()
	if shmFiles.open[path] == 0 {
		_, err := os.Lstat(path + "-shm")
		shmFiles.created[path] = errors.Is(err, fs.ErrNotExist)
	}
	shmFiles.open[path]++
	shmFiles.mu.Unlock()
	return func() {
		shmFiles.mu.Lock()
		defer shmFiles.mu.Unlock()
		shmFiles.open[path]--
		if shmFiles.open[path] > 0 {
			return
		}
		if shmFiles.created[path] {
			os.Remove(path + "-shm")
		}
		delete(shmFiles.open, path)
		delete(shmFiles.created, path)
	}
}

// openRead opens the database at path read-only (SQLITE_OPEN_READONLY):
// no statement can change it. ctx interrupts long statements. The caller
// must call closeFn.
func openRead(ctx context.Context, path string) (conn *sqlite.Conn, closeFn func(), err error) {
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil, ErrNotFound
		}
		return nil, nil, err
	}
	release := acquireShm(path)
	conn, err = storage.OpenConn(path, sqlite.OpenReadOnly)
	if err != nil {
		release()
		return nil, nil, err
	}
	closeFn = func() {
		storage.CloseConn(conn)
		release()
	}
	conn.SetBusyTimeout(5 * time.Second)
	if err := storage.SetDefensive(conn); err != nil {
		closeFn()
		return nil, nil, err
	}
	if err := conn.SetAuthorizer(readAuthorizer); err != nil {
		closeFn()
		return nil, nil, err
	}
	conn.SetInterrupt(ctx.Done())
	return conn, closeFn, nil
}

// sqlErr maps an SQLite error of a read connection to this package's.
func sqlErr(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	switch sqlite.ErrCode(err).ToPrimary() {
	case sqlite.ResultReadOnly:
		return fmt.Errorf("%w (%v)", ErrReadOnly, err)
	case sqlite.ResultAuth:
		return fmt.Errorf("%w: ATTACH and DETACH (%v)", ErrForbidden, err)
	case sqlite.ResultInterrupt:
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
	}
	return err
}

// exec runs query (no parameters) to completion, calling row for each row.
func exec(conn *sqlite.Conn, query string, args []any, row func(s *sqlite.Stmt) error) error {
	s, _, err := conn.PrepareTransient(query)
	if err != nil {
		return err
	}
	defer s.Finalize()
	for i, a := range args {
		bind(s, i+1, a)
	}
	for {
		ok, err := s.Step()
		if err != nil || !ok {
			return err
		}
		if row != nil {
			if err := row(s); err != nil {
				return err
			}
		}
	}
}

// bind binds one of the values column returns.
func bind(s *sqlite.Stmt, i int, v any) {
	switch v := v.(type) {
	case nil:
		s.BindNull(i)
	case int64:
		s.BindInt64(i, v)
	case int:
		s.BindInt64(i, int64(v))
	case float64:
		s.BindFloat(i, v)
	case string:
		s.BindText(i, v)
	case []byte:
		s.BindBytes(i, v)
	default:
		panic(fmt.Sprintf("inspect: bind %T", v))
	}
}

// column returns column i as nil, int64, float64, string or []byte (never
// nil for a BLOB, even an empty one), as storage reads values.
func column(s *sqlite.Stmt, i int) any { return storage.ColumnValue(s, i) }

// hasTable reports whether conn's main schema has a table called name.
func hasTable(conn *sqlite.Conn, name string) (bool, error) {
	found := false
	err := exec(conn, "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?", []any{name}, func(*sqlite.Stmt) error {
		found = true
		return nil
	})
	return found, err
}

// objectMeta is what an object's metadata rows say.
type objectMeta struct {
	meta  map[string]string // SetMeta keys, without the prefix
	alarm *time.Time
}

func (m objectMeta) name() string { return m.meta[metaName] }

// readMeta reads the metadata rows, of either layout; a database without
// the tables (not made by the runtime) has none.
func readMeta(conn *sqlite.Conn) (objectMeta, error) {
	m := objectMeta{meta: map[string]string{}}
	row := func(s *sqlite.Stmt) error {
		key := s.ColumnText(0)
		switch {
		case key == metaAlarm:
			if s.ColumnType(1) != sqlite.TypeInteger {
				return fmt.Errorf("inspect: stored alarm is not an integer but %v", s.ColumnType(1))
			}
			t := time.Unix(0, s.ColumnInt64(1)).UTC()
			m.alarm = &t
		case strings.HasPrefix(key, metaPrefix):
			m.meta[strings.TrimPrefix(key, metaPrefix)] = s.ColumnText(1)
		}
		return nil
	}
	for _, q := range []struct{ table, query string }{
		{metaTable, "SELECT key, value FROM " + metaTable},
		{kvTable, metaRows},
	} {
		ok, err := hasTable(conn, q.table)
		if err != nil {
			return m, err
		}
		if ok {
			if err := exec(conn, q.query, nil, row); err != nil {
				return m, err
			}
		}
	}
	return m, nil
}

// liveMeta reads the metadata of a live object's database.
func liveMeta(db *storage.DB) (name string, alarm *time.Time, err error) {
	name, _, err = db.GetMeta(metaName)
	if err != nil {
		return "", nil, err
	}
	at, ok, err := db.Alarm()
	if err != nil || !ok {
		return name, nil, err
	}
	return name, &at, nil
}

// decodeKV decodes an encoded KV value into JSON, or says why it cannot.
func decodeKV(b []byte) (json.RawMessage, string) {
	var v any
	if err := codec.Unmarshal(b, &v); err != nil {
		return nil, err.Error()
	}
	out, err := json.Marshal(jsonSafe(v))
	if err != nil {
		return nil, err.Error()
	}
	return out, ""
}

// jsonSafe replaces the floats JSON cannot carry with strings.
func jsonSafe(v any) any {
	switch x := v.(type) {
	case float64:
		switch {
		case math.IsNaN(x):
			return "NaN"
		case math.IsInf(x, 1):
			return "+Inf"
		case math.IsInf(x, -1):
			return "-Inf"
		}
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = jsonSafe(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = jsonSafe(e)
		}
		return out
	}
	return v
}

// kvEntry makes the KVEntry of an encoded value.
func kvEntry(key string, val []byte) KVEntry {
	e := KVEntry{Key: key, Size: len(val)}
	e.Value, e.Error = decodeKV(val)
	return e
}
