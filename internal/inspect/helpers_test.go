package inspect_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/durable-go/durable/internal/alarm"
	"github.com/durable-go/durable/internal/codec"
	"github.com/durable-go/durable/internal/durability"
	"github.com/durable-go/durable/internal/inspect"
	"github.com/durable-go/durable/internal/storage"
)

var nsName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]{0,62}$`)
var hexID = regexp.MustCompile(`^[0-9a-f]{64}$`)

// resolve is a stand-in for durable.ResolveID: 64 hex digits are an ID,
// anything else a name hashed into one.
func resolve(ns, ref string) (inspect.Ref, error) {
	if !nsName.MatchString(ns) {
		return inspect.Ref{}, fmt.Errorf("bad namespace %q", ns)
	}
	if hexID.MatchString(ref) {
		return inspect.Ref{Namespace: ns, ID: ref}, nil
	}
	if ref == "" {
		return inspect.Ref{}, fmt.Errorf("empty name")
	}
	sum := sha256.Sum256([]byte(ns + "\x00" + ref))
	return inspect.Ref{Namespace: ns, ID: hex.EncodeToString(sum[:]), Name: ref}, nil
}

func idOf(t testing.TB, ns, name string) string {
	t.Helper()
	r, err := resolve(ns, name)
	if err != nil {
		t.Fatal(err)
	}
	return r.ID
}

func dbPath(dir, ns, id string) string {
	return filepath.Join(dir, ns, id[:2], id+".sqlite")
}

// object describes test content to write into an object's database.
type object struct {
	ns, name string
	sql      []string       // statements run in order
	kv       map[string]any // encoded with the codec
	alarm    time.Time      // zero: none
}

// writeObject creates the object's database through internal/storage, as
// the runtime does, and announces its alarm in the folder's index.
func writeObject(t testing.TB, dir string, o object) string {
	t.Helper()
	id := idOf(t, o.ns, o.name)
	g := durability.New(durability.Config{Mode: durability.NoSync})
	defer g.Close()
	db, err := storage.Open(dbPath(dir, o.ns, id), storage.Options{Durability: g})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.SetMeta("name", o.name); err != nil {
		t.Fatal(err)
	}
	for _, q := range o.sql {
		cur, err := db.Exec(q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		cur.Close()
	}
	for k, v := range o.kv {
		b, err := codec.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Put(k, b); err != nil {
			t.Fatal(err)
		}
	}
	var sched *alarm.Scheduler
	var change *alarm.Change
	if !o.alarm.IsZero() {
		if err := db.SetAlarm(o.alarm); err != nil {
			t.Fatal(err)
		}
		sched, err = alarm.Open(alarm.Config{Path: filepath.Join(dir, ".alarms.sqlite"), NoSync: true, Workers: 1,
			Deliver: func(context.Context, alarm.Delivery) alarm.Result { return alarm.Result{} }})
		if err != nil {
			t.Fatal(err)
		}
		k := alarm.Key{NS: o.ns}
		hex.Decode(k.ID[:], []byte(id))
		if change, err = sched.Prepare(k, o.alarm, true); err != nil {
			t.Fatal(err)
		}
	}
	ticket, err := db.Commit()
	if sched != nil {
		sched.Committed(change, ticket, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := ticket.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if sched != nil {
		if err := sched.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return id
}

// richObject has every kind of content an export must carry.
var richObject = object{
	ns: "Room", name: "lobby",
	sql: []string{
		`CREATE TABLE messages (id INTEGER PRIMARY KEY AUTOINCREMENT, nick TEXT NOT NULL, body, at REAL, raw BLOB)`,
		`INSERT INTO messages (nick, body, at, raw) VALUES ('alice', 'hi', 1.5, x'00ff'), ('bob', 42, 2.0, x''), ('carol', NULL, 9e999, NULL)`,
		`INSERT INTO messages (id, nick, body) VALUES (10, 'dave', 'skipped ids')`,
		`DELETE FROM messages WHERE id = 10`, // the counter stays at 10
		`CREATE TABLE plain (a, b)`,          // rowids must survive
		`INSERT INTO plain (rowid, a, b) VALUES (7, 'x', 1), (3, 'y', -1)`,
		`CREATE TABLE tags (tag TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID`,
		`INSERT INTO tags VALUES ('go', 1), ('sql', 2)`,
		`CREATE TABLE parent (id INTEGER PRIMARY KEY)`,
		`CREATE TABLE child (id INTEGER PRIMARY KEY, parent INTEGER REFERENCES parent(id), twice INTEGER GENERATED ALWAYS AS (id * 2) VIRTUAL)`,
		`INSERT INTO parent VALUES (1)`,
		`INSERT INTO child (id, parent) VALUES (5, 1)`,
		`CREATE INDEX messages_nick ON messages (nick)`,
		`CREATE VIEW nicks AS SELECT DISTINCT nick FROM messages`,
		`CREATE TRIGGER plain_count AFTER INSERT ON plain BEGIN UPDATE tags SET n = n + 1 WHERE tag = 'go'; END`,
		`CREATE VIRTUAL TABLE docs USING fts5 (title, body)`,
		`INSERT INTO docs (title, body) VALUES ('one', 'the first doc'), ('two', 'the second')`,
	},
	kv: map[string]any{
		"count":   int64(3),
		"members": []any{"alice", "bob"},
		"profile": map[string]any{"nick": "alice", "at": time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)},
		"bytes":   []byte{0, 1, 2},
	},
	alarm: time.Date(2099, 6, 7, 8, 9, 10, 11, time.UTC),
}

// newFolder opens dir offline with the test resolver.
func newFolder(t testing.TB, dir string) *inspect.Folder {
	t.Helper()
	f, err := inspect.OpenFolder(inspect.Config{Dir: dir, Resolve: resolve, TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Error(err)
		}
	})
	return f
}

// fileState is a file's content and the presence of its sidecars.
func fileState(t testing.TB, path string) string {
	t.Helper()
	var s string
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		b, err := os.ReadFile(p)
		if os.IsNotExist(err) {
			s += p + ": absent\n"
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		s += fmt.Sprintf("%s: %x\n", p, sum[:8])
	}
	return s
}
