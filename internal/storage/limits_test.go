package storage_test

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/durable-go/durable/internal/storage"
)

// wantLimit fails unless err is a *LimitError for limit.
func wantLimit(t *testing.T, err error, limit string) {
	t.Helper()
	var le *storage.LimitError
	if !errors.As(err, &le) {
		t.Fatalf("got %v, want a *LimitError (%s)", err, limit)
	}
	if le.Limit != limit {
		t.Fatalf("got limit %q (%v), want %q", le.Limit, err, limit)
	}
}

// limitDB returns a database with a table t and one committed row; each
// limit test checks that t still has exactly that row (nothing
// half-written) and that the turn can go on.
func limitDB(t *testing.T) *storage.DB {
	db := openDB(t, storage.Options{})
	exec(t, db, "CREATE TABLE t (x)")
	exec(t, db, "INSERT INTO t VALUES ('keep')")
	commit(t, db)
	return db
}

func stillUsable(t *testing.T, db *storage.DB) {
	t.Helper()
	if n := queryInt(t, db, "SELECT count(*) FROM t"); n != 1 {
		t.Errorf("rows in t = %d, want 1", n)
	}
	exec(t, db, "INSERT INTO t VALUES ('more')")
	if err := db.Rollback(); err != nil {
		t.Fatal(err)
	}
}

func params(n int) string {
	return strings.TrimSuffix(strings.Repeat("?,", n), ",")
}

func ints(n int) []any {
	a := make([]any, n)
	for i := range a {
		a[i] = i
	}
	return a
}

func TestLimits_SQL(t *testing.T) {
	t.Run("SQLLength", func(t *testing.T) {
		db := limitDB(t)
		q := func(n int) string {
			head := "INSERT INTO t VALUES (1) -- "
			return head + strings.Repeat("x", n-len(head))
		}
		if _, err := db.Exec(q(storage.MaxSQLLength)); err != nil {
			t.Fatalf("at the limit: %v", err)
		}
		_, err := db.Exec(q(storage.MaxSQLLength + 1))
		wantLimit(t, err, storage.LimitSQLLength)
		// Several statements count together.
		_, err = db.Exec("INSERT INTO t VALUES (2);" + q(storage.MaxSQLLength-10))
		wantLimit(t, err, storage.LimitSQLLength)
		if n := queryInt(t, db, "SELECT count(*) FROM t"); n != 2 {
			t.Errorf("rows = %d, want 2", n)
		}
		db.Rollback()
		stillUsable(t, db)
	})
	t.Run("BoundParameters", func(t *testing.T) {
		db := limitDB(t)
		insert := func(n int) string { return "INSERT INTO t SELECT ? WHERE ? NOT IN (" + params(n-2) + ")" }
		if _, err := db.Exec(insert(storage.MaxBoundParameters), ints(storage.MaxBoundParameters)...); err != nil {
			t.Fatalf("at the limit: %v", err)
		}
		_, err := db.Exec(insert(storage.MaxBoundParameters+1), ints(storage.MaxBoundParameters+1)...)
		wantLimit(t, err, storage.LimitBoundParameters)
		_, err = db.Exec("SELECT ?101", 1)
		wantLimit(t, err, storage.LimitBoundParameters)
		if n := queryInt(t, db, "SELECT count(*) FROM t"); n != 2 {
			t.Errorf("rows = %d, want 2", n)
		}
		db.Rollback()
		stillUsable(t, db)
	})
	t.Run("Columns", func(t *testing.T) {
		db := limitDB(t)
		cols := func(n int) string {
			var b strings.Builder
			for i := range n {
				if i > 0 {
					b.WriteString(", ")
				}
				fmt.Fprintf(&b, "c%d", i)
			}
			return b.String()
		}
		exec(t, db, "CREATE TABLE ok ("+cols(storage.MaxColumns)+")")
		_, err := db.Exec("CREATE TABLE bad (" + cols(storage.MaxColumns+1) + ")")
		wantLimit(t, err, storage.LimitColumns)
		_, err = db.Exec("SELECT *, 1 FROM ok")
		wantLimit(t, err, storage.LimitColumns)
		_, err = db.Exec("ALTER TABLE ok ADD COLUMN extra")
		wantLimit(t, err, storage.LimitColumns)
		stillUsable(t, db)
	})
	t.Run("StringBlobRow", func(t *testing.T) {
		db := limitDB(t)
		s := strings.Repeat("a", storage.MaxLength)
		if got := queryInt(t, db, "SELECT length(?)", s); got != storage.MaxLength {
			t.Errorf("length = %d, want %d", got, storage.MaxLength)
		}
		if got := queryInt(t, db, "SELECT length(?)", []byte(s)); got != storage.MaxLength {
			t.Errorf("length = %d, want %d", got, storage.MaxLength)
		}
		// A stored row also holds a record header of a few bytes, which
		// counts against the same limit.
		exec(t, db, "INSERT INTO t VALUES (?)", s[:storage.MaxLength-16])
		exec(t, db, "INSERT INTO t VALUES (?)", []byte(s[:storage.MaxLength-16]))
		exec(t, db, "INSERT INTO t VALUES (zeroblob(?))", storage.MaxLength-16)
		_, err := db.Exec("INSERT INTO t VALUES (?)", s)
		wantLimit(t, err, storage.LimitLength)
		_, err = db.Exec("INSERT INTO t VALUES (?)", s+"a")
		wantLimit(t, err, storage.LimitLength)
		_, err = db.Exec("INSERT INTO t VALUES (?)", []byte(s+"a"))
		wantLimit(t, err, storage.LimitLength)
		_, err = db.Exec("SELECT zeroblob(?)", storage.MaxLength+1)
		wantLimit(t, err, storage.LimitLength)
		_, err = db.Exec("SELECT ? || 'a'", s)
		wantLimit(t, err, storage.LimitLength)
		// A row: two columns that each fit but not together.
		exec(t, db, "CREATE TABLE two (a, b)")
		half := storage.MaxLength/2 - 8
		exec(t, db, "INSERT INTO two VALUES (zeroblob(?), zeroblob(?))", half, half)
		_, err = db.Exec("INSERT INTO two VALUES (zeroblob(?), zeroblob(?))", half+8, half+8)
		wantLimit(t, err, storage.LimitLength)
		if n := queryInt(t, db, "SELECT count(*) FROM two"); n != 1 {
			t.Errorf("rows in two = %d, want 1", n)
		}
		if n := queryInt(t, db, "SELECT count(*) FROM t"); n != 4 {
			t.Errorf("rows in t = %d, want 4", n)
		}
		db.Rollback()
		stillUsable(t, db)
	})
	t.Run("FunctionArgs", func(t *testing.T) {
		db := limitDB(t)
		call := func(n int) string { return "SELECT max(" + strings.TrimSuffix(strings.Repeat("1,", n), ",") + ")" }
		if got := queryInt(t, db, call(storage.MaxFunctionArgs)); got != 1 {
			t.Errorf("got %d, want 1", got)
		}
		_, err := db.Exec(call(storage.MaxFunctionArgs + 1))
		wantLimit(t, err, storage.LimitFunctionArgs)
		stillUsable(t, db)
	})
	t.Run("LikePattern", func(t *testing.T) {
		db := limitDB(t)
		p := strings.Repeat("_", storage.MaxLikePattern-1) + "%"
		if got := queryInt(t, db, "SELECT count(*) FROM t WHERE x LIKE ?", p); got != 0 {
			t.Errorf("got %d, want 0", got)
		}
		if got := queryInt(t, db, "SELECT count(*) FROM t WHERE x GLOB ?", strings.Repeat("?", storage.MaxLikePattern)); got != 0 {
			t.Errorf("got %d, want 0", got)
		}
		_, err := db.Exec("SELECT count(*) FROM t WHERE x LIKE ?", p+"%")
		wantLimit(t, err, storage.LimitLikePattern)
		_, err = db.Exec("SELECT count(*) FROM t WHERE x GLOB ?", strings.Repeat("?", storage.MaxLikePattern+1))
		wantLimit(t, err, storage.LimitLikePattern)
		stillUsable(t, db)
	})
	t.Run("CompoundSelect", func(t *testing.T) {
		db := limitDB(t)
		compound := func(n int) string {
			terms := make([]string, n)
			for i := range terms {
				terms[i] = "SELECT " + strconv.Itoa(i)
			}
			return strings.Join(terms, " UNION ALL ")
		}
		if rows := exec(t, db, compound(storage.MaxCompoundSelect)); len(rows) != storage.MaxCompoundSelect {
			t.Errorf("rows = %d, want %d", len(rows), storage.MaxCompoundSelect)
		}
		_, err := db.Exec(compound(storage.MaxCompoundSelect + 1))
		wantLimit(t, err, storage.LimitCompoundSelect)
		// Multi-row VALUES is not a compound SELECT.
		exec(t, db, "SELECT * FROM (VALUES (1), (2), (3), (4), (5), (6), (7))")
		stillUsable(t, db)
	})
	t.Run("TriggerDepth", func(t *testing.T) {
		db := limitDB(t)
		exec(t, db, `
			CREATE TABLE chain (n INTEGER);
			CREATE TRIGGER step AFTER INSERT ON chain WHEN new.n > 0
			BEGIN INSERT INTO chain VALUES (new.n - 1); END;
			PRAGMA recursive_triggers = ON;`)
		// Inserting n enters n+1 nested trigger frames (the WHEN clause of
		// the last one runs inside its frame).
		exec(t, db, "INSERT INTO chain VALUES (?)", storage.MaxTriggerDepth-1)
		if n := queryInt(t, db, "SELECT count(*) FROM chain"); n != storage.MaxTriggerDepth {
			t.Errorf("rows = %d, want %d", n, storage.MaxTriggerDepth)
		}
		_, err := db.Exec("INSERT INTO chain VALUES (?)", storage.MaxTriggerDepth)
		wantLimit(t, err, storage.LimitTriggerDepth)
		if n := queryInt(t, db, "SELECT count(*) FROM chain"); n != storage.MaxTriggerDepth {
			t.Errorf("rows after the failed insert = %d, want %d", n, storage.MaxTriggerDepth)
		}
		stillUsable(t, db)
	})
	t.Run("ExprDepth", func(t *testing.T) {
		db := limitDB(t)
		nested := func(depth int) string {
			return "SELECT " + strings.Repeat("(", depth-1) + "1" + strings.Repeat(")", depth-1)
		}
		_ = nested
		expr := func(depth int) string {
			// Each unary minus adds a level: -(-(-(1))).
			return "SELECT " + strings.Repeat("-(", depth-1) + "1" + strings.Repeat(")", depth-1)
		}
		if _, err := db.Exec(expr(storage.MaxExprDepth)); err != nil {
			t.Fatalf("at the limit: %v", err)
		}
		_, err := db.Exec(expr(storage.MaxExprDepth + 1))
		wantLimit(t, err, storage.LimitExprDepth)
		stillUsable(t, db)
	})
	t.Run("VDBEOps", func(t *testing.T) {
		db := limitDB(t)
		// A view with a long CASE compiles to about 8,000 instructions;
		// each use of it in a query adds as many.
		var b strings.Builder
		b.WriteString("CREATE VIEW v AS SELECT CASE random()")
		for i := range 2000 {
			fmt.Fprintf(&b, " WHEN %d THEN %d", i, i)
		}
		b.WriteString(" END AS x")
		exec(t, db, b.String())
		uses := func(n int) string {
			return "SELECT " + strings.TrimSuffix(strings.Repeat("(SELECT x FROM v),", n), ",")
		}
		if _, err := db.Exec(uses(3)); err != nil {
			t.Fatalf("under the limit: %v", err)
		}
		_, err := db.Exec(uses(4))
		wantLimit(t, err, storage.LimitVDBEOps)
		stillUsable(t, db)
	})
	t.Run("StatementsPerExec", func(t *testing.T) {
		db := limitDB(t)
		script := func(n int) string { return strings.Repeat("INSERT INTO t VALUES (1);", n) }
		exec(t, db, script(storage.MaxStatements))
		if n := queryInt(t, db, "SELECT count(*) FROM t"); n != storage.MaxStatements+1 {
			t.Errorf("rows = %d, want %d", n, storage.MaxStatements+1)
		}
		_, err := db.Exec(script(storage.MaxStatements + 1))
		wantLimit(t, err, storage.LimitStatementCount)
		if n := queryInt(t, db, "SELECT count(*) FROM t"); n != storage.MaxStatements+1 {
			t.Errorf("rows after the failed script = %d, want %d", n, storage.MaxStatements+1)
		}
		db.Rollback()
		stillUsable(t, db)
	})
	t.Run("CollectedRows", func(t *testing.T) {
		db := openDB(t, storage.Options{MaxCollectedRows: 3})
		cur, _ := db.Exec("SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3")
		if rows, err := cur.Raw(); err != nil || len(rows) != 3 {
			t.Errorf("at the limit: %d rows, %v", len(rows), err)
		}
		cur, _ = db.Exec("SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4")
		_, err := cur.Raw()
		wantLimit(t, err, storage.LimitCursorRows)
		cur, _ = db.Exec("SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4")
		_, err = cur.All()
		wantLimit(t, err, storage.LimitCursorRows)
	})
}

func TestLimits_DatabaseSize(t *testing.T) {
	db := openDB(t, storage.Options{MaxDatabaseSize: storage.MinDatabaseSize})
	exec(t, db, "CREATE TABLE t (b BLOB)")
	commit(t, db)
	// Fill up with small rows in committed turns.
	var err error
	n := 0
	for ; n < 100; n++ {
		if _, err = db.Exec("INSERT INTO t VALUES (zeroblob(1000))"); err != nil {
			break
		}
		commit(t, db)
	}
	wantLimit(t, err, storage.LimitDatabaseSize)
	if n < 30 {
		t.Errorf("only %d rows fit in %d bytes", n, storage.MinDatabaseSize)
	}
	// The failed turn is gone entirely or just its statement; either way
	// the committed rows are intact and the next turn works.
	db.Rollback()
	if got := queryInt(t, db, "SELECT count(*) FROM t"); got != int64(n) {
		t.Errorf("rows = %d, want %d", got, n)
	}
	size, err := db.DatabaseSize()
	if err != nil {
		t.Fatal(err)
	}
	if size > storage.MinDatabaseSize {
		t.Errorf("DatabaseSize = %d, above the maximum %d", size, storage.MinDatabaseSize)
	}
	// KV writes past the limit fail alone: earlier writes of the turn stay.
	exec(t, db, "DELETE FROM t WHERE rowid IN (SELECT rowid FROM t LIMIT 2)")
	if err := db.Put("big", make([]byte, storage.MinDatabaseSize)); err == nil {
		t.Fatal("Put larger than the database succeeded")
	} else {
		wantLimit(t, err, storage.LimitDatabaseSize)
		var ae *storage.TxAbortedError
		if errors.As(err, &ae) {
			t.Errorf("Put past the limit aborted the transaction: %v", err)
		}
	}
	if err := db.Put("small", []byte("v")); err != nil {
		t.Errorf("Put after the failed one: %v", err)
	}
	commit(t, db)
	if got := queryInt(t, db, "SELECT count(*) FROM t"); got != int64(n-2) {
		t.Errorf("rows = %d, want %d", got, n-2)
	}
	if _, ok, _ := db.Get("big"); ok {
		t.Error("the failed Put was written")
	}
}

func TestLimits_KV(t *testing.T) {
	t.Run("KeySize", func(t *testing.T) {
		db := openDB(t, storage.Options{})
		k := strings.Repeat("k", storage.MaxKeySize)
		if err := db.Put(k, []byte("v")); err != nil {
			t.Fatalf("at the limit: %v", err)
		}
		if _, ok, err := db.Get(k); !ok || err != nil {
			t.Errorf("Get at the limit = %v, %v", ok, err)
		}
		wantLimit(t, db.Put(k+"k", []byte("v")), storage.LimitKeySize)
		_, _, err := db.Get(k + "k")
		wantLimit(t, err, storage.LimitKeySize)
		_, err = db.Delete(k + "k")
		wantLimit(t, err, storage.LimitKeySize)
		_, err = db.List(storage.ListOptions{Prefix: k + "k"})
		wantLimit(t, err, storage.LimitKeySize)
		if got, _ := db.List(storage.ListOptions{}); len(got) != 1 {
			t.Errorf("entries = %d, want 1", len(got))
		}
	})
	t.Run("EntrySize", func(t *testing.T) {
		db := openDB(t, storage.Options{})
		v := make([]byte, storage.MaxEntrySize-1)
		if err := db.Put("k", v); err != nil {
			t.Fatalf("at the limit: %v", err)
		}
		commit(t, db)
		got, ok, err := db.Get("k")
		if err != nil || !ok || len(got) != len(v) {
			t.Errorf("Get = %d bytes, %v, %v; want %d", len(got), ok, err, len(v))
		}
		wantLimit(t, db.Put("k2", make([]byte, storage.MaxEntrySize-1)), storage.LimitEntrySize)
		wantLimit(t, db.PutMany([]storage.Entry{{"a", nil}, {"k2", make([]byte, storage.MaxEntrySize-1)}}), storage.LimitEntrySize)
		if got, _ := db.List(storage.ListOptions{}); len(got) != 1 {
			t.Errorf("entries = %d, want 1", len(got))
		}
	})
	t.Run("BatchKeys", func(t *testing.T) {
		db := openDB(t, storage.Options{})
		entries := make([]storage.Entry, storage.MaxBatchKeys+1)
		keys := make([]string, storage.MaxBatchKeys+1)
		for i := range entries {
			keys[i] = "k" + strconv.Itoa(i)
			entries[i] = storage.Entry{Key: keys[i], Value: []byte("v")}
		}
		wantLimit(t, db.PutMany(entries), storage.LimitBatchKeys)
		_, err := db.GetMany(keys)
		wantLimit(t, err, storage.LimitBatchKeys)
		_, err = db.DeleteMany(keys)
		wantLimit(t, err, storage.LimitBatchKeys)
		if got, _ := db.List(storage.ListOptions{}); len(got) != 0 {
			t.Errorf("entries after the refused PutMany = %d, want 0", len(got))
		}
		max := storage.MaxBatchKeys
		if err := db.PutMany(entries[:max]); err != nil {
			t.Fatalf("PutMany at the limit: %v", err)
		}
		if got, err := db.GetMany(keys[:max]); err != nil || len(got) != max {
			t.Errorf("GetMany at the limit = %d, %v", len(got), err)
		}
		if n, err := db.DeleteMany(keys[:max]); err != nil || n != max {
			t.Errorf("DeleteMany at the limit = %d, %v", n, err)
		}
	})
	t.Run("Meta", func(t *testing.T) {
		db := openDB(t, storage.Options{})
		if err := db.SetMeta(strings.Repeat("k", storage.MaxMetaSize), strings.Repeat("v", storage.MaxMetaSize)); err != nil {
			t.Fatalf("at the limit: %v", err)
		}
		wantLimit(t, db.SetMeta("k", strings.Repeat("v", storage.MaxMetaSize+1)), storage.LimitMetaSize)
		var ae *storage.ArgError
		if err := db.SetMeta(strings.Repeat("k", storage.MaxMetaSize+1), "v"); !errors.As(err, &ae) {
			t.Errorf("oversized meta key: got %v, want *ArgError", err)
		}
	})
}
