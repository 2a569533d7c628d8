package storage_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/durable-go/durable/internal/durability"
	"github.com/durable-go/durable/internal/storage"
	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"
)

func TestOpen(t *testing.T) {
	t.Run("CreatesParentDirAndFiles", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "a", "b", "db")
		db := openAt(t, path, storage.Options{})
		if err := db.Put("k", []byte("v")); err != nil {
			t.Fatal(err)
		}
		commit(t, db)
		if _, err := os.Stat(path); err != nil {
			t.Errorf("database file: %v", err)
		}
		if _, err := os.Stat(path + "-wal"); err != nil {
			t.Errorf("WAL file: %v", err)
		}
		if _, err := os.Stat(path + "-shm"); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("-shm file: got %v, want none (exclusive locking keeps the WAL index in memory)", err)
		}
	})
	t.Run("RequiresDurability", func(t *testing.T) {
		_, err := storage.Open(filepath.Join(t.TempDir(), "db"), storage.Options{})
		var ae *storage.ArgError
		if !errors.As(err, &ae) {
			t.Fatalf("got %v, want *ArgError", err)
		}
	})
	t.Run("RejectsTinyMaxDatabaseSize", func(t *testing.T) {
		_, err := storage.Open(filepath.Join(t.TempDir(), "db"), storage.Options{
			Durability: newGroup(t, durability.NoSync), MaxDatabaseSize: storage.MinDatabaseSize - 1,
		})
		var ae *storage.ArgError
		if !errors.As(err, &ae) {
			t.Fatalf("got %v, want *ArgError", err)
		}
	})
	t.Run("ReopenKeepsData", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "db")
		g := newGroup(t, durability.Fsync)
		db, err := storage.Open(path, storage.Options{Durability: g})
		if err != nil {
			t.Fatal(err)
		}
		exec(t, db, "CREATE TABLE t (x)")
		exec(t, db, "INSERT INTO t VALUES (42)")
		if err := db.Put("k", []byte("v")); err != nil {
			t.Fatal(err)
		}
		if err := db.SetMeta("name", "room-1"); err != nil {
			t.Fatal(err)
		}
		commit(t, db)
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		// Close does not checkpoint (the WAL's commits are durable
		// already): the WAL file stays, with the frames, for the next Open.
		if fi, err := os.Stat(path + "-wal"); err != nil || fi.Size() == 0 {
			t.Errorf("WAL after Close: %v, %v; want the file with its frames", fi, err)
		}
		db = openAt(t, path, storage.Options{Durability: g})
		if got := queryInt(t, db, "SELECT x FROM t"); got != 42 {
			t.Errorf("got x = %d, want 42", got)
		}
		v, ok, err := db.Get("k")
		if err != nil || !ok || string(v) != "v" {
			t.Errorf("Get = %q, %v, %v; want \"v\", true, nil", v, ok, err)
		}
		name, ok, err := db.GetMeta("name")
		if err != nil || !ok || name != "room-1" {
			t.Errorf("GetMeta = %q, %v, %v; want \"room-1\", true, nil", name, ok, err)
		}
	})
	t.Run("UncommittedIsLostOnClose", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "db")
		db := openAt(t, path, storage.Options{})
		if err := db.Put("k", []byte("v")); err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		db = openAt(t, path, storage.Options{})
		if _, ok, err := db.Get("k"); ok || err != nil {
			t.Errorf("Get after uncommitted Put and Close = %v, %v; want false, nil", ok, err)
		}
	})
	t.Run("SecondOpenOfSamePathFails", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "db")
		db := openAt(t, path, storage.Options{})
		if err := db.Put("k", []byte("v")); err != nil {
			t.Fatal(err)
		}
		commit(t, db)
		db2, err := storage.Open(path, storage.Options{Durability: newGroup(t, durability.NoSync)})
		if err == nil {
			_, _, err = db2.Get("k")
			db2.Close()
		}
		if err == nil {
			t.Fatal("second Open and Get of a locked database succeeded, want an error")
		}
		if runtime.GOOS == "linux" && !errors.Is(err, storage.ErrInUse) {
			t.Errorf("second Open: %v, want ErrInUse", err)
		}
		// A connection through SQLite's default VFS, with its POSIX
		// locks (as the sqlite3 shell in another process would use), is
		// kept out as well.
		c, err := storage.OpenConn(path, sqlite.OpenReadOnly)
		if err != nil {
			t.Fatal(err)
		}
		c.SetBusyTimeout(0)
		err = sqlitex.ExecuteTransient(c, "SELECT count(*) FROM sqlite_schema", nil)
		storage.CloseConn(c)
		if sqlite.ErrCode(err).ToPrimary() != sqlite.ResultBusy {
			t.Errorf("read through the default VFS while open: %v, want SQLITE_BUSY", err)
		}
		// Once closed, the database opens again.
		db.Close()
		db3 := openAt(t, path, storage.Options{})
		if v, ok, err := db3.Get("k"); err != nil || !ok || string(v) != "v" {
			t.Errorf("Get after reopening = %q, %v, %v", v, ok, err)
		}
	})
	t.Run("PathWithURICharacters", func(t *testing.T) {
		// Open hands SQLite a URI on Linux: the characters a URI gives
		// meaning to must reach the file system unchanged.
		path := filepath.Join(t.TempDir(), "a%20b?c=d#e f", "db")
		db := openAt(t, path, storage.Options{})
		if err := db.Put("k", []byte("v")); err != nil {
			t.Fatal(err)
		}
		commit(t, db)
		db.Close()
		if _, err := os.Stat(path); err != nil {
			t.Fatal(err)
		}
		db = openAt(t, path, storage.Options{})
		if v, ok, err := db.Get("k"); err != nil || !ok || string(v) != "v" {
			t.Errorf("Get after reopening = %q, %v, %v", v, ok, err)
		}
	})
	t.Run("EmptyExistingFileIsInitialized", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "db")
		if err := os.WriteFile(path, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		db := openAt(t, path, storage.Options{})
		if err := db.Put("k", []byte("v")); err != nil {
			t.Fatal(err)
		}
		commit(t, db)
	})
	t.Run("UpgradesLayout1", func(t *testing.T) {
		// A database of layout 1, as an earlier version made it: the
		// runtime's rows in a table of their own, under TEXT keys.
		path := filepath.Join(t.TempDir(), "db")
		c, err := storage.OpenConn(path, sqlite.OpenReadWrite|sqlite.OpenCreate)
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range []string{
			"PRAGMA journal_mode = WAL",
			"CREATE TABLE _durable_kv (key TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL) WITHOUT ROWID",
			"CREATE TABLE _durable_meta (key TEXT PRIMARY KEY NOT NULL, value NOT NULL) WITHOUT ROWID",
			"INSERT INTO _durable_kv VALUES ('a', x'01'), ('alarm', x'02')",
			"INSERT INTO _durable_meta VALUES ('alarm', 1000000000000), ('m/name', 'room-1')",
			"CREATE TABLE t (x)",
			"PRAGMA user_version = 1",
		} {
			if err := sqlitex.ExecuteTransient(c, q, nil); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		if err := storage.CloseConn(c); err != nil {
			t.Fatal(err)
		}
		for range 2 { // upgraded, then opened as it is
			db := openAt(t, path, storage.Options{})
			if at, ok, err := db.Alarm(); err != nil || !ok || !at.Equal(timeAt(1000)) {
				t.Errorf("Alarm = %v, %v, %v; want %v", at, ok, err, timeAt(1000))
			}
			if name, ok, err := db.GetMeta("name"); err != nil || !ok || name != "room-1" {
				t.Errorf("GetMeta = %q, %v, %v; want room-1", name, ok, err)
			}
			if got, err := db.List(storage.ListOptions{}); err != nil || !reflect.DeepEqual(keysOf(got), []string{"a", "alarm"}) {
				t.Errorf("List = %q, %v; want [a alarm]", keysOf(got), err)
			}
			if n := queryInt(t, db, "SELECT count(*) FROM sqlite_schema WHERE name = '_durable_meta'"); n != 0 {
				t.Errorf("_durable_meta still there after Open")
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
		}
		c, err = storage.OpenConn(path, sqlite.OpenReadOnly)
		if err != nil {
			t.Fatal(err)
		}
		defer storage.CloseConn(c)
		if v, err := connInt(t, c, "PRAGMA user_version"); err != nil || v != 2 {
			t.Errorf("user_version = %d, %v; want 2", v, err)
		}
	})
	t.Run("RefusesNewerLayout", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "db")
		db := openAt(t, path, storage.Options{})
		commit(t, db)
		db.Close()
		c, err := storage.OpenConn(path, sqlite.OpenReadWrite)
		if err != nil {
			t.Fatal(err)
		}
		err = sqlitex.ExecuteTransient(c, "PRAGMA user_version = 3", nil)
		storage.CloseConn(c)
		if err != nil {
			t.Fatal(err)
		}
		if db, err := storage.Open(path, storage.Options{Durability: newGroup(t, durability.NoSync)}); err == nil {
			db.Close()
			t.Fatal("Open of a database of a newer layout succeeded")
		}
	})
	t.Run("StaleWALIsRemovedForNewDatabase", func(t *testing.T) {
		dir := t.TempDir()
		old := filepath.Join(dir, "old")
		db := openAt(t, old, storage.Options{})
		exec(t, db, "CREATE TABLE t (x)")
		commit(t, db)
		// Copy a WAL with frames next to a path whose database is gone.
		wal, err := os.ReadFile(old + "-wal")
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "new")
		if err := os.WriteFile(path+"-wal", wal, 0o644); err != nil {
			t.Fatal(err)
		}
		db2 := openAt(t, path, storage.Options{})
		if n := queryInt(t, db2, "SELECT count(*) FROM sqlite_schema WHERE name = 't'"); n != 0 {
			t.Errorf("new database sees %d tables from a stale WAL, want 0", n)
		}
	})
}

func TestDB_Close(t *testing.T) {
	db := openDB(t, storage.Options{})
	cur, err := db.Exec("SELECT 1 UNION ALL SELECT 2")
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Errorf("second Close: %v, want nil", err)
	}
	if cur.Next() {
		t.Error("cursor Next after Close = true, want false")
	}
	if _, err := db.Exec("SELECT 1"); !errors.Is(err, storage.ErrClosed) {
		t.Errorf("Exec after Close: got %v, want ErrClosed", err)
	}
	if _, _, err := db.Get("k"); !errors.Is(err, storage.ErrClosed) {
		t.Errorf("Get after Close: got %v, want ErrClosed", err)
	}
	if _, err := db.Commit(); !errors.Is(err, storage.ErrClosed) {
		t.Errorf("Commit after Close: got %v, want ErrClosed", err)
	}
}

func TestDB_Commit(t *testing.T) {
	t.Run("WriteTurnCommitsToDurability", func(t *testing.T) {
		g := newGroup(t, durability.Fsync)
		db := openDB(t, storage.Options{Durability: g})
		before := g.Stats().Commits
		if err := db.Put("k", []byte("v")); err != nil {
			t.Fatal(err)
		}
		if !db.InTx() {
			t.Error("InTx after Put = false, want true")
		}
		tk, err := db.Commit()
		if err != nil {
			t.Fatal(err)
		}
		if db.InTx() {
			t.Error("InTx after Commit = true, want false")
		}
		if err := tk.Wait(t.Context()); err != nil {
			t.Fatal(err)
		}
		if got := g.Stats().Commits - before; got != 1 {
			t.Errorf("durability commits = %d, want 1", got)
		}
	})
	t.Run("ReadOnlyTurnDoesNotCommit", func(t *testing.T) {
		g := newGroup(t, durability.Fsync)
		db := openDB(t, storage.Options{Durability: g})
		if err := db.Put("k", []byte("v")); err != nil {
			t.Fatal(err)
		}
		write, err := db.Commit()
		if err != nil {
			t.Fatal(err)
		}
		before := g.Stats().Commits
		if _, _, err := db.Get("k"); err != nil {
			t.Fatal(err)
		}
		exec(t, db, "SELECT * FROM sqlite_schema")
		read, err := db.Commit()
		if err != nil {
			t.Fatal(err)
		}
		if got := g.Stats().Commits - before; got != 0 {
			t.Errorf("durability commits of a read-only turn = %d, want 0", got)
		}
		if err := read.Wait(t.Context()); err != nil {
			t.Fatal(err)
		}
		if !write.Durable() {
			t.Error("the read-only turn's ticket was released before the earlier write was durable")
		}
	})
	t.Run("NoTransaction", func(t *testing.T) {
		g := newGroup(t, durability.NoSync)
		db := openDB(t, storage.Options{Durability: g})
		tk, err := db.Commit()
		if err != nil {
			t.Fatal(err)
		}
		if !tk.Durable() {
			t.Error("ticket of an empty turn is not durable")
		}
		if g.Stats().Commits != 0 {
			t.Errorf("durability commits = %d, want 0", g.Stats().Commits)
		}
	})
	t.Run("DeferredForeignKeyViolationRollsBack", func(t *testing.T) {
		db := openDB(t, storage.Options{})
		exec(t, db, "CREATE TABLE p (id INTEGER PRIMARY KEY)")
		exec(t, db, "CREATE TABLE c (pid INTEGER REFERENCES p(id) DEFERRABLE INITIALLY DEFERRED)")
		commit(t, db)
		exec(t, db, "INSERT INTO c VALUES (7)")
		if err := db.Put("k", []byte("v")); err != nil {
			t.Fatal(err)
		}
		_, err := db.Commit()
		var se *storage.SQLError
		if !errors.As(err, &se) || !se.IsConstraint() {
			t.Fatalf("Commit: got %v, want a constraint *SQLError", err)
		}
		if db.InTx() {
			t.Error("InTx after failed Commit = true, want false")
		}
		if n := queryInt(t, db, "SELECT count(*) FROM c"); n != 0 {
			t.Errorf("rows in c after failed commit = %d, want 0", n)
		}
		if _, ok, _ := db.Get("k"); ok {
			t.Error("KV write of a failed commit survived")
		}
	})
}

func TestDB_Rollback(t *testing.T) {
	t.Run("Atomicity", func(t *testing.T) {
		db := openDB(t, storage.Options{})
		exec(t, db, "CREATE TABLE t (x)")
		commit(t, db)
		exec(t, db, "INSERT INTO t VALUES (1)")
		exec(t, db, "INSERT INTO t VALUES (2)")
		if err := db.Put("k", []byte("v")); err != nil {
			t.Fatal(err)
		}
		if err := db.SetAlarm(timeAt(1000)); err != nil {
			t.Fatal(err)
		}
		if err := db.Rollback(); err != nil {
			t.Fatal(err)
		}
		if n := queryInt(t, db, "SELECT count(*) FROM t"); n != 0 {
			t.Errorf("rows after Rollback = %d, want 0", n)
		}
		if _, ok, _ := db.Get("k"); ok {
			t.Error("KV entry survived Rollback")
		}
		if _, ok, _ := db.Alarm(); ok {
			t.Error("alarm survived Rollback")
		}
	})
	t.Run("KVAndSQLCommitTogether", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "db")
		db := openAt(t, path, storage.Options{})
		exec(t, db, "CREATE TABLE t (x)")
		exec(t, db, "INSERT INTO t VALUES (1)")
		if err := db.Put("k", []byte("v")); err != nil {
			t.Fatal(err)
		}
		commit(t, db)
		db.Close()
		db = openAt(t, path, storage.Options{})
		if n := queryInt(t, db, "SELECT count(*) FROM t"); n != 1 {
			t.Errorf("rows = %d, want 1", n)
		}
		if _, ok, _ := db.Get("k"); !ok {
			t.Error("KV entry missing")
		}
	})
	t.Run("NoTransaction", func(t *testing.T) {
		db := openDB(t, storage.Options{})
		if err := db.Rollback(); err != nil {
			t.Errorf("Rollback without a transaction: %v", err)
		}
	})
}

// TestDB_Aborted checks a transaction that SQLite rolls back by itself
// (here through INSERT OR ROLLBACK, as an I/O error or a full disk would).
func TestDB_Aborted(t *testing.T) {
	db := openDB(t, storage.Options{})
	exec(t, db, "CREATE TABLE t (id INTEGER PRIMARY KEY)")
	exec(t, db, "INSERT INTO t VALUES (1)")
	commit(t, db)

	if err := db.Put("before", []byte("x")); err != nil {
		t.Fatal(err)
	}
	exec(t, db, "INSERT INTO t VALUES (2)")
	_, err := db.Exec("INSERT OR ROLLBACK INTO t VALUES (1)")
	var ae *storage.TxAbortedError
	if !errors.As(err, &ae) {
		t.Fatalf("Exec: got %v, want *TxAbortedError", err)
	}
	// The turn cannot go on.
	if _, _, err := db.Get("before"); !errors.As(err, &ae) {
		t.Errorf("Get after abort: got %v, want *TxAbortedError", err)
	}
	if err := db.Put("after", []byte("x")); !errors.As(err, &ae) {
		t.Errorf("Put after abort: got %v, want *TxAbortedError", err)
	}
	if err := db.TransactionSync(func() error { return nil }); !errors.As(err, &ae) {
		t.Errorf("TransactionSync after abort: got %v, want *TxAbortedError", err)
	}
	if _, err := db.Commit(); !errors.As(err, &ae) {
		t.Errorf("Commit after abort: got %v, want *TxAbortedError", err)
	}
	// The next turn starts clean and sees nothing of the aborted one.
	if n := queryInt(t, db, "SELECT count(*) FROM t"); n != 1 {
		t.Errorf("rows = %d, want 1", n)
	}
	if _, ok, _ := db.Get("before"); ok {
		t.Error("write of the aborted turn survived")
	}
	commit(t, db)

	// Rollback also clears the state.
	if _, err := db.Exec("INSERT OR ROLLBACK INTO t VALUES (1)"); !errors.As(err, &ae) {
		t.Fatalf("Exec: got %v, want *TxAbortedError", err)
	}
	if err := db.Rollback(); err != nil {
		t.Errorf("Rollback after abort: %v", err)
	}
	if err := db.Put("k", []byte("v")); err != nil {
		t.Errorf("Put in the next turn: %v", err)
	}
	commit(t, db)
}

func TestDB_TransactionSync(t *testing.T) {
	setup := func(t *testing.T) *storage.DB {
		db := openDB(t, storage.Options{})
		exec(t, db, "CREATE TABLE t (x)")
		commit(t, db)
		return db
	}
	count := func(t *testing.T, db *storage.DB) int64 {
		return queryInt(t, db, "SELECT count(*) FROM t")
	}
	t.Run("Commits", func(t *testing.T) {
		db := setup(t)
		err := db.TransactionSync(func() error {
			exec(t, db, "INSERT INTO t VALUES (1)")
			return db.Put("k", []byte("v"))
		})
		if err != nil {
			t.Fatal(err)
		}
		commit(t, db)
		if n := count(t, db); n != 1 {
			t.Errorf("rows = %d, want 1", n)
		}
	})
	t.Run("ErrorRollsBack", func(t *testing.T) {
		db := setup(t)
		exec(t, db, "INSERT INTO t VALUES (0)")
		boom := errors.New("boom")
		err := db.TransactionSync(func() error {
			exec(t, db, "INSERT INTO t VALUES (1)")
			if err := db.Put("k", []byte("v")); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("got %v, want fn's error", err)
		}
		if n := count(t, db); n != 1 {
			t.Errorf("rows = %d, want 1 (the write before TransactionSync stays)", n)
		}
		if _, ok, _ := db.Get("k"); ok {
			t.Error("KV write inside the failed TransactionSync survived")
		}
		commit(t, db)
		if n := count(t, db); n != 1 {
			t.Errorf("rows after commit = %d, want 1", n)
		}
	})
	t.Run("PanicRollsBackAndRepanics", func(t *testing.T) {
		db := setup(t)
		func() {
			defer func() {
				if r := recover(); r != "boom" {
					t.Errorf("recovered %v, want \"boom\"", r)
				}
			}()
			db.TransactionSync(func() error {
				exec(t, db, "INSERT INTO t VALUES (1)")
				panic("boom")
			})
		}()
		if n := count(t, db); n != 0 {
			t.Errorf("rows = %d, want 0", n)
		}
		// The DB is still usable and not stuck inside the savepoint.
		exec(t, db, "INSERT INTO t VALUES (2)")
		commit(t, db)
		if n := count(t, db); n != 1 {
			t.Errorf("rows after commit = %d, want 1", n)
		}
	})
	t.Run("Nesting", func(t *testing.T) {
		db := setup(t)
		err := db.TransactionSync(func() error {
			exec(t, db, "INSERT INTO t VALUES (1)")
			inner := db.TransactionSync(func() error {
				exec(t, db, "INSERT INTO t VALUES (2)")
				return errors.New("inner fails")
			})
			if inner == nil {
				t.Error("inner TransactionSync returned nil, want its error")
			}
			return db.TransactionSync(func() error {
				exec(t, db, "INSERT INTO t VALUES (3)")
				return nil
			})
		})
		if err != nil {
			t.Fatal(err)
		}
		commit(t, db)
		rows := exec(t, db, "SELECT x FROM t ORDER BY x")
		if len(rows) != 2 || rows[0][0] != int64(1) || rows[1][0] != int64(3) {
			t.Errorf("rows = %v, want [[1] [3]]", rows)
		}
	})
	t.Run("CommitInsideIsRefused", func(t *testing.T) {
		db := setup(t)
		err := db.TransactionSync(func() error {
			if _, err := db.Commit(); !errors.Is(err, storage.ErrInTransactionSync) {
				t.Errorf("Commit inside: got %v, want ErrInTransactionSync", err)
			}
			if err := db.Rollback(); !errors.Is(err, storage.ErrInTransactionSync) {
				t.Errorf("Rollback inside: got %v, want ErrInTransactionSync", err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
	t.Run("OuterRollbackUndoesReleasedSavepoint", func(t *testing.T) {
		db := setup(t)
		if err := db.TransactionSync(func() error {
			exec(t, db, "INSERT INTO t VALUES (1)")
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if err := db.Rollback(); err != nil {
			t.Fatal(err)
		}
		if n := count(t, db); n != 0 {
			t.Errorf("rows = %d, want 0", n)
		}
	})
	t.Run("DepthLimit", func(t *testing.T) {
		db := setup(t)
		var nest func(depth int) error
		reached := 0
		nest = func(depth int) error {
			return db.TransactionSync(func() error {
				reached = depth
				exec(t, db, "INSERT INTO t VALUES (?)", depth)
				if depth < storage.MaxSavepointDepth+1 {
					return nest(depth + 1)
				}
				return nil
			})
		}
		err := nest(1)
		var le *storage.LimitError
		if !errors.As(err, &le) || le.Limit != storage.LimitSavepointDepth {
			t.Fatalf("got %v, want a savepoint depth *LimitError", err)
		}
		if reached != storage.MaxSavepointDepth {
			t.Errorf("reached depth %d, want %d", reached, storage.MaxSavepointDepth)
		}
		if n := count(t, db); n != 0 {
			t.Errorf("rows = %d, want 0: every level got the error and rolled back", n)
		}
	})
}

func TestDB_DatabaseSize(t *testing.T) {
	db := openDB(t, storage.Options{})
	empty, err := db.DatabaseSize()
	if err != nil {
		t.Fatal(err)
	}
	if empty <= 0 || empty%4096 != 0 || empty > 8*4096 {
		t.Errorf("empty size = %d, want a few 4096-byte pages", empty)
	}
	exec(t, db, "CREATE TABLE t (b BLOB)")
	exec(t, db, "INSERT INTO t VALUES (zeroblob(100000))")
	grown, err := db.DatabaseSize()
	if err != nil {
		t.Fatal(err)
	}
	if grown < empty+100000 {
		t.Errorf("size after a 100 kB insert = %d, want at least %d", grown, empty+100000)
	}
	commit(t, db)
	exec(t, db, "DROP TABLE t")
	shrunk, err := db.DatabaseSize()
	if err != nil {
		t.Fatal(err)
	}
	if shrunk != empty {
		t.Errorf("size after DROP = %d, want %d (free pages do not count)", shrunk, empty)
	}
	if st := db.Stats(); st.Bytes != shrunk {
		t.Errorf("Stats().Bytes = %d, want %d", st.Bytes, shrunk)
	}
}

func TestDB_Stats(t *testing.T) {
	db := openDB(t, storage.Options{})
	exec(t, db, "CREATE TABLE t (x)")
	exec(t, db, "INSERT INTO t VALUES (1), (2), (3)")
	exec(t, db, "SELECT * FROM t")
	if err := db.Put("k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.Get("k"); err != nil {
		t.Fatal(err)
	}
	st := db.Stats()
	if st.RowsWritten != 4 {
		t.Errorf("RowsWritten = %d, want 4 (3 rows + 1 KV put)", st.RowsWritten)
	}
	if st.RowsRead != 4 {
		t.Errorf("RowsRead = %d, want 4 (3 rows + 1 KV get)", st.RowsRead)
	}
	if st.Memory <= 0 {
		t.Errorf("Memory = %d, want > 0", st.Memory)
	}
}

func TestSpares(t *testing.T) {
	for _, mode := range []durability.Mode{durability.NoSync, durability.Fsync} {
		t.Run(mode.String(), func(t *testing.T) {
			dir := t.TempDir()
			sp, err := storage.NewSpares(storage.SparesConfig{Dir: filepath.Join(dir, "spares"), Count: 4, Sync: mode == durability.Fsync})
			if err != nil {
				t.Fatal(err)
			}
			defer sp.Close()
			g := newGroup(t, mode)
			for i := range 10 {
				path := filepath.Join(dir, "objects", strconv.Itoa(i))
				db := openAt(t, path, storage.Options{Durability: g, Spares: sp})
				if err := db.Put("k", []byte(strconv.Itoa(i))); err != nil {
					t.Fatal(err)
				}
				commit(t, db)
				if err := db.Close(); err != nil {
					t.Fatal(err)
				}
			}
			if err := sp.Err(); err != nil {
				t.Fatal(err)
			}
			// Every database is distinct and intact.
			for i := range 10 {
				db := openAt(t, filepath.Join(dir, "objects", strconv.Itoa(i)), storage.Options{Durability: g})
				v, ok, err := db.Get("k")
				if err != nil || !ok || string(v) != strconv.Itoa(i) {
					t.Errorf("db %d: Get = %q, %v, %v; want %q", i, v, ok, err, strconv.Itoa(i))
				}
				db.Close()
			}
			if err := sp.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(dir, "spares")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("spares dir after Close: %v, want removed", err)
			}
		})
	}
	t.Run("ExistingPathIsNotReplaced", func(t *testing.T) {
		dir := t.TempDir()
		sp, err := storage.NewSpares(storage.SparesConfig{Dir: filepath.Join(dir, "spares"), Count: 2})
		if err != nil {
			t.Fatal(err)
		}
		defer sp.Close()
		path := filepath.Join(dir, "db")
		db := openAt(t, path, storage.Options{})
		if err := db.Put("k", []byte("v")); err != nil {
			t.Fatal(err)
		}
		commit(t, db)
		db.Close()
		db = openAt(t, path, storage.Options{Spares: sp})
		if _, ok, _ := db.Get("k"); !ok {
			t.Error("existing database was replaced by a spare")
		}
	})
}

// TestDB_ConcurrentMisuse drives one DB from several goroutines, which the
// contract forbids; the mutex must still keep memory safe (run with -race).
func TestDB_ConcurrentMisuse(t *testing.T) {
	db := openDB(t, storage.Options{})
	exec(t, db, "CREATE TABLE t (x)")
	commit(t, db)
	done := make(chan struct{})
	for g := range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range 50 {
				key := strconv.Itoa(g) + "/" + strconv.Itoa(i)
				db.Put(key, []byte("v"))
				db.Get(key)
				if cur, err := db.Exec("SELECT count(*) FROM t"); err == nil {
					cur.Next()
					cur.Values()
					cur.Close()
				}
				db.Exec("INSERT INTO t VALUES (?)", i)
				if i%10 == 0 {
					db.Commit()
				}
			}
		}()
	}
	for range 4 {
		<-done
	}
	commit(t, db)
	got, err := db.List(storage.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 200 {
		t.Errorf("entries = %d, want 200", len(got))
	}
}

func TestDB_ReleaseMemory(t *testing.T) {
	db := openDB(t, storage.Options{})
	if err := db.Put("k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	commit(t, db)
	db.ReleaseMemory()
	if v, ok, err := db.Get("k"); err != nil || !ok || string(v) != "v" {
		t.Errorf("Get after ReleaseMemory = %q, %v, %v", v, ok, err)
	}
}

// tempFiles counts the process's open SQLite temporary files.
func tempFiles(t *testing.T) int {
	t.Helper()
	n, err := storage.OpenTempFiles()
	if err != nil {
		t.Skipf("cannot count open files: %v", err)
	}
	return n
}

// updateThenFail adds 1 to x in table's rows matching where, then runs an
// UPDATE of every row that fails on the last one (rowid last), and checks
// that temp temporary files more than base are open.
func updateThenFail(t *testing.T, db *storage.DB, table, where string, last, base, temp int) {
	t.Helper()
	exec(t, db, "UPDATE "+table+" SET x = x + 1"+where)
	q := fmt.Sprintf("UPDATE %s SET x = x + CASE WHEN rowid = %d THEN 100000 ELSE 1 END", table, last)
	if _, err := db.Exec(q); err == nil {
		t.Fatal("UPDATE past the CHECK constraint succeeded")
	}
	if got := tempFiles(t) - base; got != temp {
		t.Fatalf("%s: %d temporary files, want %d", table, got, temp)
	}
}

// TestStatementJournalInMemory: the undo log of a statement that rewrites
// many pages stays in memory for a small database and spills to a
// temporary file for a large one; either way a failed statement changes
// nothing and the transaction's earlier statements stay.
func TestStatementJournalInMemory(t *testing.T) {
	db := openDB(t, storage.Options{})
	base := tempFiles(t)
	exec(t, db, "CREATE TABLE t (x INTEGER NOT NULL CHECK (x < 100000), pad TEXT NOT NULL)")
	for i := range 2000 {
		exec(t, db, "INSERT INTO t VALUES (?, ?)", i%100, strings.Repeat("p", 200))
	}
	commit(t, db)
	// Each UPDATE rewrites about 100 pages, far past what a statement
	// journal holds in memory before it spills; the second fails on its
	// last row.
	updateThenFail(t, db, "t", "", 2000, base, 0)
	commit(t, db)
	const want = 20*4950 + 2000 // x was i%100 for 2,000 rows, then one update
	if got := queryInt(t, db, "SELECT sum(x) FROM t"); got != want {
		t.Fatalf("sum(x) = %d, want %d", got, want)
	}

	// Past 16 MiB the journal spills to a file.
	exec(t, db, "CREATE TABLE big (x INTEGER NOT NULL CHECK (x < 100000), b BLOB NOT NULL)")
	for range 1100 {
		exec(t, db, "INSERT INTO big VALUES (0, randomblob(16000))")
	}
	commit(t, db)
	updateThenFail(t, db, "big", " WHERE rowid <= 10", 1100, base, 1)
	commit(t, db)
	if got := queryInt(t, db, "SELECT sum(x) FROM big"); got != 10 {
		t.Fatalf("sum(x) = %d, want 10", got)
	}
}
