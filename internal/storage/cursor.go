package storage

import (
	"errors"
	"fmt"
	"iter"

	"zombiezen.com/go/sqlite"
)

// Cursor iterates over the rows of the last statement of an Exec.
//
//	cur, err := db.Exec("SELECT id, name FROM users WHERE age > ?", 30)
//	if err != nil { ... }
//	defer cur.Close()
//	for cur.Next() {
//		var id int64
//		var name string
//		if err := cur.Scan(&id, &name); err != nil { ... }
//	}
//	if err := cur.Err(); err != nil { ... }
//
// A statement that reads yields its rows lazily, as Next steps it. A
// statement that writes has run to completion when Exec returns; the
// rows of its RETURNING clause wait in the cursor.
//
// Like the DB it belongs to, a Cursor is not meant for concurrent use. A
// cursor runs inside the turn's transaction: Commit, Rollback, DeleteAll and
// Close of the DB close it, after which Next returns false and Err returns
// ErrCursorClosed. Reading a cursor to the end (or Close) releases its
// statement; an abandoned cursor holds it until the turn ends.
type Cursor struct {
	db    *DB
	stmt  *sqlite.Stmt // nil once released
	entry *cacheEntry  // the cache entry of stmt, nil for a transient statement
	ddl   bool         // the statement changes the schema

	cols    []string
	buf     [][]any // rows of a writing statement, computed by Exec
	row     []any   // the current row when reading from buf
	pending bool    // the first row was stepped by Exec and not yet returned by Next
	hasRow  bool    // Next returned true and the row is current
	done    bool    // no more rows
	closed  bool
	err     error

	returned    int64 // rows returned
	scanned     int64 // full-scan steps (SQLITE_STMTSTATUS_FULLSCAN_STEP)
	rowsWritten int64
}

// step advances the statement and meters it. It reports whether a row is
// available; on false, c.err or c.done says why. db.mu must be held.
func (c *Cursor) step() bool {
	db := c.db
	r := db.raw
	before := r.totalChanges()
	db.userSQL = true
	row, err := c.stmt.Step()
	db.userSQL = false
	written := r.totalChanges() - before
	scanned := r.fullScanSteps(c.stmt)
	readBefore := c.rowsReadLocked()
	if row {
		c.returned++
	}
	c.scanned += scanned
	c.rowsWritten += written
	db.rowsRead += c.rowsReadLocked() - readBefore
	db.rowsWritten += written
	if err != nil {
		c.err = db.sqlErr(err)
		c.release()
		return false
	}
	if !row {
		c.done = true
		c.release()
	}
	return row
}

// rowsReadLocked is RowsRead with db.mu held.
func (c *Cursor) rowsReadLocked() int64 {
	return max(c.returned, c.scanned)
}

// release hands the statement back to the cache (or finalizes it).
func (c *Cursor) release() {
	s := c.stmt
	if s == nil {
		return
	}
	if c.cols == nil && s.ColumnCount() > 0 {
		c.cols = c.columnNames()
	}
	c.stmt = nil
	delete(c.db.cursors, c)
	if c.ddl {
		c.db.cache.forgetColumns()
	}
	if e := c.entry; e != nil && !e.evicted {
		s.Reset()
		s.ClearBindings()
		e.inUse = false
		return
	}
	s.Finalize()
}

// closeLocked closes the cursor on behalf of the DB (Commit, Rollback...).
func (c *Cursor) closeLocked() {
	if (!c.done || len(c.buf) > 0) && !c.closed && c.err == nil {
		c.err = ErrCursorClosed
	}
	c.closed = true
	c.hasRow = false
	c.pending = false
	c.buf, c.row = nil, nil
	c.release()
}

func (c *Cursor) columnNames() []string {
	if e := c.entry; e != nil && e.cols != nil {
		return e.cols
	}
	n := c.stmt.ColumnCount()
	cols := make([]string, n)
	for i := range cols {
		cols[i] = c.db.raw.columnName(c.stmt, i)
	}
	if c.entry != nil && !c.ddl {
		c.entry.cols = cols
	}
	return cols
}

// Next advances to the next row and reports whether there is one. It
// returns false at the end of the rows, after an error (see Err) and
// after Close.
func (c *Cursor) Next() bool {
	db := c.db
	db.mu.Lock()
	defer db.mu.Unlock()
	c.hasRow = false
	c.row = nil
	if c.pending {
		c.pending = false
		c.hasRow = true
		return true
	}
	if c.closed || c.err != nil {
		return false
	}
	if len(c.buf) > 0 {
		c.row = c.buf[0]
		c.buf[0] = nil
		c.buf = c.buf[1:]
		c.hasRow = true
		return true
	}
	if c.done || c.stmt == nil {
		return false
	}
	if db.closed {
		c.err = ErrClosed
		return false
	}
	c.hasRow = c.step()
	return c.hasRow
}

// Err returns the error that ended the iteration, if any.
func (c *Cursor) Err() error {
	c.db.mu.Lock()
	defer c.db.mu.Unlock()
	return c.err
}

// Close releases the cursor's statement. It is idempotent and returns nil.
func (c *Cursor) Close() error {
	c.db.mu.Lock()
	defer c.db.mu.Unlock()
	if !c.closed {
		c.closed = true
		c.hasRow = false
		c.pending = false
		c.buf, c.row = nil, nil
		c.release()
	}
	return nil
}

// ColumnNames returns the names of the result columns, which is empty for
// a statement that returns no rows.
func (c *Cursor) ColumnNames() []string {
	c.db.mu.Lock()
	defer c.db.mu.Unlock()
	if c.cols == nil && c.stmt != nil {
		c.cols = c.columnNames()
	}
	return append([]string(nil), c.cols...)
}

// RowsRead returns the rows the statement has read so far: the larger of
// the rows it returned and the steps it took in full table scans
// (SQLITE_STMTSTATUS_FULLSCAN_STEP, one less than the rows each scan
// visits). Stock SQLite has no exact per-row counter (Cloudflare patches
// one in), so this is an approximation: rows found through an index and
// not returned (an UPDATE ... WHERE id = ?) and rows counted by COUNT(*)
// without a scan are not included. It grows as the cursor is read.
func (c *Cursor) RowsRead() int64 {
	c.db.mu.Lock()
	defer c.db.mu.Unlock()
	return c.rowsReadLocked()
}

// RowsWritten returns the rows inserted, updated or deleted by the
// statement so far, including by triggers and foreign key actions
// (sqlite3_total_changes). Index entries are not counted separately.
func (c *Cursor) RowsWritten() int64 {
	c.db.mu.Lock()
	defer c.db.mu.Unlock()
	return c.rowsWritten
}

// current returns an error unless the cursor is on a row.
func (c *Cursor) current() error {
	if c.hasRow && (c.stmt != nil || c.row != nil) {
		return nil
	}
	if c.err != nil {
		return c.err
	}
	if c.closed {
		return ErrCursorClosed
	}
	return errors.New("storage: no current row (call Next first)")
}

// Scan copies the columns of the current row into dest, one pointer per
// column. Supported destinations: *int, *int8, *int16, *int32, *int64, the
// *uint kinds, *float32, *float64, *bool, *string, *[]byte, *any, and a
// pointer to a pointer of one of these (set to nil for NULL). Integers are
// range-checked; a REAL goes into an integer only if it is integral; TEXT
// and BLOB convert into each other; NULL goes only into *any, *[]byte (as
// nil) and pointers to pointers. Other combinations are a *ScanError.
func (c *Cursor) Scan(dest ...any) error {
	c.db.mu.Lock()
	defer c.db.mu.Unlock()
	if err := c.current(); err != nil {
		return err
	}
	n := len(c.row)
	if c.row == nil {
		n = c.stmt.ColumnCount()
	}
	if len(dest) != n {
		return &ArgError{Arg: "dest", Reason: fmt.Sprintf("%d destinations for %d columns", len(dest), n)}
	}
	for i, d := range dest {
		var err error
		if c.row != nil {
			err = scanValue(i, c.row[i], d)
		} else {
			err = scanColumn(c.stmt, i, d)
		}
		if err != nil {
			var se *ScanError
			if errors.As(err, &se) {
				if c.row != nil {
					se.Name = c.cols[i]
				} else {
					se.Name = c.db.raw.columnName(c.stmt, i)
				}
			}
			return err
		}
	}
	return nil
}

// Values returns a copy of the current row: each column as int64, float64,
// string, []byte or nil. It returns nil when there is no current row.
func (c *Cursor) Values() []any {
	c.db.mu.Lock()
	defer c.db.mu.Unlock()
	if c.current() != nil {
		return nil
	}
	if c.row != nil {
		return copyRow(c.row)
	}
	return rowValues(c.stmt)
}

// copyRow copies a buffered row, including its []byte values.
func copyRow(row []any) []any {
	out := make([]any, len(row))
	for i, v := range row {
		if b, ok := v.([]byte); ok {
			v = append([]byte{}, b...)
		}
		out[i] = v
	}
	return out
}

func rowValues(s *sqlite.Stmt) []any {
	n := s.ColumnCount()
	row := make([]any, n)
	for i := range row {
		row[i] = columnValue(s, i)
	}
	return row
}

// One reads the only row of the result into dest and closes the cursor.
// It returns ErrNoRows if there is no row and ErrTooManyRows if there is
// more than one (dest is filled from the first).
func (c *Cursor) One(dest ...any) error {
	defer c.Close()
	if !c.Next() {
		if err := c.Err(); err != nil {
			return err
		}
		return ErrNoRows
	}
	if err := c.Scan(dest...); err != nil {
		return err
	}
	if c.Next() {
		return ErrTooManyRows
	}
	return c.Err()
}

// Raw reads the remaining rows as slices of values (see Values) and closes
// the cursor.
func (c *Cursor) Raw() ([][]any, error) {
	defer c.Close()
	var rows [][]any
	for c.Next() {
		if err := c.checkCollect(len(rows)); err != nil {
			return nil, err
		}
		rows = append(rows, c.Values())
	}
	return rows, c.Err()
}

// All reads the remaining rows as maps from column name to value (see
// Values) and closes the cursor. When several columns share a name, the
// last one wins; use Raw to keep them all.
func (c *Cursor) All() ([]map[string]any, error) {
	defer c.Close()
	cols := c.ColumnNames()
	var rows []map[string]any
	for c.Next() {
		if err := c.checkCollect(len(rows)); err != nil {
			return nil, err
		}
		vals := c.Values()
		m := make(map[string]any, len(cols))
		for i, col := range cols {
			m[col] = vals[i]
		}
		rows = append(rows, m)
	}
	return rows, c.Err()
}

func (c *Cursor) checkCollect(n int) error {
	if max := c.db.opts.MaxCollectedRows; max > 0 && n >= max {
		return &LimitError{Limit: LimitCursorRows, Max: int64(max)}
	}
	return nil
}

// Rows returns an iterator over the remaining rows as values (see Values).
// If the iteration fails, the last pair carries the error. The cursor is
// closed when the loop ends, also by break.
//
//	for row, err := range cur.Rows() {
//		if err != nil { ... }
//		fmt.Println(row...)
//	}
func (c *Cursor) Rows() iter.Seq2[[]any, error] {
	return func(yield func([]any, error) bool) {
		defer c.Close()
		for c.Next() {
			if !yield(c.Values(), nil) {
				return
			}
		}
		if err := c.Err(); err != nil {
			yield(nil, err)
		}
	}
}
