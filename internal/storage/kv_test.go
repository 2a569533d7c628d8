package storage_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/durable-go/durable/internal/storage"
)

func keysOf(entries []storage.Entry) []string {
	var keys []string
	for _, e := range entries {
		keys = append(keys, e.Key)
	}
	return keys
}

func TestDB_KV(t *testing.T) {
	t.Run("GetPutDelete", func(t *testing.T) {
		db := openDB(t, storage.Options{})
		if _, ok, err := db.Get("k"); ok || err != nil {
			t.Fatalf("Get of a missing key = %v, %v; want false, nil", ok, err)
		}
		if err := db.Put("k", []byte("v1")); err != nil {
			t.Fatal(err)
		}
		if err := db.Put("k", []byte("v2")); err != nil {
			t.Fatal(err)
		}
		v, ok, err := db.Get("k")
		if err != nil || !ok || string(v) != "v2" {
			t.Errorf("Get = %q, %v, %v; want \"v2\", true, nil", v, ok, err)
		}
		if err := db.Put("empty", nil); err != nil {
			t.Fatal(err)
		}
		if v, ok, _ := db.Get("empty"); !ok || len(v) != 0 {
			t.Errorf("Get of an empty value = %q, %v; want \"\", true", v, ok)
		}
		if ok, err := db.Delete("k"); !ok || err != nil {
			t.Errorf("Delete = %v, %v; want true, nil", ok, err)
		}
		if ok, err := db.Delete("k"); ok || err != nil {
			t.Errorf("second Delete = %v, %v; want false, nil", ok, err)
		}
		if _, ok, _ := db.Get("k"); ok {
			t.Error("key still there after Delete")
		}
	})
	t.Run("EmptyKey", func(t *testing.T) {
		db := openDB(t, storage.Options{})
		var ae *storage.ArgError
		if err := db.Put("", []byte("v")); !errors.As(err, &ae) {
			t.Errorf("Put(\"\"): got %v, want *ArgError", err)
		}
		if _, _, err := db.Get(""); !errors.As(err, &ae) {
			t.Errorf("Get(\"\"): got %v, want *ArgError", err)
		}
	})
	t.Run("Batches", func(t *testing.T) {
		db := openDB(t, storage.Options{})
		err := db.PutMany([]storage.Entry{{"c", []byte("3")}, {"a", []byte("1")}, {"b", []byte("x")}, {"b", []byte("2")}})
		if err != nil {
			t.Fatal(err)
		}
		got, err := db.GetMany([]string{"c", "missing", "a", "b", "a"})
		if err != nil {
			t.Fatal(err)
		}
		want := []storage.Entry{{"a", []byte("1")}, {"b", []byte("2")}, {"c", []byte("3")}}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("GetMany = %v, want %v (key order, missing omitted, last put wins)", got, want)
		}
		n, err := db.DeleteMany([]string{"a", "missing", "c", "a"})
		if err != nil || n != 2 {
			t.Errorf("DeleteMany = %d, %v; want 2, nil", n, err)
		}
		got, _ = db.GetMany([]string{"a", "b", "c"})
		if !reflect.DeepEqual(keysOf(got), []string{"b"}) {
			t.Errorf("after DeleteMany: %v, want [b]", keysOf(got))
		}
		if got, err := db.GetMany(nil); err != nil || len(got) != 0 {
			t.Errorf("GetMany(nil) = %v, %v", got, err)
		}
	})
	t.Run("PutManyIsAtomic", func(t *testing.T) {
		db := openDB(t, storage.Options{MaxDatabaseSize: storage.MinDatabaseSize})
		big := make([]byte, 30_000)
		err := db.PutMany([]storage.Entry{{"a", big}, {"b", big}, {"c", big}})
		var le *storage.LimitError
		if !errors.As(err, &le) || le.Limit != storage.LimitDatabaseSize {
			t.Fatalf("got %v, want a database size *LimitError", err)
		}
		got, err := db.GetMany([]string{"a", "b", "c"})
		if err != nil || len(got) != 0 {
			t.Errorf("after a failed PutMany: %v, %v; want nothing", keysOf(got), err)
		}
		if err := db.Put("a", big); err != nil {
			t.Errorf("Put after the failed PutMany: %v", err)
		}
		commit(t, db)
	})
	t.Run("UTF8Order", func(t *testing.T) {
		db := openDB(t, storage.Options{})
		keys := []string{"😀", "é", "b", "a", "Z", "aa", "a\x00", "\x7f", "ÿ"}
		for _, k := range keys {
			if err := db.Put(k, []byte(k)); err != nil {
				t.Fatal(err)
			}
		}
		got, err := db.List(storage.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"Z", "a", "a\x00", "aa", "b", "\x7f", "é", "ÿ", "😀"}
		if !reflect.DeepEqual(keysOf(got), want) {
			t.Errorf("List order = %q, want %q", keysOf(got), want)
		}
	})
	t.Run("ListOptions", func(t *testing.T) {
		db := openDB(t, storage.Options{})
		for _, k := range []string{"a", "ab", "abc", "abd", "ac", "b", "ba", "c", "é", "éa", "😀"} {
			if err := db.Put(k, []byte("v"+k)); err != nil {
				t.Fatal(err)
			}
		}
		// The runtime's rows share the table and never show in a list.
		setRuntimeRows(t, db)
		for _, tc := range []struct {
			name string
			opts storage.ListOptions
			want []string
		}{
			{"All", storage.ListOptions{}, []string{"a", "ab", "abc", "abd", "ac", "b", "ba", "c", "é", "éa", "😀"}},
			{"Start", storage.ListOptions{Start: "b"}, []string{"b", "ba", "c", "é", "éa", "😀"}},
			{"StartMissing", storage.ListOptions{Start: "bb"}, []string{"c", "é", "éa", "😀"}},
			{"StartAfter", storage.ListOptions{StartAfter: "b"}, []string{"ba", "c", "é", "éa", "😀"}},
			{"End", storage.ListOptions{End: "ac"}, []string{"a", "ab", "abc", "abd"}},
			{"StartEnd", storage.ListOptions{Start: "ab", End: "b"}, []string{"ab", "abc", "abd", "ac"}},
			{"StartAfterEnd", storage.ListOptions{StartAfter: "ab", End: "b"}, []string{"abc", "abd", "ac"}},
			{"EmptyRange", storage.ListOptions{Start: "c", End: "b"}, nil},
			{"Prefix", storage.ListOptions{Prefix: "ab"}, []string{"ab", "abc", "abd"}},
			{"PrefixNonASCII", storage.ListOptions{Prefix: "é"}, []string{"é", "éa"}},
			{"PrefixNoMatch", storage.ListOptions{Prefix: "x"}, nil},
			{"PrefixStart", storage.ListOptions{Prefix: "ab", Start: "abd"}, []string{"abd"}},
			{"PrefixStartBefore", storage.ListOptions{Prefix: "ab", Start: "a"}, []string{"ab", "abc", "abd"}},
			{"PrefixStartAfterPrefix", storage.ListOptions{Prefix: "ab", StartAfter: "ab"}, []string{"abc", "abd"}},
			{"PrefixEnd", storage.ListOptions{Prefix: "ab", End: "abd"}, []string{"ab", "abc"}},
			{"Limit", storage.ListOptions{Limit: 3}, []string{"a", "ab", "abc"}},
			{"Reverse", storage.ListOptions{Reverse: true}, []string{"😀", "éa", "é", "c", "ba", "b", "ac", "abd", "abc", "ab", "a"}},
			{"ReverseLimit", storage.ListOptions{Reverse: true, Limit: 2}, []string{"😀", "éa"}},
			{"ReverseStartEnd", storage.ListOptions{Reverse: true, Start: "ab", End: "b"}, []string{"ac", "abd", "abc", "ab"}},
			{"ReverseStartAfterEndLimit", storage.ListOptions{Reverse: true, StartAfter: "ab", End: "b", Limit: 2}, []string{"ac", "abd"}},
			{"ReversePrefix", storage.ListOptions{Reverse: true, Prefix: "ab"}, []string{"abd", "abc", "ab"}},
			{"ReversePrefixLimit", storage.ListOptions{Reverse: true, Prefix: "a", Limit: 1}, []string{"ac"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				got, err := db.List(tc.opts)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(keysOf(got), tc.want) {
					t.Errorf("got %q, want %q", keysOf(got), tc.want)
				}
				for _, e := range got {
					if string(e.Value) != "v"+e.Key {
						t.Errorf("value of %q = %q, want %q", e.Key, e.Value, "v"+e.Key)
					}
				}
			})
		}
	})
	t.Run("ListPrefixOfFFBytes", func(t *testing.T) {
		db := openDB(t, storage.Options{})
		for _, k := range []string{"\xfe", "\xff", "\xff\xff", "\xff\xffa"} {
			if err := db.Put(k, nil); err != nil {
				t.Fatal(err)
			}
		}
		got, err := db.List(storage.ListOptions{Prefix: "\xff"})
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"\xff", "\xff\xff", "\xff\xffa"}; !reflect.DeepEqual(keysOf(got), want) {
			t.Errorf("got %q, want %q", keysOf(got), want)
		}
	})
	t.Run("ListBadOptions", func(t *testing.T) {
		db := openDB(t, storage.Options{})
		var ae *storage.ArgError
		if _, err := db.List(storage.ListOptions{Start: "a", StartAfter: "b"}); !errors.As(err, &ae) {
			t.Errorf("Start and StartAfter: got %v, want *ArgError", err)
		}
		if _, err := db.List(storage.ListOptions{Limit: -1}); !errors.As(err, &ae) {
			t.Errorf("negative Limit: got %v, want *ArgError", err)
		}
	})
	t.Run("ReadYourWrites", func(t *testing.T) {
		db := openDB(t, storage.Options{})
		if err := db.Put("k", []byte("v")); err != nil {
			t.Fatal(err)
		}
		got, err := db.List(storage.ListOptions{})
		if err != nil || len(got) != 1 {
			t.Errorf("List in the same turn = %v, %v", got, err)
		}
	})
}

// setRuntimeRows sets the alarm (at second 1000) and the metadata "name"
// (obj) of db.
func setRuntimeRows(tb testing.TB, db *storage.DB) {
	tb.Helper()
	if err := db.SetAlarm(timeAt(1000)); err != nil {
		tb.Fatal(err)
	}
	if err := db.SetMeta("name", "obj"); err != nil {
		tb.Fatal(err)
	}
}

func TestDB_Alarm(t *testing.T) {
	db := openDB(t, storage.Options{})
	if _, ok, err := db.Alarm(); ok || err != nil {
		t.Fatalf("Alarm = %v, %v; want none", ok, err)
	}
	at := time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)
	if err := db.SetAlarm(at); err != nil {
		t.Fatal(err)
	}
	got, ok, err := db.Alarm()
	if err != nil || !ok || !got.Equal(at) {
		t.Errorf("Alarm = %v, %v, %v; want %v", got, ok, err, at)
	}
	commit(t, db)
	if err := db.DeleteAlarm(); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := db.Alarm(); ok {
		t.Error("alarm still set after DeleteAlarm")
	}
	var ae *storage.ArgError
	if err := db.SetAlarm(time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)); !errors.As(err, &ae) {
		t.Errorf("SetAlarm far in the future: got %v, want *ArgError", err)
	}
}

// TestDB_AlarmAfterRollbacks: Alarm reports the stored alarm as the open
// transaction has it after every kind of rollback and failure (a guard
// for any cache of the alarm in memory).
func TestDB_AlarmAfterRollbacks(t *testing.T) {
	db := openDB(t, storage.Options{})
	t1, t2 := timeAt(1000), timeAt(2000)
	want := func(step string, at time.Time, set bool) {
		t.Helper()
		got, ok, err := db.Alarm()
		if err != nil || ok != set || (set && !got.Equal(at)) {
			t.Errorf("%s: Alarm = %v, %v, %v; want %v, %v", step, got, ok, err, at, set)
		}
	}
	if err := db.SetAlarm(t1); err != nil {
		t.Fatal(err)
	}
	commit(t, db)
	want("committed", t1, true)

	if err := db.SetAlarm(t2); err != nil {
		t.Fatal(err)
	}
	want("set in the transaction", t2, true)
	if err := db.Rollback(); err != nil {
		t.Fatal(err)
	}
	want("after Rollback", t1, true)

	err := db.TransactionSync(func() error {
		if err := db.DeleteAlarm(); err != nil {
			return err
		}
		want("deleted inside TransactionSync", time.Time{}, false)
		return errors.New("fail")
	})
	if err == nil {
		t.Fatal("TransactionSync succeeded")
	}
	want("after a failed TransactionSync", t1, true)

	if err := db.DeleteAll(); err != nil {
		t.Fatal(err)
	}
	want("after DeleteAll", time.Time{}, false)
	if err := db.Rollback(); err != nil {
		t.Fatal(err)
	}
	want("after rolling back DeleteAll", t1, true)

	// A failing statement undoes itself only: the alarm set before it
	// stays.
	if err := db.SetAlarm(t2); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("SELECT * FROM no_such_table"); err == nil {
		t.Fatal("query of a missing table succeeded")
	}
	want("after a failed statement", t2, true)
	commit(t, db)
	want("committed again", t2, true)

	// A transaction SQLite rolls back by itself: the alarm is an error
	// while the turn is aborted, then what was committed.
	exec(t, db, "CREATE TABLE t (id INTEGER PRIMARY KEY)")
	exec(t, db, "INSERT INTO t VALUES (1)")
	commit(t, db)
	if err := db.SetAlarm(t1); err != nil {
		t.Fatal(err)
	}
	var ae *storage.TxAbortedError
	if _, err := db.Exec("INSERT OR ROLLBACK INTO t VALUES (1)"); !errors.As(err, &ae) {
		t.Fatalf("Exec: got %v, want *TxAbortedError", err)
	}
	if _, _, err := db.Alarm(); !errors.As(err, &ae) {
		t.Errorf("Alarm in an aborted transaction: got %v, want *TxAbortedError", err)
	}
	if _, err := db.Commit(); !errors.As(err, &ae) {
		t.Fatalf("Commit: got %v, want *TxAbortedError", err)
	}
	want("after an aborted transaction", t2, true)

	// A commit that fails (a deferred foreign key violation) rolls back.
	exec(t, db, "CREATE TABLE p (id INTEGER PRIMARY KEY)")
	exec(t, db, "CREATE TABLE c (pid INTEGER REFERENCES p(id) DEFERRABLE INITIALLY DEFERRED)")
	commit(t, db)
	if err := db.DeleteAlarm(); err != nil {
		t.Fatal(err)
	}
	exec(t, db, "INSERT INTO c VALUES (7)")
	if _, err := db.Commit(); err == nil {
		t.Fatal("Commit with a dangling foreign key succeeded")
	}
	want("after a failed commit", t2, true)
}

func TestDB_DeleteAll(t *testing.T) {
	setup := func(t *testing.T) *storage.DB {
		db := openDB(t, storage.Options{})
		exec(t, db, `
			CREATE TABLE parent (id INTEGER PRIMARY KEY);
			CREATE TABLE child (pid INTEGER REFERENCES parent(id));
			CREATE INDEX child_pid ON child (pid);
			CREATE VIEW v AS SELECT * FROM child;
			CREATE TRIGGER tr AFTER INSERT ON parent BEGIN INSERT INTO child VALUES (new.id); END;
			CREATE TABLE "odd ""name""" (x);
			CREATE TABLE seq (id INTEGER PRIMARY KEY AUTOINCREMENT);
			CREATE VIRTUAL TABLE docs USING fts5(body);
			INSERT INTO parent VALUES (1), (2);
			INSERT INTO seq DEFAULT VALUES;
			INSERT INTO docs VALUES ('hello');
		`)
		for i := range 5 {
			if err := db.Put("k"+strconv.Itoa(i), []byte("v")); err != nil {
				t.Fatal(err)
			}
		}
		setRuntimeRows(t, db)
		commit(t, db)
		return db
	}
	userObjects := func(t *testing.T, db *storage.DB) int64 {
		return queryInt(t, db, "SELECT count(*) FROM sqlite_schema WHERE name NOT LIKE 'sqlite%' AND name NOT LIKE '\\_durable\\_%' ESCAPE '\\'")
	}
	t.Run("DeletesEverything", func(t *testing.T) {
		db := setup(t)
		empty := openDB(t, storage.Options{})
		emptySize, _ := empty.DatabaseSize()
		if err := db.DeleteAll(); err != nil {
			t.Fatal(err)
		}
		commit(t, db)
		if n := userObjects(t, db); n != 0 {
			t.Errorf("user schema objects after DeleteAll = %d, want 0", n)
		}
		if got, _ := db.List(storage.ListOptions{}); len(got) != 0 {
			t.Errorf("KV entries after DeleteAll = %v", keysOf(got))
		}
		if _, ok, _ := db.Alarm(); ok {
			t.Error("alarm survived DeleteAll")
		}
		if name, ok, _ := db.GetMeta("name"); !ok || name != "obj" {
			t.Errorf("meta after DeleteAll = %q, %v; want kept", name, ok)
		}
		// The names can be reused.
		exec(t, db, "CREATE TABLE parent (x)")
		size, err := db.DatabaseSize()
		if err != nil {
			t.Fatal(err)
		}
		if size > emptySize+3*4096 {
			t.Errorf("size after DeleteAll = %d, want close to an empty database's %d", size, emptySize)
		}
	})
	t.Run("RollbackRestores", func(t *testing.T) {
		db := setup(t)
		before := userObjects(t, db)
		commit(t, db)
		if err := db.DeleteAll(); err != nil {
			t.Fatal(err)
		}
		if err := db.Rollback(); err != nil {
			t.Fatal(err)
		}
		if n := userObjects(t, db); n != before {
			t.Errorf("schema objects after rolled back DeleteAll = %d, want %d", n, before)
		}
		if n := queryInt(t, db, "SELECT count(*) FROM child"); n != 2 {
			t.Errorf("child rows = %d, want 2", n)
		}
		if got, _ := db.List(storage.ListOptions{}); len(got) != 5 {
			t.Errorf("KV entries = %d, want 5", len(got))
		}
		if _, ok, _ := db.Alarm(); !ok {
			t.Error("alarm lost")
		}
	})
	t.Run("ClosesCursors", func(t *testing.T) {
		db := setup(t)
		cur, err := db.Exec("SELECT * FROM parent")
		if err != nil {
			t.Fatal(err)
		}
		if err := db.DeleteAll(); err != nil {
			t.Fatal(err)
		}
		if cur.Next() || !errors.Is(cur.Err(), storage.ErrCursorClosed) {
			t.Errorf("cursor after DeleteAll: Err = %v, want ErrCursorClosed", cur.Err())
		}
	})
	t.Run("InsideTransactionSync", func(t *testing.T) {
		db := setup(t)
		err := db.TransactionSync(func() error {
			if err := db.DeleteAll(); err != nil {
				return err
			}
			return errors.New("undo")
		})
		if err == nil {
			t.Fatal("want fn's error")
		}
		if got, _ := db.List(storage.ListOptions{}); len(got) != 5 {
			t.Errorf("KV entries = %d, want 5", len(got))
		}
	})
}

// TestDB_RuntimeRowsApart: the alarm and the metadata share the KV table
// (layout 2) without sharing its key space: KV entries named like them
// are separate entries, and neither side's writes reach the other.
func TestDB_RuntimeRowsApart(t *testing.T) {
	db := openDB(t, storage.Options{})
	for _, k := range []string{"alarm", "m/name", "\xff\xff"} {
		if err := db.Put(k, []byte("kv")); err != nil {
			t.Fatal(err)
		}
	}
	setRuntimeRows(t, db)
	commit(t, db)
	if v, ok, err := db.Get("alarm"); err != nil || !ok || string(v) != "kv" {
		t.Errorf("Get(alarm) = %q, %v, %v; want the KV entry", v, ok, err)
	}
	if found, err := db.Delete("alarm"); err != nil || !found {
		t.Fatalf("Delete(alarm) = %v, %v; want the KV entry deleted", found, err)
	}
	if err := db.Put("m/name", []byte("other")); err != nil {
		t.Fatal(err)
	}
	commit(t, db)
	if at, ok, err := db.Alarm(); err != nil || !ok || !at.Equal(timeAt(1000)) {
		t.Errorf("Alarm after deleting the KV entry \"alarm\" = %v, %v, %v; want %v", at, ok, err, timeAt(1000))
	}
	if name, ok, err := db.GetMeta("name"); err != nil || !ok || name != "obj" {
		t.Errorf("GetMeta(name) after Put(\"m/name\") = %q, %v, %v; want obj", name, ok, err)
	}
	if err := db.DeleteAlarm(); err != nil {
		t.Fatal(err)
	}
	commit(t, db)
	if v, ok, err := db.Get("m/name"); err != nil || !ok || string(v) != "other" {
		t.Errorf("Get(m/name) = %q, %v, %v; want other", v, ok, err)
	}
	if got, _ := db.List(storage.ListOptions{Reverse: true}); !reflect.DeepEqual(keysOf(got), []string{"\xff\xff", "m/name"}) {
		t.Errorf("List = %q", keysOf(got))
	}
}

// TestDB_OneFramePerSmallCommit: a turn that writes a KV entry and the
// alarm of a small object changes one page, so its commit appends one
// frame to the WAL (layout 2; with a table of their own, the runtime's
// rows were a second page and a second frame).
func TestDB_OneFramePerSmallCommit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	db := openAt(t, path, storage.Options{})
	walSize := func() int64 {
		fi, err := os.Stat(path + "-wal")
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	const frame = 24 + 4096 // header and page
	for i := range 5 {
		before := walSize()
		if err := db.Put("n", []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
		if err := db.SetAlarm(timeAt(int64(1000 + i))); err != nil {
			t.Fatal(err)
		}
		if err := db.SetMeta("name", "obj"); err != nil {
			t.Fatal(err)
		}
		commit(t, db)
		if i == 0 {
			continue // the first commit also writes the WAL header
		}
		if grew := walSize() - before; grew != frame {
			t.Fatalf("commit %d grew the WAL by %d bytes, want one frame (%d)", i, grew, frame)
		}
	}
}

// TestDB_MetaAfterRollbacks: GetMeta reports the metadata as the open
// transaction has it after every kind of rollback and failure, and after
// the database opens again (a guard for the memory of it that Open fills).
func TestDB_MetaAfterRollbacks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	db := openAt(t, path, storage.Options{})
	want := func(step, val string) {
		t.Helper()
		got, ok, err := db.GetMeta("name")
		if err != nil || ok != (val != "") || got != val {
			t.Errorf("%s: GetMeta = %q, %v, %v; want %q", step, got, ok, err, val)
		}
	}
	set := func(val string) {
		t.Helper()
		if err := db.SetMeta("name", val); err != nil {
			t.Fatal(err)
		}
	}
	want("new database", "")
	set("a")
	commit(t, db)
	want("committed", "a")

	set("b")
	want("set in the transaction", "b")
	if err := db.Rollback(); err != nil {
		t.Fatal(err)
	}
	want("after Rollback", "a")

	err := db.TransactionSync(func() error {
		set("c")
		return errors.New("fail")
	})
	if err == nil {
		t.Fatal("TransactionSync succeeded")
	}
	want("after a failed TransactionSync", "a")

	exec(t, db, "CREATE TABLE t (id INTEGER PRIMARY KEY)")
	exec(t, db, "INSERT INTO t VALUES (1)")
	commit(t, db)
	set("d")
	var ae *storage.TxAbortedError
	if _, err := db.Exec("INSERT OR ROLLBACK INTO t VALUES (1)"); !errors.As(err, &ae) {
		t.Fatalf("Exec: got %v, want *TxAbortedError", err)
	}
	if _, err := db.Commit(); !errors.As(err, &ae) {
		t.Fatalf("Commit: got %v, want *TxAbortedError", err)
	}
	want("after an aborted transaction", "a")

	exec(t, db, "CREATE TABLE p (id INTEGER PRIMARY KEY)")
	exec(t, db, "CREATE TABLE c (pid INTEGER REFERENCES p(id) DEFERRABLE INITIALLY DEFERRED)")
	commit(t, db)
	set("e")
	exec(t, db, "INSERT INTO c VALUES (7)")
	if _, err := db.Commit(); err == nil {
		t.Fatal("Commit with a dangling foreign key succeeded")
	}
	want("after a failed commit", "a")

	set("f")
	if err := db.SetAlarm(timeAt(1000)); err != nil {
		t.Fatal(err)
	}
	commit(t, db)
	if err := db.DeleteAll(); err != nil {
		t.Fatal(err)
	}
	want("after DeleteAll", "f")
	commit(t, db)
	set("g")
	commit(t, db)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openAt(t, path, storage.Options{})
	want("after reopening", "g")
	if _, ok, err := db.Alarm(); ok || err != nil {
		t.Errorf("Alarm after DeleteAll and reopening = %v, %v; want none", ok, err)
	}
	if err := db.SetAlarm(timeAt(2000)); err != nil {
		t.Fatal(err)
	}
	commit(t, db)
	db.Close()
	db = openAt(t, path, storage.Options{})
	if at, ok, err := db.Alarm(); !ok || err != nil || !at.Equal(timeAt(2000)) {
		t.Errorf("Alarm after reopening = %v, %v, %v; want %v", at, ok, err, timeAt(2000))
	}
}

func TestDB_Meta(t *testing.T) {
	db := openDB(t, storage.Options{})
	if _, ok, err := db.GetMeta("name"); ok || err != nil {
		t.Fatalf("GetMeta = %v, %v; want none", ok, err)
	}
	if err := db.SetMeta("name", "room-1"); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := db.GetMeta("name"); !ok || err != nil || v != "room-1" {
		t.Errorf("GetMeta = %q, %v, %v", v, ok, err)
	}
	// Meta keys do not collide with the alarm.
	if err := db.SetMeta("alarm", "x"); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := db.Alarm(); ok || err != nil {
		t.Errorf("Alarm after SetMeta(\"alarm\") = %v, %v; want none", ok, err)
	}
}
