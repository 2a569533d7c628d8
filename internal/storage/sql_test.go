package storage_test

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/durable-go/durable/internal/storage"
)

func TestDB_Exec(t *testing.T) {
	t.Run("Bindings", func(t *testing.T) {
		db := openDB(t, storage.Options{})
		type myInt int16
		type myString string
		type myBytes []byte
		args := []any{nil, true, false, int(-1), int8(-2), int16(-3), int32(-4), int64(math.MinInt64),
			uint(1), uint8(2), uint16(3), uint32(4), uint64(math.MaxInt64), float32(1.5), 2.25,
			"text", []byte{0, 1}, []byte(nil), myInt(7), myString("s"), myBytes("b")}
		q := "SELECT " + strings.TrimSuffix(strings.Repeat("?, ", len(args)), ", ")
		rows := exec(t, db, q, args...)
		want := []any{nil, int64(1), int64(0), int64(-1), int64(-2), int64(-3), int64(-4), int64(math.MinInt64),
			int64(1), int64(2), int64(3), int64(4), int64(math.MaxInt64), 1.5, 2.25,
			"text", []byte{0, 1}, nil, int64(7), "s", []byte("b")}
		if len(rows) != 1 || !reflect.DeepEqual(rows[0], want) {
			t.Errorf("got %#v\nwant %#v", rows, want)
		}
	})
	t.Run("BadBindings", func(t *testing.T) {
		db := openDB(t, storage.Options{})
		for _, tc := range []struct {
			name string
			q    string
			args []any
		}{
			{"Uint64Overflow", "SELECT ?", []any{uint64(math.MaxInt64) + 1}},
			{"Time", "SELECT ?", []any{time.Now()}},
			{"Struct", "SELECT ?", []any{struct{}{}}},
			{"Pointer", "SELECT ?", []any{new(int)}},
			{"TooFew", "SELECT ?, ?", []any{1}},
			{"TooMany", "SELECT ?", []any{1, 2}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, err := db.Exec(tc.q, tc.args...)
				var ae *storage.ArgError
				if !errors.As(err, &ae) {
					t.Fatalf("got %v, want *ArgError", err)
				}
			})
		}
		// The statement is reusable after a binding error.
		if got := queryInt(t, db, "SELECT ?", 5); got != 5 {
			t.Errorf("got %d, want 5", got)
		}
	})
	t.Run("MultiStatement", func(t *testing.T) {
		db := openDB(t, storage.Options{})
		cur, err := db.Exec(`
			CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT); -- a comment; with a semicolon
			INSERT INTO t (name) VALUES ('a'), ('b');
			/* another ; comment */
			SELECT name FROM t WHERE id > ? ORDER BY id;
			;`, 0)
		if err != nil {
			t.Fatal(err)
		}
		rows, err := cur.Raw()
		if err != nil {
			t.Fatal(err)
		}
		if want := [][]any{{"a"}, {"b"}}; !reflect.DeepEqual(rows, want) {
			t.Errorf("got %v, want %v", rows, want)
		}
	})
	t.Run("MultiStatementIsAtomic", func(t *testing.T) {
		db := openDB(t, storage.Options{})
		exec(t, db, "CREATE TABLE t (id INTEGER PRIMARY KEY)")
		_, err := db.Exec("INSERT INTO t VALUES (1); INSERT INTO t VALUES (2); INSERT INTO t VALUES (1)")
		var se *storage.SQLError
		if !errors.As(err, &se) || !se.IsConstraint() {
			t.Fatalf("got %v, want a constraint *SQLError", err)
		}
		if n := queryInt(t, db, "SELECT count(*) FROM t"); n != 0 {
			t.Errorf("rows = %d, want 0", n)
		}
		_, err = db.Exec("INSERT INTO t VALUES (1); SELEC 2")
		if !errors.As(err, &se) {
			t.Fatalf("got %v, want *SQLError for the syntax error", err)
		}
		if n := queryInt(t, db, "SELECT count(*) FROM t"); n != 0 {
			t.Errorf("rows = %d, want 0", n)
		}
	})
	t.Run("ParametersOnlyInLastStatement", func(t *testing.T) {
		db := openDB(t, storage.Options{})
		_, err := db.Exec("SELECT ?; SELECT 1", 1)
		var ae *storage.ArgError
		if !errors.As(err, &ae) {
			t.Fatalf("got %v, want *ArgError", err)
		}
	})
	t.Run("Empty", func(t *testing.T) {
		db := openDB(t, storage.Options{})
		for _, q := range []string{"", "  ", ";", "-- nothing", "/* nothing */ ;"} {
			cur, err := db.Exec(q)
			if err != nil {
				t.Fatalf("Exec(%q): %v", q, err)
			}
			if cur.Next() || len(cur.ColumnNames()) != 0 {
				t.Errorf("Exec(%q) returned rows or columns", q)
			}
		}
	})
	t.Run("WriteErrorAtExec", func(t *testing.T) {
		db := openDB(t, storage.Options{})
		exec(t, db, "CREATE TABLE t (id INTEGER PRIMARY KEY, v NOT NULL)")
		_, err := db.Exec("INSERT INTO t VALUES (1, NULL)")
		var se *storage.SQLError
		if !errors.As(err, &se) || !se.IsConstraint() || !strings.Contains(se.Message, "NOT NULL") {
			t.Fatalf("got %v, want a NOT NULL *SQLError", err)
		}
		if se.Name != "SQLITE_CONSTRAINT_NOTNULL" {
			t.Errorf("Name = %q, want SQLITE_CONSTRAINT_NOTNULL", se.Name)
		}
		// The turn goes on.
		exec(t, db, "INSERT INTO t VALUES (1, 2)")
		commit(t, db)
	})
	t.Run("Returning", func(t *testing.T) {
		db := openDB(t, storage.Options{})
		exec(t, db, "CREATE TABLE t (id INTEGER PRIMARY KEY, v)")
		cur, err := db.Exec("INSERT INTO t (v) VALUES (?), (?) RETURNING id", "a", "b")
		if err != nil {
			t.Fatal(err)
		}
		rows, err := cur.Raw()
		if err != nil {
			t.Fatal(err)
		}
		if want := [][]any{{int64(1)}, {int64(2)}}; !reflect.DeepEqual(rows, want) {
			t.Errorf("got %v, want %v", rows, want)
		}
		if cur.RowsWritten() != 2 {
			t.Errorf("RowsWritten = %d, want 2", cur.RowsWritten())
		}
	})
}

func TestCursor(t *testing.T) {
	setup := func(t *testing.T) *storage.DB {
		db := openDB(t, storage.Options{})
		exec(t, db, "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, score REAL, data BLOB)")
		exec(t, db, "INSERT INTO t VALUES (1, 'a', 1.5, x'00ff'), (2, 'b', NULL, NULL), (3, 'c', 3.0, x'')")
		return db
	}
	t.Run("Iterate", func(t *testing.T) {
		db := setup(t)
		cur, err := db.Exec("SELECT id, name FROM t ORDER BY id")
		if err != nil {
			t.Fatal(err)
		}
		defer cur.Close()
		if got, want := cur.ColumnNames(), []string{"id", "name"}; !reflect.DeepEqual(got, want) {
			t.Errorf("ColumnNames = %v, want %v", got, want)
		}
		var ids []int
		var names []string
		for cur.Next() {
			var id int
			var name string
			if err := cur.Scan(&id, &name); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
			names = append(names, name)
		}
		if err := cur.Err(); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(ids, []int{1, 2, 3}) || !reflect.DeepEqual(names, []string{"a", "b", "c"}) {
			t.Errorf("got %v %v, want [1 2 3] [a b c]", ids, names)
		}
		if cur.RowsRead() != 3 {
			t.Errorf("RowsRead = %d, want 3", cur.RowsRead())
		}
		if got, want := cur.ColumnNames(), []string{"id", "name"}; !reflect.DeepEqual(got, want) {
			t.Errorf("ColumnNames after the end = %v, want %v", got, want)
		}
	})
	t.Run("ScanConversions", func(t *testing.T) {
		db := setup(t)
		cur, err := db.Exec("SELECT id, name, score, data, NULL, 7, 2.0, 'x' FROM t WHERE id = 1")
		if err != nil {
			t.Fatal(err)
		}
		var (
			id     int8
			name   []byte
			score  float32
			data   string
			null   *string
			seven  *uint16
			two    int
			x      any
			scores any
		)
		_ = scores
		if !cur.Next() {
			t.Fatal(cur.Err())
		}
		if err := cur.Scan(&id, &name, &score, &data, &null, &seven, &two, &x); err != nil {
			t.Fatal(err)
		}
		if id != 1 || string(name) != "a" || score != 1.5 || data != "\x00\xff" || null != nil || seven == nil || *seven != 7 || two != 2 || x != "x" {
			t.Errorf("got %v %q %v %q %v %v %v %v", id, name, score, data, null, seven, two, x)
		}
		var b bool
		var f float64
		var s string
		cur2, _ := db.Exec("SELECT 1, 3, 'x'")
		if err := cur2.One(&b, &f, &s); err != nil || !b || f != 3 || s != "x" {
			t.Errorf("One = %v; got %v %v %q", err, b, f, s)
		}
	})
	t.Run("ScanErrors", func(t *testing.T) {
		db := setup(t)
		for _, tc := range []struct {
			q    string
			dest any
		}{
			{"SELECT NULL", new(int)},
			{"SELECT NULL", new(string)},
			{"SELECT 'x'", new(int)},
			{"SELECT 1.5", new(int)},
			{"SELECT 300", new(int8)},
			{"SELECT -1", new(uint)},
			{"SELECT x'00'", new(float64)},
			{"SELECT 1.0", new(bool)},
		} {
			cur, err := db.Exec(tc.q)
			if err != nil {
				t.Fatal(err)
			}
			err = cur.One(tc.dest)
			var se *storage.ScanError
			if !errors.As(err, &se) {
				t.Errorf("%s into %T: got %v, want *ScanError", tc.q, tc.dest, err)
			}
		}
		cur, _ := db.Exec("SELECT 1, 2")
		var a int
		if err := cur.One(&a); err == nil {
			t.Error("Scan with too few destinations succeeded")
		}
		cur, _ = db.Exec("SELECT 1")
		if err := cur.One(a); err == nil {
			t.Error("Scan into a non-pointer succeeded")
		}
		cur, _ = db.Exec("SELECT 1")
		if err := cur.Scan(&a); err == nil {
			t.Error("Scan before Next succeeded")
		}
		cur.Close()
	})
	t.Run("Values", func(t *testing.T) {
		db := setup(t)
		cur, _ := db.Exec("SELECT id, name, score, data FROM t ORDER BY id")
		var got [][]any
		for cur.Next() {
			got = append(got, cur.Values())
		}
		want := [][]any{{int64(1), "a", 1.5, []byte{0, 0xff}}, {int64(2), "b", nil, nil}, {int64(3), "c", 3.0, []byte{}}}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("got %#v, want %#v", got, want)
		}
		if cur.Values() != nil {
			t.Error("Values after the end is not nil")
		}
	})
	t.Run("One", func(t *testing.T) {
		db := setup(t)
		var name string
		cur, _ := db.Exec("SELECT name FROM t WHERE id = ?", 2)
		if err := cur.One(&name); err != nil || name != "b" {
			t.Errorf("One = %v, %q; want nil, \"b\"", err, name)
		}
		cur, _ = db.Exec("SELECT name FROM t WHERE id = ?", 9)
		if err := cur.One(&name); !errors.Is(err, storage.ErrNoRows) {
			t.Errorf("One on no rows: got %v, want ErrNoRows", err)
		}
		cur, _ = db.Exec("SELECT name FROM t")
		if err := cur.One(&name); !errors.Is(err, storage.ErrTooManyRows) {
			t.Errorf("One on many rows: got %v, want ErrTooManyRows", err)
		}
	})
	t.Run("All", func(t *testing.T) {
		db := setup(t)
		cur, _ := db.Exec("SELECT id, name FROM t WHERE id < 3 ORDER BY id")
		rows, err := cur.All()
		if err != nil {
			t.Fatal(err)
		}
		want := []map[string]any{{"id": int64(1), "name": "a"}, {"id": int64(2), "name": "b"}}
		if !reflect.DeepEqual(rows, want) {
			t.Errorf("got %v, want %v", rows, want)
		}
	})
	t.Run("Rows", func(t *testing.T) {
		db := setup(t)
		cur, _ := db.Exec("SELECT id FROM t ORDER BY id")
		var ids []any
		for row, err := range cur.Rows() {
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, row[0])
			if len(ids) == 2 {
				break
			}
		}
		if !reflect.DeepEqual(ids, []any{int64(1), int64(2)}) {
			t.Errorf("got %v, want [1 2]", ids)
		}
		if cur.Next() {
			t.Error("cursor still open after break")
		}
	})
	t.Run("ClosedByCommit", func(t *testing.T) {
		db := setup(t)
		cur, err := db.Exec("SELECT id FROM t")
		if err != nil {
			t.Fatal(err)
		}
		if !cur.Next() {
			t.Fatal(cur.Err())
		}
		commit(t, db)
		if cur.Next() {
			t.Error("Next after Commit = true, want false")
		}
		if err := cur.Err(); !errors.Is(err, storage.ErrCursorClosed) {
			t.Errorf("Err after Commit: got %v, want ErrCursorClosed", err)
		}
		var id int
		if err := cur.Scan(&id); !errors.Is(err, storage.ErrCursorClosed) {
			t.Errorf("Scan after Commit: got %v, want ErrCursorClosed", err)
		}
	})
	t.Run("ClosedByRollback", func(t *testing.T) {
		db := setup(t)
		commit(t, db)
		cur, _ := db.Exec("SELECT id FROM t")
		if err := db.Rollback(); err != nil {
			t.Fatal(err)
		}
		if cur.Next() {
			t.Error("Next after Rollback = true, want false")
		}
		if err := cur.Err(); !errors.Is(err, storage.ErrCursorClosed) {
			t.Errorf("Err after Rollback: got %v, want ErrCursorClosed", err)
		}
	})
	t.Run("Lazy", func(t *testing.T) {
		db := setup(t)
		cur, _ := db.Exec("SELECT id FROM t ORDER BY id")
		defer cur.Close()
		if !cur.Next() {
			t.Fatal(cur.Err())
		}
		// A write between rows is seen by the rest of the iteration.
		exec(t, db, "INSERT INTO t (id) VALUES (4)")
		n := 1
		for cur.Next() {
			n++
		}
		if n != 4 {
			t.Errorf("rows = %d, want 4", n)
		}
	})
	t.Run("SameQueryWhileCursorOpen", func(t *testing.T) {
		db := setup(t)
		const q = "SELECT id FROM t ORDER BY id"
		a, _ := db.Exec(q)
		if !a.Next() {
			t.Fatal(a.Err())
		}
		b, err := db.Exec(q)
		if err != nil {
			t.Fatal(err)
		}
		rowsB, err := b.Raw()
		if err != nil {
			t.Fatal(err)
		}
		var restA []any
		for a.Next() {
			restA = append(restA, a.Values()[0])
		}
		if len(rowsB) != 3 || !reflect.DeepEqual(restA, []any{int64(2), int64(3)}) {
			t.Errorf("second cursor %v, rest of first %v; want 3 rows and [2 3]", rowsB, restA)
		}
		// Both statements are usable afterwards.
		if n := len(exec(t, db, q)); n != 3 {
			t.Errorf("rows = %d, want 3", n)
		}
	})
	t.Run("StatementCacheEviction", func(t *testing.T) {
		db := openDB(t, storage.Options{StatementCacheSize: 2})
		held, _ := db.Exec("SELECT 1 UNION ALL SELECT 2")
		for i := range 5 {
			if got := queryInt(t, db, "SELECT ? + "+string(rune('0'+i)), 1); got != int64(1+i) {
				t.Errorf("got %d, want %d", got, 1+i)
			}
		}
		rows, err := held.Raw()
		if err != nil || len(rows) != 2 {
			t.Errorf("evicted cursor: %v, %v; want 2 rows", rows, err)
		}
	})
	t.Run("ColumnNamesAfterSchemaChange", func(t *testing.T) {
		db := openDB(t, storage.Options{})
		exec(t, db, "CREATE TABLE s (a)")
		cur, _ := db.Exec("SELECT * FROM s")
		if got := cur.ColumnNames(); !reflect.DeepEqual(got, []string{"a"}) {
			t.Errorf("got %v, want [a]", got)
		}
		exec(t, db, "ALTER TABLE s RENAME COLUMN a TO b")
		cur, _ = db.Exec("SELECT * FROM s")
		if got := cur.ColumnNames(); !reflect.DeepEqual(got, []string{"b"}) {
			t.Errorf("after rename got %v, want [b]", got)
		}
	})
	t.Run("Metering", func(t *testing.T) {
		db := openDB(t, storage.Options{})
		exec(t, db, "CREATE TABLE m (id INTEGER PRIMARY KEY, v)")
		cur, _ := db.Exec("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100) INSERT INTO m SELECT i, i FROM n")
		if cur.RowsWritten() != 100 {
			t.Errorf("insert RowsWritten = %d, want 100", cur.RowsWritten())
		}
		cur, _ = db.Exec("UPDATE m SET v = 0 WHERE v % 2 = 0")
		if cur.RowsWritten() != 50 || cur.RowsRead() < 99 {
			t.Errorf("update: RowsWritten = %d, RowsRead = %d; want 50 and >= 99 (full-scan steps)", cur.RowsWritten(), cur.RowsRead())
		}
		cur, _ = db.Exec("SELECT v FROM m WHERE id = 7")
		cur.Raw()
		if cur.RowsRead() != 1 || cur.RowsWritten() != 0 {
			t.Errorf("point read: RowsRead = %d, RowsWritten = %d; want 1, 0", cur.RowsRead(), cur.RowsWritten())
		}
	})
}
