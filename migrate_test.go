package durable_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/durable-go/durable"
	"github.com/durable-go/durable/internal/clock"
)

var migrateCrashKills = flag.Int("migratecrash.kills", 16, "SIGKILLs in TestMigrate_CrashLeavesBeforeOrAfter")

// Item is the object of the migration tests: a stored value and an
// alarm that records, in the env, the namespace it fired in.
type Item struct {
	st  *durable.State
	env *itemEnv
}

type itemEnv struct {
	mu    sync.Mutex
	fired map[string]string // ID -> namespace the alarm fired in
}

func newItemEnv() *itemEnv { return &itemEnv{fired: map[string]string{}} }

func newItem(st *durable.State, env *itemEnv) (*Item, error) { return &Item{st: st, env: env}, nil }

func (it *Item) Set(ctx context.Context, v int) error { return it.st.Storage().Put("v", v) }

// Value returns the stored value, or -1 if none.
func (it *Item) Value(ctx context.Context) (int, error) {
	v, ok, err := durable.Get[int](it.st.Storage(), "v")
	if !ok {
		return -1, err
	}
	return v, err
}

func (it *Item) SetAlarm(ctx context.Context, at time.Time) error {
	return it.st.Storage().SetAlarm(at)
}

func (it *Item) Alarm(ctx context.Context, info durable.AlarmInfo) error {
	it.env.mu.Lock()
	it.env.fired[it.st.ID().String()] = it.st.Namespace()
	it.env.mu.Unlock()
	return nil
}

func (e *itemEnv) firedIn(ns string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, in := range e.fired {
		if in == ns {
			n++
		}
	}
	return n
}

func migrations(ms ...durable.Migration) *durable.Config { return &durable.Config{Migrations: ms} }

var (
	migV1      = durable.Migration{Tag: "v1", NewSQLiteClasses: []string{"Room", "Scratch"}}
	migRename  = durable.Migration{Tag: "v2", RenamedClasses: []durable.RenamedClass{{From: "Room", To: "ChatRoom"}}}
	migCrashV2 = durable.Migration{Tag: "v2", RenamedClasses: []durable.RenamedClass{{From: "Room", To: "ChatRoom"}}, DeletedClasses: []string{"Scratch"}}
)

// migOpts are the options of the migration tests' runtimes.
func migOpts(dir string, cfg *durable.Config, fc *clock.Fake) durable.Options {
	return durable.Options{Dir: dir, Config: cfg, Durability: durable.NoSync, Clock: fc, IdleTimeout: noEviction}
}

// fill makes n objects of ns named prefix0..prefix{n-1} holding their
// number, sets an alarm at t0+1s on every tenth, and returns their ID
// strings.
func fill[T any](t testing.TB, ns *durable.Namespace[T], prefix string, n int, set func(*durable.Stub[T], int) error, alarm func(*durable.Stub[T]) error) []string {
	t.Helper()
	ids := make([]string, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	work := make(chan int)
	for range 16 {
		wg.Go(func() {
			for i := range work {
				stub := ns.GetByName(prefix + strconv.Itoa(i))
				ids[i] = stub.ID().String()
				if err := set(stub, i); err != nil {
					errs <- err
					continue
				}
				if i%10 == 0 {
					if err := alarm(stub); err != nil {
						errs <- err
					}
				}
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return ids
}

func fillItems(t testing.TB, ns *durable.Namespace[Item], prefix string, n int) []string {
	ctx := context.Background()
	return fill(t, ns, prefix, n,
		func(s *durable.Stub[Item], i int) error { return durable.Do1(ctx, s, (*Item).Set, i) },
		func(s *durable.Stub[Item]) error { return durable.Do1(ctx, s, (*Item).SetAlarm, t0.Add(time.Second)) })
}

// checkItems checks that every ID string is valid in ns, that the object
// holds its number, and that names still give the same IDs.
func checkItems(t testing.TB, ns *durable.Namespace[Item], prefix string, ids []string) {
	t.Helper()
	for i, s := range ids {
		id, err := ns.IDFromString(s)
		if err != nil {
			t.Fatalf("%s: ID %d: %v", ns.Name(), i, err)
		}
		v, err := durable.Call0(context.Background(), ns.Get(id), (*Item).Value)
		if err != nil || v != i {
			t.Fatalf("%s: object %d holds %d, %v; want %d", ns.Name(), i, v, err, i)
		}
		byName, err := ns.IDFromName(prefix + strconv.Itoa(i))
		if err != nil || byName.String() != s {
			t.Fatalf("%s: IDFromName(%s%d) = %v, %v; want %s", ns.Name(), prefix, i, byName, err, s)
		}
	}
}

// fireAll advances the fake clock until want alarms have fired, all in
// namespace ns. A delivery that fails is retried after a backoff (alarms
// fire at least once, not necessarily at the first attempt), so it
// advances in steps, logging the scheduler's counters if a retry was
// needed.
func fireAll(t testing.TB, rt *durable.Runtime, fc *clock.Fake, env *itemEnv, ns string, want int) {
	t.Helper()
	for step := 0; step < 30 && env.firedIn(ns) < want; step++ {
		if step > 0 {
			t.Logf("%d of %d alarms fired after %d s: %+v", env.firedIn(ns), want, 2*step, rt.AlarmStats())
		}
		advance(t, rt, fc, 2*time.Second)
	}
	env.mu.Lock()
	all := len(env.fired)
	env.mu.Unlock()
	if got := env.firedIn(ns); got != want || all != want {
		t.Fatalf("%d alarms fired in %s, %d in all; want %d (%+v)", got, ns, all, want, rt.AlarmStats())
	}
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// TestMigrate_RenameKeepsData renames a class of 1,000 objects and checks
// that every object keeps its data, that ID strings of the old name stay
// valid, that alarms fire under the new name, and that running the same
// migrations again changes nothing.
func TestMigrate_RenameKeepsData(t *testing.T) {
	const objects = 1000
	dir := t.TempDir()
	fc := clock.NewFake(t0)
	env := newItemEnv()

	rt := openRuntime(t, migOpts(dir, migrations(migV1), fc))
	room := durable.MustRegister(rt, "Room", newItem, env)
	ids := fillItems(t, room, "room-", objects)
	unique := room.NewUniqueID()
	if err := durable.Do1(t.Context(), room.Get(unique), (*Item).Set, 7); err != nil {
		t.Fatal(err)
	}
	if err := rt.Close(); err != nil {
		t.Fatal(err)
	}

	rt = openRuntime(t, migOpts(dir, migrations(migV1, migRename), fc))
	if got := rt.AppliedMigrations(); !slices.Equal(got, []string{"v1", "v2"}) {
		t.Fatalf("AppliedMigrations = %v", got)
	}
	_, err := durable.Register(rt, "Room", newItem, env)
	if !errors.Is(err, durable.ErrUndeclaredClass) || !strings.Contains(err.Error(), `renamed to "ChatRoom"`) {
		t.Fatalf("Register(Room) after the rename: got %v, want ErrUndeclaredClass naming ChatRoom", err)
	}
	chat := durable.MustRegister(rt, "ChatRoom", newItem, env)
	checkItems(t, chat, "room-", ids)
	if id, err := chat.IDFromString(unique.String()); err != nil {
		t.Fatalf("unique ID: %v", err)
	} else if v, err := durable.Call0(t.Context(), chat.Get(id), (*Item).Value); err != nil || v != 7 {
		t.Fatalf("unique object holds %d, %v", v, err)
	}
	if exists(filepath.Join(dir, "Room")) || !exists(filepath.Join(dir, "ChatRoom")) {
		t.Fatal("the Room folder was not renamed to ChatRoom")
	}
	if got := rt.AlarmStats().Scheduled; got != objects/10 {
		t.Fatalf("%d alarms scheduled, want %d", got, objects/10)
	}
	fireAll(t, rt, fc, env, "ChatRoom", objects/10)
	if err := rt.Close(); err != nil {
		t.Fatal(err)
	}

	// A re-run is a no-op: the record is not rewritten, the data is there.
	record := filepath.Join(dir, ".migrations.json")
	before, err := os.ReadFile(record)
	if err != nil {
		t.Fatal(err)
	}
	rt = openRuntime(t, migOpts(dir, migrations(migV1, migRename), fc))
	chat = durable.MustRegister(rt, "ChatRoom", newItem, env)
	checkItems(t, chat, "room-", ids[:50])
	after, err := os.ReadFile(record)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Fatal("re-running applied migrations rewrote the record")
	}
	if got := rt.AppliedMigrations(); !slices.Equal(got, []string{"v1", "v2"}) {
		t.Fatalf("AppliedMigrations after a re-run = %v", got)
	}
}

// TestMigrate_DeleteRemovesData deletes a class and checks that its
// objects and alarms are gone, that other classes keep theirs, and that a
// class created again under the name starts empty with new IDs.
func TestMigrate_DeleteRemovesData(t *testing.T) {
	dir := t.TempDir()
	fc := clock.NewFake(t0)
	env := newItemEnv()
	rt := openRuntime(t, migOpts(dir, migrations(migV1), fc))
	room := durable.MustRegister(rt, "Room", newItem, env)
	scratch := durable.MustRegister(rt, "Scratch", newItem, env)
	roomIDs := fillItems(t, room, "room-", 30)
	scratchIDs := fillItems(t, scratch, "s-", 40)
	rt.Close()

	// Deleting a class a binding still names is refused.
	withBinding := migrations(migV1, durable.Migration{Tag: "v2", DeletedClasses: []string{"Scratch"}})
	withBinding.Bindings = []durable.Binding{{Name: "SCRATCH", ClassName: "Scratch"}}
	if _, err := durable.Open(migOpts(dir, withBinding, fc)); !errors.Is(err, durable.ErrInvalidConfig) {
		t.Fatalf("delete with a binding left: got %v, want ErrInvalidConfig", err)
	}
	if !exists(filepath.Join(dir, "Scratch")) {
		t.Fatal("a refused config deleted data")
	}

	del := durable.Migration{Tag: "v2", DeletedClasses: []string{"Scratch"}}
	rt = openRuntime(t, migOpts(dir, migrations(migV1, del), fc))
	if _, err := durable.Register(rt, "Scratch", newItem, env); !errors.Is(err, durable.ErrUndeclaredClass) || !strings.Contains(err.Error(), "deleted") {
		t.Fatalf("Register(Scratch) after delete: got %v", err)
	}
	if exists(filepath.Join(dir, "Scratch")) || exists(filepath.Join(dir, ".trash")) {
		t.Fatal("the deleted class's folder is still there")
	}
	if got := rt.AlarmStats().Scheduled; got != 3 {
		t.Fatalf("%d alarms scheduled, want 3 (Room's only)", got)
	}
	room = durable.MustRegister(rt, "Room", newItem, env)
	checkItems(t, room, "room-", roomIDs)
	fireAll(t, rt, fc, env, "Room", 3)
	rt.Close()

	// Created again, the class is empty and old ID strings are foreign.
	again := durable.Migration{Tag: "v3", NewSQLiteClasses: []string{"Scratch"}}
	rt = openRuntime(t, migOpts(dir, migrations(migV1, del, again), fc))
	scratch = durable.MustRegister(rt, "Scratch", newItem, env)
	if _, err := scratch.IDFromString(scratchIDs[1]); !errors.Is(err, durable.ErrForeignID) {
		t.Fatalf("old ID string in the re-created class: got %v, want ErrForeignID", err)
	}
	if v, err := durable.Call0(t.Context(), scratch.GetByName("s-1"), (*Item).Value); err != nil || v != -1 {
		t.Fatalf("re-created class: object s-1 holds %d, %v; want nothing", v, err)
	}
}

// TestMigrate_HistoryRefused checks that applied migrations cannot be
// reordered, edited or removed, that each refusal says where and what to
// do, and that it leaves the data folder as it was.
func TestMigrate_HistoryRefused(t *testing.T) {
	dir := t.TempDir()
	fc := clock.NewFake(t0)
	v3 := durable.Migration{Tag: "v3", NewSQLiteClasses: []string{"Lobby"}}
	v4 := durable.Migration{Tag: "v4", NewSQLiteClasses: []string{"Hall"}}
	rt := openRuntime(t, migOpts(dir, migrations(migV1, migRename, v3), fc))
	ids := fillItems(t, durable.MustRegister(rt, "ChatRoom", newItem, newItemEnv()), "c-", 5)
	rt.Close()
	record, _ := os.ReadFile(filepath.Join(dir, ".migrations.json"))

	file := func(body string) *durable.Config {
		cfg, err := durable.ParseConfig("durable.jsonc", []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	for _, tc := range []struct {
		name string
		cfg  *durable.Config
		want string
	}{
		{"reordered", file(`{"migrations": [
  {"tag": "v1", "new_sqlite_classes": ["Room", "Scratch"]},
  {"tag": "v3", "new_sqlite_classes": ["Lobby"]},
  {"tag": "v2", "renamed_classes": [{"from": "Room", "to": "ChatRoom"}]},
]}`), `durable: durable.jsonc:3:3: migrations[1]: migration "v2" was applied as number 2, but the config has it as number 3 (and "v3" as number 2); restore the applied order; add new migrations after the applied ones`},
		{"edited", file(`{"migrations": [
  {"tag": "v1", "new_sqlite_classes": ["Room", "Scratch"]},
  {"tag": "v2", "renamed_classes": [{"from": "Room", "to": "Hall"}]},
  {"tag": "v3", "new_sqlite_classes": ["Lobby"]},
]}`), `durable: durable.jsonc:3:3: migrations[1]: migration "v2" was edited after it was applied (on ` + time.Now().UTC().Format(time.DateOnly) +
			`): it was {"tag":"v2","renamed_classes":[{"from":"Room","to":"ChatRoom"}]}, it is now {"tag":"v2","renamed_classes":[{"from":"Room","to":"Hall"}]}; undo the edit, and make the change in a new migration`},
		{"removed", migrations(migV1, migRename),
			`durable: Config.Migrations: the data folder ` + dir + ` applied migration "v3" (number 3), which the config does not have; restore it`},
		{"replaced", migrations(migV1, durable.Migration{Tag: "v2b", RenamedClasses: migRename.RenamedClasses}, v3),
			`durable: Config.Migrations[1]: the data folder applied migration "v2" as number 2; the config has "v2b" there; restore migration "v2"`},
		{"new one inserted before an applied one", migrations(migV1, migRename, v4, v3),
			`durable: Config.Migrations[2]: migration "v3" was applied as number 3, but the config has it as number 4`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := durable.Open(migOpts(dir, tc.cfg, fc))
			if !errors.Is(err, durable.ErrMigrationHistory) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got  %v\nwant ErrMigrationHistory containing\n     %s", err, tc.want)
			}
			if now, _ := os.ReadFile(filepath.Join(dir, ".migrations.json")); !bytes.Equal(now, record) {
				t.Fatal("a refused config changed the migration record")
			}
		})
	}

	// Reordering the lists inside a migration does not change it; new
	// migrations go after the applied ones.
	same := durable.Migration{Tag: "v1", NewSQLiteClasses: []string{"Scratch", "Room"}}
	rt = openRuntime(t, migOpts(dir, migrations(same, migRename, v3, v4), fc))
	if got := rt.AppliedMigrations(); !slices.Equal(got, []string{"v1", "v2", "v3", "v4"}) {
		t.Fatalf("AppliedMigrations = %v", got)
	}
	checkItems(t, durable.MustRegister(rt, "ChatRoom", newItem, newItemEnv()), "c-", ids)
	durable.MustRegister(rt, "Lobby", newItem, newItemEnv())
	durable.MustRegister(rt, "Hall", newItem, newItemEnv())
}

// TestMigrate_ZeroConfig checks that without migrations nothing changes:
// any namespace registers, nothing is written; and that adding migrations
// later requires declaring the classes that hold data, which are then
// adopted with their IDs.
func TestMigrate_ZeroConfig(t *testing.T) {
	dir := t.TempDir()
	fc := clock.NewFake(t0)
	rt := openRuntime(t, migOpts(dir, nil, fc))
	ids := fillItems(t, durable.MustRegister(rt, "Counter", newItem, newItemEnv()), "n-", 12)
	durable.MustRegister(rt, "Anything", newItem, newItemEnv())
	rt.Close()
	// Bindings alone do not bring migrations into force.
	cfg := &durable.Config{Bindings: []durable.Binding{{Name: "COUNTERS", ClassName: "Counter"}}}
	rt = openRuntime(t, migOpts(dir, cfg, fc))
	durable.MustRegister(rt, "Counter", newItem, newItemEnv())
	durable.MustRegister(rt, "Other", newItem, newItemEnv())
	ns, err := durable.Lookup[Item](rt, "COUNTERS")
	if err != nil {
		t.Fatal(err)
	}
	checkItems(t, ns, "n-", ids)
	rt.Close()
	if exists(filepath.Join(dir, ".migrations.json")) {
		t.Fatal("a runtime without migrations wrote a migration record")
	}

	// Migrations that do not declare Counter, which holds data: refused,
	// before anything is applied.
	_, err = durable.Open(migOpts(dir, migrations(durable.Migration{Tag: "v1", NewSQLiteClasses: []string{"Room"}}), fc))
	want := `durable: Config.Migrations: the data folder ` + dir + ` holds 12 objects of class "Counter", which no migration declares; add a migration with "new_sqlite_classes": ["Counter"]`
	if !errors.Is(err, durable.ErrUndeclaredClass) || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("got  %v\nwant %s...", err, want)
	}
	if exists(filepath.Join(dir, ".migrations.json")) {
		t.Fatal("a refused config applied a migration")
	}
	// Declared, the class is adopted: same data, same IDs.
	rt = openRuntime(t, migOpts(dir, migrations(durable.Migration{Tag: "v1", NewSQLiteClasses: []string{"Room", "Counter"}}), fc))
	checkItems(t, durable.MustRegister(rt, "Counter", newItem, newItemEnv()), "n-", ids)
	durable.MustRegister(rt, "Room", newItem, newItemEnv())
	// Now migrations are in force.
	if _, err := durable.Register(rt, "Anything", newItem, newItemEnv()); !errors.Is(err, durable.ErrUndeclaredClass) ||
		!strings.Contains(err.Error(), `add a migration with "new_sqlite_classes": ["Anything"]`) {
		t.Fatalf("Register of an undeclared class: got %v", err)
	}
	rt.Close()

	// Without a Config, the data folder's record stays in force.
	rt = openRuntime(t, migOpts(dir, nil, fc))
	checkItems(t, durable.MustRegister(rt, "Counter", newItem, newItemEnv()), "n-", ids[:3])
	if _, err := durable.Register(rt, "Anything", newItem, newItemEnv()); !errors.Is(err, durable.ErrUndeclaredClass) ||
		!strings.Contains(err.Error(), "Options.Config is nil") {
		t.Fatalf("Register of an undeclared class without Config: got %v", err)
	}
}

// TestMigrate_NilConfigKeepsRenamedIDs checks that a runtime opened
// without a Config after a rename still accepts the old IDs.
func TestMigrate_NilConfigKeepsRenamedIDs(t *testing.T) {
	dir := t.TempDir()
	fc := clock.NewFake(t0)
	rt := openRuntime(t, migOpts(dir, migrations(migV1), fc))
	ids := fillItems(t, durable.MustRegister(rt, "Room", newItem, newItemEnv()), "r-", 5)
	rt.Close()
	rt = openRuntime(t, migOpts(dir, migrations(migV1, migRename), fc))
	rt.Close()
	rt = openRuntime(t, migOpts(dir, nil, fc))
	checkItems(t, durable.MustRegister(rt, "ChatRoom", newItem, newItemEnv()), "r-", ids)
	if _, err := durable.Register(rt, "Room", newItem, newItemEnv()); !errors.Is(err, durable.ErrUndeclaredClass) {
		t.Fatalf("Register(Room): got %v", err)
	}
}

// TestMigrate_Transfer moves a class from another program's data folder
// (one without migrations) and checks data, IDs, alarms, that the source
// can no longer use the class, and that a source in use is refused.
func TestMigrate_Transfer(t *testing.T) {
	base := t.TempDir()
	src := filepath.Join(base, "old-app-data")
	dir := filepath.Join(base, "new-app-data")
	fc := clock.NewFake(t0)
	rt := openRuntime(t, migOpts(src, nil, fc))
	ids := fillItems(t, durable.MustRegister(rt, "Counter", newItem, newItemEnv()), "k-", 40)
	keepIDs := fillItems(t, durable.MustRegister(rt, "Keep", newItem, newItemEnv()), "p-", 10)

	// The source is in use: refused, nothing changed.
	cfg, err := durable.ParseConfig(filepath.Join(base, "durable.jsonc"), []byte(`{
  "migrations": [
    {"tag": "v1", "transferred_classes": [{"from": "Counter", "from_dir": "old-app-data", "to": "Tally"}]},
  ],
}`))
	if err != nil {
		t.Fatal(err)
	}
	_, err = durable.Open(migOpts(dir, cfg, fc))
	if !errors.Is(err, durable.ErrMigration) || !errors.Is(err, durable.ErrLocked) || !strings.Contains(err.Error(), "durable.jsonc:3:75: migrations[0].transferred_classes[0].from_dir") {
		t.Fatalf("transfer from a folder in use: got %v", err)
	}
	rt.Close()

	rt = openRuntime(t, migOpts(dir, cfg, fc))
	env := newItemEnv()
	tally := durable.MustRegister(rt, "Tally", newItem, env)
	checkItems(t, tally, "k-", ids)
	if exists(filepath.Join(src, "Counter")) {
		t.Fatal("the class's folder is still in the source")
	}
	fireAll(t, rt, fc, env, "Tally", 4)
	rt.Close()

	// The source program can no longer use the class; its other classes
	// are untouched, and it still runs without migrations.
	rt = openRuntime(t, migOpts(src, nil, clock.NewFake(t0)))
	_, err = durable.Register(rt, "Counter", newItem, newItemEnv())
	if !errors.Is(err, durable.ErrUndeclaredClass) || !strings.Contains(err.Error(), `transferred to the data folder `+dir+` (as class "Tally")`) {
		t.Fatalf("Register(Counter) in the source: got %v", err)
	}
	checkItems(t, durable.MustRegister(rt, "Keep", newItem, newItemEnv()), "p-", keepIDs)
	durable.MustRegister(rt, "Fresh", newItem, newItemEnv())
	if got := rt.AlarmStats().Scheduled; got != 1 {
		t.Fatalf("the source has %d alarms scheduled, want 1 (Keep's)", got)
	}
}

// TestMigrate_Bindings checks Lookup and CheckBindings.
func TestMigrate_Bindings(t *testing.T) {
	cfg, err := durable.ParseConfig("durable.jsonc", []byte(`{
  "durable_objects": {
    "bindings": [
      {"name": "ROOMS", "class_name": "Room"},
      {"name": "SCRATCH", "class_name": "Scratch"},
    ],
  },
  "migrations": [{"tag": "v1", "new_sqlite_classes": ["Room", "Scratch"]}],
}`))
	if err != nil {
		t.Fatal(err)
	}
	rt := openRuntime(t, migOpts(t.TempDir(), cfg, clock.NewFake(t0)))
	room := durable.MustRegister(rt, "Room", newItem, newItemEnv())
	err = rt.CheckBindings()
	if !errors.Is(err, durable.ErrNotRegistered) || err.Error() != `durable: durable.jsonc:5:41: durable_objects.bindings[1].class_name: binding "SCRATCH" names class "Scratch", which is not registered; call durable.Register(rt, "Scratch", ...), or remove the binding` {
		t.Fatalf("CheckBindings: %v", err)
	}
	if _, err := durable.Lookup[Item](rt, "SCRATCH"); !errors.Is(err, durable.ErrNotRegistered) {
		t.Fatalf("Lookup of an unregistered class: %v", err)
	}
	ns, err := durable.Lookup[Item](rt, "ROOMS")
	if err != nil || ns.Name() != "Room" {
		t.Fatalf("Lookup(ROOMS) = %v, %v", ns, err)
	}
	if err := durable.Do1(t.Context(), ns.GetByName("a"), (*Item).Set, 3); err != nil {
		t.Fatal(err)
	}
	if v, err := durable.Call0(t.Context(), room.GetByName("a"), (*Item).Value); err != nil || v != 3 {
		t.Fatalf("through the binding and the namespace: %d, %v", v, err)
	}
	if _, err := durable.Lookup[Counter](rt, "ROOMS"); err == nil || !strings.Contains(err.Error(), "not *durable_test.Counter") {
		t.Fatalf("Lookup with the wrong type: %v", err)
	}
	if _, err := durable.Lookup[Item](rt, "NOPE"); !errors.Is(err, durable.ErrNoBinding) {
		t.Fatalf("Lookup of an unknown binding: %v", err)
	}
	durable.MustRegister(rt, "Scratch", newItem, newItemEnv())
	if err := rt.CheckBindings(); err != nil {
		t.Fatal(err)
	}
}

// TestMigrateCrashChild is the child process of the crash test: it opens
// the data folder with migration v2 and prints each step of it; it stops
// (blocks) at step $DURABLE_MIGCRASH_STOP and waits to be killed.
func TestMigrateCrashChild(t *testing.T) {
	dir := os.Getenv("DURABLE_MIGCRASH_DIR")
	if dir == "" {
		t.Skip("child of TestMigrate_CrashLeavesBeforeOrAfter")
	}
	stop, _ := strconv.Atoi(os.Getenv("DURABLE_MIGCRASH_STOP"))
	delay, _ := time.ParseDuration(os.Getenv("DURABLE_MIGCRASH_DELAY"))
	n := 0
	durable.SetMigrationHook(func(point string) {
		fmt.Printf("point %d %s\n", n, point)
		if n == stop {
			time.Sleep(time.Hour) // until killed
		}
		n++
		if delay > 0 {
			time.Sleep(time.Duration(rand.Int64N(int64(delay))))
		}
	})
	_, err := durable.Open(migOpts(dir, migrations(migV1, migCrashV2), clock.NewFake(t0)))
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	fmt.Println("opened")
	time.Sleep(time.Hour) // until killed
}

// crashPoints are the steps of migration v2 of the crash test, in order;
// "committed" is the first after its commit point.
var crashPoints = []string{"plan", "committed", "rename-folder", "rename-alarms", "trash-folder", "delete-alarms", "applied"}

// TestMigrate_CrashLeavesBeforeOrAfter kills (SIGKILL) a process in the
// middle of a migration (a rename and a deletion), at each step and at
// random times, then checks that the data folder is either before the
// migration (every object and alarm where it was) or after it (every
// object and alarm under its new name, the deleted class gone), never in
// between.
func TestMigrate_CrashLeavesBeforeOrAfter(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test skipped in -short mode")
	}
	const rooms, scratches = 60, 20
	template := t.TempDir()
	fc := clock.NewFake(t0)
	rt := openRuntime(t, migOpts(template, migrations(migV1), fc))
	roomIDs := fillItems(t, durable.MustRegister(rt, "Room", newItem, newItemEnv()), "r-", rooms)
	scratchIDs := fillItems(t, durable.MustRegister(rt, "Scratch", newItem, newItemEnv()), "s-", scratches)
	rt.Close()

	outcomes := map[string]int{}
	rng := rand.New(rand.NewPCG(2, uint64(time.Now().UnixNano())))
	for kill := range *migrateCrashKills {
		dir := filepath.Join(t.TempDir(), "data")
		copyTree(t, template, dir)
		// Even kills stop at a chosen step; odd ones at a random time,
		// with random pauses between steps.
		stop, delay := -1, time.Duration(0)
		if kill%2 == 0 {
			stop = (kill / 2) % (len(crashPoints) + 1) // len(crashPoints): after Open
		} else {
			delay = 2 * time.Millisecond
		}
		last := runCrashChild(t, dir, stop, delay, time.Duration(rng.IntN(12))*time.Millisecond)

		// Open with the config before the migration: it either succeeds,
		// finding everything as before, or says the migration happened.
		// A child stopped at a step had done every step before it; one
		// killed at a random time may have gone past the last step it
		// reported.
		committed := slices.Index(crashPoints, last) >= slices.Index(crashPoints, "committed") || last == "opened"
		exact := stop >= 0
		rt, err := durable.Open(migOpts(dir, migrations(migV1), clock.NewFake(t0)))
		switch {
		case err == nil:
			if committed {
				t.Fatalf("kill %d after %q: the migration was committed, yet the old config opens", kill, last)
			}
			env := newItemEnv()
			checkItems(t, durable.MustRegister(rt, "Room", newItem, env), "r-", roomIDs)
			checkItems(t, durable.MustRegister(rt, "Scratch", newItem, env), "s-", scratchIDs)
			if got := rt.AlarmStats().Scheduled; got != rooms/10+scratches/10 {
				t.Fatalf("kill %d: before: %d alarms scheduled, want %d", kill, got, rooms/10+scratches/10)
			}
			rt.Close()
			outcomes["before"]++
		case errors.Is(err, durable.ErrMigrationHistory):
			if exact && !committed {
				t.Fatalf("kill %d at %q, before the commit point: the old config is refused: %v", kill, last, err)
			}
			outcomes["after"]++
		default:
			t.Fatalf("kill %d after %q: open with the old config: %v", kill, last, err)
		}

		// Open with the migration: everything is after it.
		fc := clock.NewFake(t0)
		rt = openRuntime(t, migOpts(dir, migrations(migV1, migCrashV2), fc))
		env := newItemEnv()
		checkItems(t, durable.MustRegister(rt, "ChatRoom", newItem, env), "r-", roomIDs)
		if _, err := durable.Register(rt, "Scratch", newItem, env); !errors.Is(err, durable.ErrUndeclaredClass) {
			t.Fatalf("kill %d: Register(Scratch) after its deletion: %v", kill, err)
		}
		for _, gone := range []string{"Room", "Scratch", ".trash", ".migrations.json.tmp"} {
			if exists(filepath.Join(dir, gone)) {
				t.Fatalf("kill %d after %q: %s is still in the data folder", kill, last, gone)
			}
		}
		if got := rt.AlarmStats().Scheduled; got != rooms/10 {
			t.Fatalf("kill %d after %q: %d alarms scheduled, want %d (ChatRoom's)", kill, last, got, rooms/10)
		}
		fireAll(t, rt, fc, env, "ChatRoom", rooms/10)
		rt.Close()
	}
	t.Logf("%d kills: %v", *migrateCrashKills, outcomes)
	if outcomes["before"] == 0 || outcomes["after"] == 0 {
		t.Errorf("the kills did not cover both sides of the commit point: %v", outcomes)
	}
}

// runCrashChild runs the child on dir and kills it with SIGKILL when it
// reaches step stop, or wait after its first step if stop < 0. It returns
// the last step the child reported ("opened" if Open returned).
func runCrashChild(t *testing.T, dir string, stop int, delay, wait time.Duration) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestMigrateCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), "DURABLE_MIGCRASH_DIR="+dir,
		fmt.Sprint("DURABLE_MIGCRASH_STOP=", stop), fmt.Sprint("DURABLE_MIGCRASH_DELAY=", delay))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	last := ""
	var timer <-chan time.Time
	deadline := time.After(60 * time.Second)
	killed := false
	for !killed {
		select {
		case l, ok := <-lines:
			if !ok {
				cmd.Wait()
				t.Fatalf("child exited after %q without being killed", last)
			}
			switch f := strings.Fields(l); {
			case len(f) == 3 && f[0] == "point":
				last = f[2]
				i, _ := strconv.Atoi(f[1])
				if i == stop {
					cmd.Process.Signal(syscall.SIGKILL)
					killed = true
				} else if stop < 0 && timer == nil {
					timer = time.After(wait)
				}
			case l == "opened":
				last = "opened"
				cmd.Process.Signal(syscall.SIGKILL)
				killed = true
			case strings.HasPrefix(l, "error"):
				cmd.Process.Kill()
				t.Fatalf("child: %s", l)
			}
		case <-timer:
			cmd.Process.Signal(syscall.SIGKILL)
			killed = true
		case <-deadline:
			cmd.Process.Kill()
			t.Fatalf("child made no progress (last step %q)", last)
		}
	}
	// Steps the child reported before it died count too.
	cmd.Wait()
	for l := range lines {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "point" {
			last = f[2]
		} else if l == "opened" {
			last = "opened"
		}
	}
	return last
}

// copyTree copies the data folder src to dst.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(target)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
}
