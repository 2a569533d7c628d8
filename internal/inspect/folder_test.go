package inspect_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/durable-go/durable/internal/durability"
	"github.com/durable-go/durable/internal/inspect"
	"github.com/durable-go/durable/internal/storage"
	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"
)

// Ensure what inspect reads of the runtime's tables is what storage writes.
func TestLayout(t *testing.T) {
	dir := t.TempDir()
	id := writeObject(t, dir, richObject)
	f := newFolder(t, dir)
	ctx := context.Background()
	o, err := f.Object(ctx, "Room", "lobby")
	if err != nil {
		t.Fatal(err)
	}
	if o.ID != id || o.Name != "lobby" || o.Alarm == nil || !o.Alarm.Equal(richObject.alarm) || o.Size == 0 {
		t.Fatalf("got %+v, want ID %s, name lobby, alarm %v", o, id, richObject.alarm)
	}
	kv, err := f.KVGet(ctx, "Room", id, []string{"profile", "count", "missing"})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(kv)
	want := `[{"key":"count","value":3,"size":1},{"key":"profile","value":{"at":"2025-01-02T03:04:05.000000006Z","nick":"alice"},"size":48}]`
	if string(got) != want {
		t.Fatalf("KVGet:\ngot  %s\nwant %s", got, want)
	}
}

// TestLayout1: a database of layout 1 (the runtime's rows in a table of
// their own, as earlier versions wrote it, never opened by the runtime
// since) reads as the same object.
func TestLayout1(t *testing.T) {
	dir := t.TempDir()
	id := writeObject(t, dir, richObject)
	ctx := context.Background()
	f := newFolder(t, dir)
	want := exportJSON(t, f, "Room", "lobby")
	f.Close()

	c, err := storage.OpenConn(dbPath(dir, "Room", id), sqlite.OpenReadWrite)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		"CREATE TABLE _durable_meta (key TEXT PRIMARY KEY NOT NULL, value NOT NULL) WITHOUT ROWID",
		"INSERT INTO _durable_meta SELECT CAST(key AS TEXT), value FROM _durable_kv WHERE key >= x''",
		"DELETE FROM _durable_kv WHERE key >= x''",
		"PRAGMA user_version = 1",
	} {
		if err := sqlitex.ExecuteTransient(c, q, nil); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	storage.CloseConn(c)

	f = newFolder(t, dir)
	o, err := f.Object(ctx, "Room", "lobby")
	if err != nil {
		t.Fatal(err)
	}
	if o.ID != id || o.Name != "lobby" || o.Alarm == nil || !o.Alarm.Equal(richObject.alarm) {
		t.Fatalf("got %+v, want ID %s, name lobby, alarm %v", o, id, richObject.alarm)
	}
	if got := exportJSON(t, f, "Room", "lobby"); !reflect.DeepEqual(got, want) {
		g, _ := json.MarshalIndent(got, "", " ")
		w, _ := json.MarshalIndent(want, "", " ")
		t.Fatalf("export of layout 1 differs:\ngot  %s\nwant %s", g, w)
	}
	wantCheckOK(t, f, "Room")
}

// wantCheckOK checks the objects of namespace ns ("": all) and fails the
// test for each problem found.
func wantCheckOK(t *testing.T, f *inspect.Folder, ns string) {
	t.Helper()
	results, err := f.Check(context.Background(), ns, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		if !r.OK {
			t.Errorf("check %s: %v", r.Name, r.Problems)
		}
	}
}

func TestFolder_Query(t *testing.T) {
	dir := t.TempDir()
	id := writeObject(t, dir, richObject)
	f := newFolder(t, dir)
	ctx := context.Background()
	path := dbPath(dir, "Room", id)

	t.Run("Read", func(t *testing.T) {
		res, err := f.Query(ctx, "Room", "lobby", inspect.Query{SQL: "SELECT 1; SELECT id, nick, body, at, raw FROM messages ORDER BY id"})
		if err != nil {
			t.Fatal(err)
		}
		got, _ := json.Marshal(res)
		want := `{"columns":["id","nick","body","at","raw"],"rows":[[1,"alice","hi",1.5,{"base64":"AP8="}],[2,"bob",42,2.0,{"base64":""}],[3,"carol",null,{"real":"+Inf"},null]]}`
		if string(got) != want {
			t.Fatalf("got  %s\nwant %s", got, want)
		}
	})
	t.Run("MaxRows", func(t *testing.T) {
		res, err := f.Query(ctx, "Room", "lobby", inspect.Query{SQL: "SELECT * FROM messages", MaxRows: 2})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Rows) != 2 || !res.Truncated {
			t.Fatalf("got %d rows, truncated %v; want 2, true", len(res.Rows), res.Truncated)
		}
	})
	// Writes are refused by SQLite's read-only mode whatever the text
	// looks like (a CTE, a PRAGMA, a write hidden after a SELECT), and the
	// files stay exactly as they were.
	t.Run("RefusesWrites", func(t *testing.T) {
		before := fileState(t, path)
		for _, q := range []string{
			"INSERT INTO messages (nick) VALUES ('mallory')",
			"WITH x AS (SELECT 1) DELETE FROM messages",
			"SELECT 1; UPDATE tags SET n = 0",
			"DROP TABLE plain",
			"PRAGMA user_version = 7",
			"CREATE TABLE t (a)",
		} {
			_, err := f.Query(ctx, "Room", "lobby", inspect.Query{SQL: q})
			if !errors.Is(err, inspect.ErrReadOnly) {
				t.Errorf("%s: got %v, want ErrReadOnly", q, err)
			}
		}
		if after := fileState(t, path); after != before {
			t.Fatalf("files changed:\nbefore %s\nafter  %s", before, after)
		}
	})
	t.Run("RefusesAttach", func(t *testing.T) {
		_, err := f.Query(ctx, "Room", "lobby", inspect.Query{SQL: "ATTACH '" + filepath.Join(dir, "x.db") + "' AS x"})
		if !errors.Is(err, inspect.ErrForbidden) {
			t.Fatalf("got %v, want ErrForbidden", err)
		}
	})
	t.Run("Write", func(t *testing.T) {
		res, err := f.Query(ctx, "Room", "lobby", inspect.Query{SQL: "UPDATE tags SET n = n + 10 RETURNING tag, n", Write: true})
		if err != nil {
			t.Fatal(err)
		}
		if res.Changes != 2 || len(res.Rows) != 2 {
			t.Fatalf("got %+v, want 2 changes and 2 rows", res)
		}
		res, err = f.Query(ctx, "Room", "lobby", inspect.Query{SQL: "SELECT sum(n) FROM tags"})
		if err != nil {
			t.Fatal(err)
		}
		if got := res.Rows[0][0].V; got != int64(23) {
			t.Fatalf("sum after write: got %v, want 23", got)
		}
	})
	t.Run("WriteKeepsRestrictions", func(t *testing.T) {
		_, err := f.Query(ctx, "Room", "lobby", inspect.Query{SQL: "DELETE FROM _durable_kv", Write: true})
		if !errors.Is(err, inspect.ErrForbidden) {
			t.Fatalf("got %v, want ErrForbidden", err)
		}
	})
	t.Run("NotFound", func(t *testing.T) {
		_, err := f.Query(ctx, "Room", "nobody", inspect.Query{SQL: "SELECT 1"})
		if !errors.Is(err, inspect.ErrNotFound) {
			t.Fatalf("got %v, want ErrNotFound", err)
		}
		_, err = f.Query(ctx, "Room", "nobody", inspect.Query{SQL: "CREATE TABLE t (a)", Write: true})
		if !errors.Is(err, inspect.ErrNotFound) {
			t.Fatalf("write: got %v, want ErrNotFound", err)
		}
		if _, err := os.Stat(dbPath(dir, "Room", idOf(t, "Room", "nobody"))); !os.IsNotExist(err) {
			t.Fatalf("a failed write created the object: %v", err)
		}
	})
}

func TestFolder_List(t *testing.T) {
	dir := t.TempDir()
	writeObject(t, dir, richObject)
	writeObject(t, dir, object{ns: "Room", name: "quiet"})
	writeObject(t, dir, object{ns: "Counter", name: "a", sql: []string{"CREATE TABLE c (v)"}, kv: map[string]any{"a/1": 1, "a/2": 2, "b/1": 3}})
	os.MkdirAll(filepath.Join(dir, ".spares"), 0o755)
	os.WriteFile(filepath.Join(dir, "Room", "zz.txt"), []byte("not an object"), 0o644)
	f := newFolder(t, dir)
	ctx := context.Background()

	nss, err := f.Namespaces(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(nss) != 2 || nss[0].Name != "Counter" || nss[0].Objects != 1 || nss[1].Name != "Room" || nss[1].Objects != 2 {
		t.Fatalf("Namespaces: got %+v", nss)
	}
	objs, err := f.Objects(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, o := range objs {
		names = append(names, o.Namespace+"/"+o.Name)
	}
	if len(objs) != 3 {
		t.Fatalf("Objects: got %v", names)
	}
	if _, err := f.Objects(ctx, "Nope"); !errors.Is(err, inspect.ErrNotFound) {
		t.Fatalf("Objects of a missing namespace: got %v, want ErrNotFound", err)
	}
	if _, err := f.Objects(ctx, "../etc"); !errors.Is(err, inspect.ErrInvalid) {
		t.Fatalf("Objects of a bad namespace: got %v, want ErrInvalid", err)
	}
	alarms, err := f.Alarms(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(alarms) != 1 || alarms[0].Name != "lobby" || !alarms[0].At.Equal(richObject.alarm) {
		t.Fatalf("Alarms: got %+v", alarms)
	}
	kv, err := f.KVList(ctx, "Counter", "a", inspect.KVList{Prefix: "a/", Reverse: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(kv) != 2 || kv[0].Key != "a/2" || string(kv[0].Value) != "2" {
		t.Fatalf("KVList: got %+v", kv)
	}
	kv, err = f.KVList(ctx, "Counter", "a", inspect.KVList{StartAfter: "a/1", Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(kv) != 1 || kv[0].Key != "a/2" {
		t.Fatalf("KVList after a/1: got %+v", kv)
	}
}

// exportJSON returns the JSON export of an object, without its identity.
func exportJSON(t testing.TB, api inspect.API, ns, ref string) inspect.Dump {
	t.Helper()
	var buf bytes.Buffer
	if err := api.Export(context.Background(), ns, ref, inspect.FormatJSON, &buf); err != nil {
		t.Fatal(err)
	}
	var d inspect.Dump
	if err := json.Unmarshal(buf.Bytes(), &d); err != nil {
		t.Fatal(err)
	}
	d.ID, d.Name, d.Meta = "", "", nil
	return d
}

// Ensure export then import rebuilds an object exactly, in both formats:
// same schema, same rows with their rowids and types, same AUTOINCREMENT
// counters, same KV bytes, same alarm.
func TestFolder_ExportImport(t *testing.T) {
	for _, format := range []inspect.Format{inspect.FormatSQLite, inspect.FormatJSON} {
		t.Run(string(format), func(t *testing.T) {
			dir := t.TempDir()
			writeObject(t, dir, richObject)
			writeObject(t, dir, object{ns: "Room", name: "copy", sql: []string{"CREATE TABLE old (x)"}, kv: map[string]any{"stale": 1}})
			f := newFolder(t, dir)
			ctx := context.Background()
			var buf bytes.Buffer
			if err := f.Export(ctx, "Room", "lobby", format, &buf); err != nil {
				t.Fatal(err)
			}
			res, err := f.Import(ctx, "Room", "copy", format, bytes.NewReader(buf.Bytes()))
			if err != nil {
				t.Fatal(err)
			}
			if res.Name != "copy" || res.Tables != 6 || res.Rows != 11 || res.KV != 4 || res.Alarm == nil {
				t.Fatalf("ImportResult: got %+v", res)
			}
			want, got := exportJSON(t, f, "Room", "lobby"), exportJSON(t, f, "Room", "copy")
			if !reflect.DeepEqual(got, want) {
				g, _ := json.MarshalIndent(got, "", " ")
				w, _ := json.MarshalIndent(want, "", " ")
				t.Fatalf("imported object differs:\ngot  %s\nwant %s", g, w)
			}
			// The import is an object like any other: its name, its alarm
			// in the index, a clean check.
			o, err := f.Object(ctx, "Room", "copy")
			if err != nil {
				t.Fatal(err)
			}
			if o.Name != "copy" || o.Alarm == nil || !o.Alarm.Equal(richObject.alarm) {
				t.Fatalf("imported object: %+v", o)
			}
			alarms, err := f.Alarms(ctx)
			if err != nil || len(alarms) != 2 {
				t.Fatalf("Alarms after import: %+v, %v", alarms, err)
			}
			wantCheckOK(t, f, "")
			// The trigger and the full-text index work in the copy.
			if _, err := f.Query(ctx, "Room", "copy", inspect.Query{SQL: "INSERT INTO plain VALUES (1, 2)", Write: true}); err != nil {
				t.Fatal(err)
			}
			r, err := f.Query(ctx, "Room", "copy", inspect.Query{SQL: "SELECT (SELECT n FROM tags WHERE tag = 'go'), (SELECT title FROM docs WHERE docs MATCH 'second')"})
			if err != nil {
				t.Fatal(err)
			}
			if r.Rows[0][0].V != int64(2) || r.Rows[0][1].V != "two" {
				t.Fatalf("trigger or fts5 in the copy: got %v", r.Rows[0])
			}
		})
	}
}

func TestFolder_ImportRejects(t *testing.T) {
	dir := t.TempDir()
	writeObject(t, dir, richObject)
	f := newFolder(t, dir)
	ctx := context.Background()
	for name, in := range map[string]struct {
		format inspect.Format
		data   string
	}{
		"not sqlite":     {inspect.FormatSQLite, "hello"},
		"not json":       {inspect.FormatJSON, "{"},
		"wrong version":  {inspect.FormatJSON, `{"format":"v0"}`},
		"attach":         {inspect.FormatJSON, `{"format":"durable-object/v1","schema":[{"type":"table","name":"t","sql":"ATTACH 'x' AS y"}]}`},
		"two statements": {inspect.FormatJSON, `{"format":"durable-object/v1","schema":[{"type":"table","name":"t","sql":"CREATE TABLE t (a); DROP TABLE t"}]}`},
		"bad columns":    {inspect.FormatJSON, `{"format":"durable-object/v1","schema":[{"type":"table","name":"t","sql":"CREATE TABLE t (a)"}],"tables":[{"name":"t","columns":["b"],"rows":[[1]]}]}`},
	} {
		_, err := f.Import(ctx, "Room", "lobby", in.format, strings.NewReader(in.data))
		if !errors.Is(err, inspect.ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", name, err)
		}
	}
	// Nothing was touched.
	if got := exportJSON(t, f, "Room", "lobby"); len(got.Tables) != 7 || len(got.KV) != 4 {
		t.Fatalf("object changed by refused imports: %d tables, %d keys", len(got.Tables), len(got.KV))
	}
}

func TestFolder_Check(t *testing.T) {
	dir := t.TempDir()
	id := writeObject(t, dir, richObject)
	writeObject(t, dir, object{ns: "Room", name: "fine"})
	lost := writeObject(t, dir, object{ns: "Room", name: "lost"})
	// An alarm the index does not announce: set behind the scheduler's back.
	g := durability.New(durability.Config{Mode: durability.NoSync})
	db, err := storage.Open(dbPath(dir, "Room", lost), storage.Options{Durability: g})
	if err != nil {
		t.Fatal(err)
	}
	db.SetAlarm(time.Now().Add(time.Hour))
	if _, err := db.Commit(); err != nil {
		t.Fatal(err)
	}
	db.Close()
	g.Close()
	// Damage a page of the rich object.
	path := dbPath(dir, "Room", id)
	damage(t, path)

	f := newFolder(t, dir)
	var progress []int
	results, err := f.Check(context.Background(), "Room", func(done, total int) { progress = append(progress, done, total) })
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(progress, []int{0, 3, 1, 3, 2, 3, 3, 3}) {
		t.Errorf("progress: got %v", progress)
	}
	verdict := map[string]inspect.CheckResult{}
	for _, r := range results {
		verdict[r.ID] = r
	}
	if r := verdict[id]; r.OK || len(r.Problems) == 0 {
		t.Errorf("damaged object: got %+v, want problems", r)
	}
	if r := verdict[idOf(t, "Room", "fine")]; !r.OK {
		t.Errorf("fine object: got %+v", r)
	}
	if r := verdict[lost]; r.OK || !strings.Contains(strings.Join(r.Problems, " "), "not announced") {
		t.Errorf("unannounced alarm: got %+v", r)
	}
}

// damage folds the WAL into the database file, then overwrites the page
// header of every page but the first.
func damage(t testing.TB, path string) {
	t.Helper()
	checkpoint(t, path)
	fl, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fl.Close()
	st, _ := fl.Stat()
	if st.Size() < 3*4096 {
		t.Fatalf("database too small to damage: %d", st.Size())
	}
	for off := int64(4096); off < st.Size(); off += 4096 {
		if _, err := fl.WriteAt(bytes.Repeat([]byte{0xA5}, 12), off); err != nil {
			t.Fatal(err)
		}
	}
}

func TestOpenFolder_Locked(t *testing.T) {
	dir := t.TempDir()
	lf, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	_, err = inspect.OpenFolder(inspect.Config{Dir: dir, Resolve: resolve})
	if !errors.Is(err, inspect.ErrLocked) {
		t.Fatalf("got %v, want ErrLocked", err)
	}
	// And while the CLI holds it, the runtime's exclusive lock fails.
	syscall.Flock(int(lf.Fd()), syscall.LOCK_UN)
	f := newFolder(t, dir)
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); !errors.Is(err, syscall.EWOULDBLOCK) {
		t.Fatalf("runtime lock while the folder is open: got %v, want EWOULDBLOCK", err)
	}
	f.Close()
	if _, err := inspect.OpenFolder(inspect.Config{Dir: filepath.Join(dir, "missing"), Resolve: resolve}); !errors.Is(err, inspect.ErrNotFound) {
		t.Fatalf("missing folder: got %v, want ErrNotFound", err)
	}
}

func TestBackup(t *testing.T) {
	dir := t.TempDir()
	writeObject(t, dir, richObject)
	writeObject(t, dir, object{ns: "Counter", name: "a", sql: []string{"CREATE TABLE c (v)", "INSERT INTO c VALUES (1)"}})
	f := newFolder(t, dir)
	ctx := context.Background()
	dst := filepath.Join(t.TempDir(), "backup")
	var last [2]int
	res, err := inspect.Backup(ctx, f, dst, func(done, total int) { last = [2]int{done, total} })
	if err != nil {
		t.Fatal(err)
	}
	if res.Objects != 2 || res.Alarms != 1 || last != [2]int{2, 2} {
		t.Fatalf("got %+v, progress %v", res, last)
	}
	if _, err := inspect.Backup(ctx, f, dst, nil); !errors.Is(err, inspect.ErrExists) {
		t.Fatalf("backup into a non-empty folder: got %v, want ErrExists", err)
	}
	b := newFolder(t, dst)
	for _, ref := range [][2]string{{"Room", "lobby"}, {"Counter", "a"}} {
		if got, want := exportJSON(t, b, ref[0], ref[1]), exportJSON(t, f, ref[0], ref[1]); !reflect.DeepEqual(got, want) {
			t.Errorf("%v differs in the backup", ref)
		}
	}
	alarms, err := b.Alarms(ctx)
	if err != nil || len(alarms) != 1 {
		t.Fatalf("alarms of the backup: %+v, %v", alarms, err)
	}
	results, err := b.Check(ctx, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		if !r.OK {
			t.Errorf("backup check %s: %v", r.ID, r.Problems)
		}
	}
	// Reading left no -shm file behind.
	matches, _ := filepath.Glob(filepath.Join(dst, "*", "*", "*-shm"))
	if len(matches) > 0 {
		t.Errorf("reads left %v", matches)
	}
}
