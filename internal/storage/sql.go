package storage

import (
	"fmt"
	"math"
	"reflect"
	"time"

	"zombiezen.com/go/sqlite"
)

// Exec runs SQL in the turn's implicit transaction and returns a cursor
// over the result of its last statement.
//
// query may hold several statements separated by ';'. All but the last run
// to completion first and may not have parameters; args bind, in order, to
// the '?' (or ?NNN, :name, @name, $name) parameters of the last statement,
// which becomes the cursor. The statements of one Exec are atomic: if one
// fails, the effects of the earlier ones are undone.
//
// A statement that writes runs to completion inside Exec (its RETURNING
// rows wait in the cursor), atomically, so its errors (constraints, limits)
// are Exec's. A statement that only reads is stepped to its first row by
// Exec and yields the rest lazily. A cursor that is still open when the
// turn ends (Commit or Rollback) is closed.
//
// Each arg is bound by its type: nil as NULL; bool as 0 or 1; every int and
// uint kind as INTEGER (a uint64 above math.MaxInt64 is an error); float32
// and float64 as REAL; string as TEXT; []byte as BLOB (nil []byte as NULL).
// Named types with these underlying kinds are accepted. Anything else,
// including time.Time, is an *ArgError: store times explicitly, e.g. as
// t.UnixMilli() or t.Format(time.RFC3339Nano).
//
// SQL that is not allowed (transaction control, ATTACH, internal tables,
// most PRAGMAs) fails with a *ForbiddenError; input past a limit with a
// *LimitError; other SQLite errors are *SQLError.
func (db *DB) Exec(query string, args ...any) (*Cursor, error) {
	if err := db.lock(); err != nil {
		return nil, err
	}
	defer db.mu.Unlock()
	if err := db.begin(); err != nil {
		return nil, err
	}
	if len(query) > MaxSQLLength {
		return nil, &LimitError{Limit: LimitSQLLength, Max: MaxSQLLength, Got: int64(len(query))}
	}
	if len(args) > MaxBoundParameters {
		return nil, &LimitError{Limit: LimitBoundParameters, Max: MaxBoundParameters, Got: int64(len(args))}
	}
	// Fast path: the statement is cached and not held by a cursor.
	if e := db.cache.get(query); e != nil && !e.inUse {
		return db.start(e.stmt, e, e.ddl, args, true)
	}
	if isBlank(query) {
		return &Cursor{db: db, done: true}, nil
	}
	s, tail, ddl, err := db.prepareUser(query)
	if err != nil {
		return nil, err
	}
	if s != nil && isBlank(tail) {
		var e *cacheEntry
		if db.cache.get(query) == nil {
			e = db.cache.put(query, s, ddl)
		}
		return db.start(s, e, ddl, args, true)
	}
	return db.execMulti(s, ddl, tail, args)
}

// execMulti runs the first statement s, then the rest of the script, all
// inside a savepoint, and returns the cursor of the last statement.
func (db *DB) execMulti(s *sqlite.Stmt, ddl bool, tail string, args []any) (*Cursor, error) {
	if err := db.execInternal("SAVEPOINT _durable_exec"); err != nil {
		if s != nil {
			s.Finalize()
		}
		return nil, err
	}
	fail := func(err error) (*Cursor, error) {
		if db.aborted == nil {
			db.execInternal("ROLLBACK TO _durable_exec")
			db.execInternal("RELEASE _durable_exec")
		}
		return nil, err
	}
	for n := 1; ; n++ {
		if s != nil {
			if s.BindParamCount() > 0 {
				s.Finalize()
				return fail(&ArgError{Arg: "query", Reason: fmt.Sprintf("statement %d of a multi-statement query has parameters; only the last statement may", n)})
			}
			c := &Cursor{db: db, stmt: s, ddl: ddl}
			for c.step() {
			}
			c.release()
			if c.err != nil {
				return fail(c.err)
			}
		}
		if n >= MaxStatements {
			return fail(&LimitError{Limit: LimitStatementCount, Max: MaxStatements})
		}
		var err error
		var next string
		s, next, ddl, err = db.prepareUser(tail)
		if err != nil {
			return fail(err)
		}
		if isBlank(next) {
			if s == nil {
				// Trailing empty statements: the cursor is empty.
				db.execInternal("RELEASE _durable_exec")
				return &Cursor{db: db, done: true}, nil
			}
			c, err := db.start(s, nil, ddl, args, false)
			if err != nil {
				return fail(err)
			}
			if err := db.execInternal("RELEASE _durable_exec"); err != nil {
				c.closeLocked()
				return nil, err
			}
			return c, nil
		}
		tail = next
	}
}

// prepareUser prepares the first statement of query as user SQL. It
// returns a nil statement for an empty statement (";" or a comment).
func (db *DB) prepareUser(query string) (_ *sqlite.Stmt, tail string, ddl bool, _ error) {
	if err := db.loadExtensions(); err != nil {
		return nil, "", false, err
	}
	db.userSQL = true
	db.denial = nil
	db.ddl = false
	s, trailing, err := db.conn.PrepareTransient(query)
	db.userSQL = false
	if err != nil {
		if sqlite.ErrCode(err).ToPrimary() == sqlite.ResultNoMem {
			// SQLite reports a program past SQLITE_LIMIT_VDBE_OP as an
			// allocation failure; the Go allocator does not fail.
			db.denial = nil
			return nil, "", false, &LimitError{Limit: LimitVDBEOps, Max: MaxVDBEOps}
		}
		return nil, "", false, db.sqlErr(err)
	}
	tail = query[len(query)-trailing:]
	if rawStmt(s) == 0 {
		return nil, tail, false, nil
	}
	return s, tail, db.ddl, nil
}

// start binds args to s and steps the first row.
//
// A statement that writes runs to completion at once, its result rows (from
// RETURNING) buffered in the cursor. With atomic set it runs inside a
// savepoint: SQLite makes most statements atomic by itself, but not all;
// when it judges that a statement cannot fail halfway it skips the
// statement journal, and some runtime errors (trigger recursion depth, a
// string grown past the length limit inside a trigger) then leave the
// statement half applied. (SQLite computes RETURNING rows up front too, so
// buffering them costs no extra memory.)
func (db *DB) start(s *sqlite.Stmt, e *cacheEntry, ddl bool, args []any, atomic bool) (*Cursor, error) {
	c := &Cursor{db: db, stmt: s, entry: e, ddl: ddl}
	if e != nil {
		e.inUse = true
	}
	if err := bindArgs(s, args); err != nil {
		c.release()
		return nil, err
	}
	db.cursors[c] = struct{}{}
	if db.raw.readonly(s) {
		if c.step() {
			c.pending = true
			return c, nil
		}
	} else {
		if atomic {
			if err := db.execInternal("SAVEPOINT _durable_stmt"); err != nil {
				c.closeLocked()
				return nil, err
			}
		}
		for c.step() {
			c.buf = append(c.buf, rowValues(s))
		}
		if atomic && db.aborted == nil {
			if c.err != nil {
				db.execInternal("ROLLBACK TO _durable_stmt")
			}
			if err := db.execInternal("RELEASE _durable_stmt"); err != nil && c.err == nil {
				c.err = err
			}
		}
	}
	if c.err != nil {
		err := c.err
		c.closeLocked()
		return nil, err
	}
	return c, nil
}

func bindArgs(s *sqlite.Stmt, args []any) error {
	if n := s.BindParamCount(); n != len(args) {
		return &ArgError{Arg: "args", Reason: fmt.Sprintf("the statement has %d parameters, got %d arguments", n, len(args))}
	}
	for i, a := range args {
		p := i + 1
		switch v := a.(type) {
		case nil:
			s.BindNull(p)
		case int64:
			s.BindInt64(p, v)
		case int:
			s.BindInt64(p, int64(v))
		case string:
			if len(v) > MaxLength {
				return &LimitError{Limit: LimitLength, Max: MaxLength, Got: int64(len(v))}
			}
			if err := bindText(s, p, v); err != nil {
				return err
			}
		case []byte:
			if v == nil {
				s.BindNull(p)
				continue
			}
			if len(v) > MaxLength {
				return &LimitError{Limit: LimitLength, Max: MaxLength, Got: int64(len(v))}
			}
			if err := bindBytes(s, p, v); err != nil {
				return err
			}
		case float64:
			s.BindFloat(p, v)
		case bool:
			s.BindBool(p, v)
		case time.Time:
			return &ArgError{Arg: fmt.Sprintf("args[%d]", i), Reason: "time.Time is not bound implicitly; pass t.UnixMilli() or t.Format(time.RFC3339Nano)"}
		default:
			if err := bindReflect(s, p, i, a); err != nil {
				return err
			}
		}
	}
	return nil
}

func bindReflect(s *sqlite.Stmt, p, i int, a any) error {
	v := reflect.ValueOf(a)
	switch v.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		s.BindInt64(p, v.Int())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		u := v.Uint()
		if u > math.MaxInt64 {
			return &ArgError{Arg: fmt.Sprintf("args[%d]", i), Reason: fmt.Sprintf("%d overflows SQLite's 64-bit signed INTEGER", u)}
		}
		s.BindInt64(p, int64(u))
	case reflect.Float32, reflect.Float64:
		s.BindFloat(p, v.Float())
	case reflect.Bool:
		s.BindBool(p, v.Bool())
	case reflect.String:
		if v.Len() > MaxLength {
			return &LimitError{Limit: LimitLength, Max: MaxLength, Got: int64(v.Len())}
		}
		return bindText(s, p, v.String())
	case reflect.Slice:
		if v.Type().Elem().Kind() != reflect.Uint8 {
			return &ArgError{Arg: fmt.Sprintf("args[%d]", i), Reason: fmt.Sprintf("unsupported type %T", a)}
		}
		if v.IsNil() {
			s.BindNull(p)
			return nil
		}
		if v.Len() > MaxLength {
			return &LimitError{Limit: LimitLength, Max: MaxLength, Got: int64(v.Len())}
		}
		return bindBytes(s, p, v.Bytes())
	default:
		return &ArgError{Arg: fmt.Sprintf("args[%d]", i), Reason: fmt.Sprintf("unsupported type %T (want nil, bool, an integer, a float, string or []byte)", a)}
	}
	return nil
}

// isBlank reports whether query holds no statement: only white space,
// semicolons and comments.
func isBlank(query string) bool {
	for i := 0; i < len(query); {
		switch c := query[i]; {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == ';':
			i++
		case c == '-' && i+1 < len(query) && query[i+1] == '-':
			for i < len(query) && query[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < len(query) && query[i+1] == '*':
			end := -1
			for j := i + 2; j+1 < len(query); j++ {
				if query[j] == '*' && query[j+1] == '/' {
					end = j + 2
					break
				}
			}
			if end < 0 {
				return true // an unterminated comment runs to the end
			}
			i = end
		default:
			return false
		}
	}
	return true
}

// cacheEntry is a prepared user statement in the LRU cache.
type cacheEntry struct {
	query      string
	stmt       *sqlite.Stmt
	inUse      bool // held by an open cursor
	evicted    bool // removed from the cache while in use: finalize on release
	ddl        bool // changes the schema
	cols       []string
	prev, next *cacheEntry
}

// stmtCache is an LRU cache of prepared user statements keyed by text.
type stmtCache struct {
	max        int
	m          map[string]*cacheEntry
	head, tail *cacheEntry // head is the most recently used
}

func (c *stmtCache) init(max int) {
	c.max = max
	c.m = make(map[string]*cacheEntry)
}

func (c *stmtCache) get(query string) *cacheEntry {
	e := c.m[query]
	if e != nil && c.head != e {
		c.unlink(e)
		c.pushFront(e)
	}
	return e
}

// put caches s under query and returns its entry, or returns nil when the
// cache is disabled.
func (c *stmtCache) put(query string, s *sqlite.Stmt, ddl bool) *cacheEntry {
	if c.max <= 0 {
		return nil
	}
	for len(c.m) >= c.max && c.tail != nil {
		old := c.tail
		c.unlink(old)
		delete(c.m, old.query)
		if old.inUse {
			old.evicted = true
		} else {
			old.stmt.Finalize()
		}
	}
	e := &cacheEntry{query: query, stmt: s, ddl: ddl}
	c.m[query] = e
	c.pushFront(e)
	return e
}

func (c *stmtCache) pushFront(e *cacheEntry) {
	e.prev, e.next = nil, c.head
	if c.head != nil {
		c.head.prev = e
	}
	c.head = e
	if c.tail == nil {
		c.tail = e
	}
}

func (c *stmtCache) unlink(e *cacheEntry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		c.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		c.tail = e.prev
	}
	e.prev, e.next = nil, nil
}

// clear finalizes every cached statement.
func (c *stmtCache) clear() {
	for q, e := range c.m {
		e.stmt.Finalize()
		delete(c.m, q)
	}
	c.head, c.tail = nil, nil
}

// forgetColumns drops cached column names after a schema change.
func (c *stmtCache) forgetColumns() {
	for _, e := range c.m {
		e.cols = nil
	}
}
