package durable

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/durable-go/durable/internal/alarm"
	"github.com/durable-go/durable/internal/durability"
)

// Files of the migration machinery in the data folder.
const (
	// migrationsFile records the applied migrations, the classes and their
	// ID keys, and the migration in progress, if any. It is replaced
	// atomically (write, fsync, rename, fsync the folder).
	migrationsFile = ".migrations.json"
	// trashDir holds the folders of deleted classes until they are removed.
	trashDir = ".trash"
	// stateVersion is the format of migrationsFile.
	stateVersion = 1
)

// migrateHook, if set (by tests), is called at each step of applying a
// migration, with the step's name.
var migrateHook func(point string)

func migrationPoint(point string) {
	if migrateHook != nil {
		migrateHook(point)
	}
}

// folderState is the content of migrationsFile.
type folderState struct {
	Version int                `json:"version"`
	Applied []appliedMigration `json:"applied,omitempty"`
	// Classes are the classes declared by the applied migrations (or
	// transferred in), with the key their IDs are checked with.
	Classes map[string]classRecord `json:"classes,omitempty"`
	// Gone are the names of classes renamed, deleted or transferred away.
	Gone map[string]goneRecord `json:"gone,omitempty"`
	// RetiredKeys are the ID keys of deleted and transferred-away classes,
	// never given to a new class (old ID strings must not come back to
	// life).
	RetiredKeys []string `json:"retired_keys,omitempty"`
	// Pending is the migration being applied: its steps are idempotent and
	// are run again (then After written) by the next Open if a crash
	// interrupted them. Writing it is the migration's commit point.
	Pending *pendingMigration `json:"pending,omitempty"`
}

type appliedMigration struct {
	Migration Migration `json:"migration"` // canonical form
	AppliedAt time.Time `json:"applied_at"`
}

type classRecord struct {
	Key   string `json:"key"`   // hex of the namespace's ID key
	Since string `json:"since"` // tag of the migration that declared it under this name
}

type goneRecord struct {
	How string `json:"how"`           // "renamed", "deleted" or "transferred"
	To  string `json:"to,omitempty"`  // renamed or transferred: the new class name
	Dir string `json:"dir,omitempty"` // transferred: the data folder it went to
	Tag string `json:"tag"`           // the migration (of Dir, for transfers)
}

type pendingMigration struct {
	Tag   string       `json:"tag"`
	Steps []migStep    `json:"steps"`
	After *folderState `json:"after"`
}

// migStep is one idempotent step of a migration. Namespace folders are
// named relative to the data folder (which may move between a crash and
// the next Open); Src, a transfer's source folder, is absolute.
type migStep struct {
	Op    string      `json:"op"`
	From  string      `json:"from,omitempty"`
	To    string      `json:"to,omitempty"`
	Trash string      `json:"trash,omitempty"` // a fresh name under trashDir
	Src   string      `json:"src,omitempty"`
	Gone  *goneRecord `json:"gone,omitempty"` // mark-source
	Key   string      `json:"key,omitempty"`  // mark-source
}

// Step operations.
const (
	opRenameFolder = "rename-folder"      // Dir/From -> Dir/To
	opRenameAlarms = "rename-alarms"      // index rows From -> To
	opTrashFolder  = "trash-folder"       // Dir/From -> Dir/.trash/Trash
	opDeleteAlarms = "delete-alarms"      // index rows of From
	opMarkSource   = "mark-source"        // Src records From as gone
	opImportAlarms = "import-alarms"      // Src index rows From -> Dir index rows To
	opImportFolder = "import-folder"      // Src/From -> Dir/To
	opDropSource   = "drop-source-alarms" // Src index rows of From
)

func newFolderState() *folderState {
	return &folderState{Version: stateVersion, Classes: map[string]classRecord{}, Gone: map[string]goneRecord{}}
}

func (s *folderState) clone() *folderState {
	d := *s
	d.Applied = slices.Clone(s.Applied)
	d.Classes = make(map[string]classRecord, len(s.Classes))
	for k, v := range s.Classes {
		d.Classes[k] = v
	}
	d.Gone = make(map[string]goneRecord, len(s.Gone))
	for k, v := range s.Gone {
		d.Gone[k] = v
	}
	d.RetiredKeys = slices.Clone(s.RetiredKeys)
	d.Pending = nil
	return &d
}

// readState reads dir's migration record; a missing one is empty.
func readState(dir string) (*folderState, error) {
	path := filepath.Join(dir, migrationsFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return newFolderState(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: read %s: %w", ErrMigration, path, err)
	}
	st := newFolderState()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(st); err != nil {
		return nil, &ConfigError{File: path, Msg: fmt.Sprintf("the data folder's migration record is unreadable: %v", err),
			Hint: "restore it from a backup of the data folder", Err: errors.Join(ErrMigration, err)}
	}
	if st.Version != stateVersion {
		return nil, &ConfigError{File: path, Msg: fmt.Sprintf("the migration record has format %d; this program reads format %d", st.Version, stateVersion),
			Hint: "open the data folder with the program version that wrote it", Err: ErrMigration}
	}
	if st.Classes == nil {
		st.Classes = map[string]classRecord{}
	}
	if st.Gone == nil {
		st.Gone = map[string]goneRecord{}
	}
	if p := st.Pending; p != nil && p.After == nil {
		return nil, &ConfigError{File: path, Msg: "the migration record's pending migration has no result", Hint: "restore it from a backup of the data folder", Err: ErrMigration}
	}
	return st, nil
}

// writeState replaces dir's migration record atomically and durably.
func writeState(dir string, st *folderState) error {
	data, err := json.MarshalIndent(st, "", "\t")
	if err != nil {
		return err
	}
	path := filepath.Join(dir, migrationsFile)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(append(data, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = durability.SyncDir(dir)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// classTable is what a runtime knows of its classes, from Options.Config
// and the data folder's migration record. It does not change after Open.
type classTable struct {
	dir      string
	cfg      *Config               // a private copy; nil if none
	active   bool                  // migrations are in force: only declared classes may be registered
	keys     map[string]idKey      // classes with a recorded ID key
	gone     map[string]goneRecord // classes renamed, deleted or transferred away
	applied  []string              // tags, in order
	bindings map[string]string     // binding -> class
}

// key returns the ID key of namespace name, or why it may not be
// registered.
func (ct *classTable) key(name string) (idKey, error) {
	if ct == nil {
		return newIDKey(name), nil
	}
	if k, ok := ct.keys[name]; ok {
		return k, nil
	}
	if g, ok := ct.gone[name]; ok {
		return idKey{}, ct.goneError(name, g, "remove the Register call")
	}
	if ct.active {
		msg := fmt.Sprintf("no migration declares class %q", name)
		if ct.cfg == nil {
			msg += fmt.Sprintf(" (the data folder %s has applied migrations, and Options.Config is nil)", ct.dir)
		}
		return idKey{}, ct.cfg.errAt("migrations", ErrUndeclaredClass, msg,
			fmt.Sprintf(`add a migration with "new_sqlite_classes": [%q]`, name))
	}
	return newIDKey(name), nil
}

// goneError explains that class name went away; what is the caller's
// first way out.
func (ct *classTable) goneError(name string, g goneRecord, what string) *ConfigError {
	path := "migrations"
	if i := ct.cfg.tagIndex(g.Tag); i >= 0 && g.How != "transferred" {
		path = fmt.Sprintf("migrations[%d]", i)
	}
	var msg, hint string
	switch g.How {
	case "renamed":
		msg = fmt.Sprintf("class %q was renamed to %q by migration %q", name, g.To, g.Tag)
		hint = fmt.Sprintf("use %q instead: its objects, IDs and alarms are there now", g.To)
	case "transferred":
		msg = fmt.Sprintf("class %q was transferred to the data folder %s (as class %q) by its migration %q", name, g.Dir, g.To, g.Tag)
		hint = what + ": its objects live in that folder now"
	default:
		msg = fmt.Sprintf("class %q was deleted by migration %q", name, g.Tag)
		hint = fmt.Sprintf(`%s, or create the class again (empty) with a new migration: "new_sqlite_classes": [%q]`, what, name)
	}
	return ct.cfg.errAt(path, ErrUndeclaredClass, msg, hint)
}

// tagIndex returns the index of the migration tagged tag, or -1.
func (c *Config) tagIndex(tag string) int {
	if c == nil {
		return -1
	}
	return slices.IndexFunc(c.Migrations, func(m Migration) bool { return m.Tag == tag })
}

// openClasses brings the data folder dir up to date with cfg's migrations
// and returns the runtime's class table. The caller holds dir's lock.
func openClasses(dir string, cfg *Config) (*classTable, error) {
	cfg = cfg.clone()
	m := &migrator{dir: dir, cfg: cfg, locks: map[string]*os.File{}}
	defer m.unlockSources()
	st, err := readState(dir)
	if err != nil {
		return nil, err
	}
	if st.Pending != nil {
		// A crash interrupted a migration after its commit point: finish
		// it first, whatever the config says now.
		if st, err = m.finish(st); err != nil {
			return nil, err
		}
	}
	if cfg != nil {
		if err := cfg.Validate(); err != nil {
			return nil, err
		}
	}
	if err := os.RemoveAll(filepath.Join(dir, trashDir)); err != nil {
		return nil, fmt.Errorf("%w: remove deleted classes: %w", ErrMigration, err)
	}
	active := len(st.Applied) > 0 || (cfg != nil && len(cfg.Migrations) > 0)
	if cfg != nil {
		if err := m.checkHistory(st); err != nil {
			return nil, err
		}
	}
	if active {
		if err := m.checkData(st); err != nil {
			return nil, err
		}
	}
	if cfg != nil {
		for i := len(st.Applied); i < len(cfg.Migrations); i++ {
			if st, err = m.apply(st, i); err != nil {
				return nil, err
			}
		}
	}
	ct := &classTable{dir: dir, cfg: cfg, active: active, keys: map[string]idKey{}, gone: st.Gone, bindings: map[string]string{}}
	for name, rec := range st.Classes {
		k, err := hex.DecodeString(rec.Key)
		if err != nil || len(k) != len(idKey{}) {
			return nil, &ConfigError{File: filepath.Join(dir, migrationsFile), Msg: fmt.Sprintf("class %q has a malformed ID key", name),
				Hint: "restore the file from a backup of the data folder", Err: ErrMigration}
		}
		ct.keys[name] = idKey(k)
	}
	for _, a := range st.Applied {
		ct.applied = append(ct.applied, a.Migration.Tag)
	}
	if cfg != nil {
		for i, b := range cfg.Bindings {
			_, live := ct.keys[b.ClassName]
			if g, ok := st.Gone[b.ClassName]; ok && !live {
				e := ct.goneError(b.ClassName, g, "remove the binding")
				e2 := cfg.errAt(fmt.Sprintf("durable_objects.bindings[%d].class_name", i), ErrUndeclaredClass,
					fmt.Sprintf("binding %q: %s", b.Name, e.Msg), e.Hint)
				return nil, e2
			}
			ct.bindings[b.Name] = b.ClassName
		}
	}
	return ct, nil
}

// migrator applies migrations to one data folder.
type migrator struct {
	dir   string
	cfg   *Config
	locks map[string]*os.File // source data folders of transfers, locked
}

// checkHistory refuses a config whose migrations do not begin with the
// ones the data folder applied, unchanged and in the same order.
func (m *migrator) checkHistory(st *folderState) error {
	cfg := m.cfg
	for i, a := range st.Applied {
		tag := a.Migration.Tag
		if i >= len(cfg.Migrations) {
			return cfg.errAt("migrations", ErrMigrationHistory,
				fmt.Sprintf("the data folder %s applied migration %q (number %d), which the config does not have", m.dir, tag, i+1),
				fmt.Sprintf("restore it: applied migrations stay in the config, in order, unchanged (it was %s)", migrationJSON(a.Migration)))
		}
		path := fmt.Sprintf("migrations[%d]", i)
		got := cfg.Migrations[i]
		if got.Tag != tag {
			if j := cfg.tagIndex(tag); j >= 0 {
				return cfg.errAt(path, ErrMigrationHistory,
					fmt.Sprintf("migration %q was applied as number %d, but the config has it as number %d (and %q as number %d)", tag, i+1, j+1, got.Tag, i+1),
					"restore the applied order; add new migrations after the applied ones")
			}
			return cfg.errAt(path, ErrMigrationHistory,
				fmt.Sprintf("the data folder applied migration %q as number %d; the config has %q there", tag, i+1, got.Tag),
				fmt.Sprintf("restore migration %q (it was %s) at that place; add new migrations after the applied ones", tag, migrationJSON(a.Migration)))
		}
		if !reflect.DeepEqual(got.canonical(), a.Migration) {
			return cfg.errAt(path, ErrMigrationHistory,
				fmt.Sprintf("migration %q was edited after it was applied (on %s): it was %s, it is now %s",
					tag, a.AppliedAt.Format(time.DateOnly), migrationJSON(a.Migration), migrationJSON(got.canonical())),
				"undo the edit, and make the change in a new migration")
		}
	}
	return nil
}

func migrationJSON(m Migration) string {
	b, _ := json.Marshal(m)
	return string(b)
}

// checkData refuses a data folder holding objects of a class that no
// migration declares, unless a migration still to apply adopts it.
func (m *migrator) checkData(st *folderState) error {
	entries, err := os.ReadDir(m.dir)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrMigration, err)
	}
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || !namespaceName.MatchString(name) {
			continue
		}
		if _, ok := st.Classes[name]; ok {
			continue
		}
		n, err := countObjects(filepath.Join(m.dir, name))
		if err != nil {
			return fmt.Errorf("%w: %w", ErrMigration, err)
		}
		if n == 0 || m.adopts(st, name) {
			continue
		}
		msg := fmt.Sprintf("the data folder %s holds %d objects of class %q, which no migration declares", m.dir, n, name)
		if g, ok := st.Gone[name]; ok {
			msg = fmt.Sprintf("the data folder %s holds %d objects of class %q, which migration %q %s", m.dir, n, name, g.Tag, g.How)
		}
		return m.cfg.errAt("migrations", ErrUndeclaredClass, msg,
			fmt.Sprintf(`add a migration with "new_sqlite_classes": [%q] to keep them (their IDs stay valid), or move the folder %s out of the data folder`,
				name, filepath.Join(m.dir, name)))
	}
	return nil
}

// adopts reports whether the first migration still to apply that names
// class creates it (and so adopts the objects found in its folder).
func (m *migrator) adopts(st *folderState, class string) bool {
	if m.cfg == nil {
		return false
	}
	for _, mig := range m.cfg.Migrations[len(st.Applied):] {
		if slices.Contains(mig.NewSQLiteClasses, class) {
			return true
		}
		if slices.Contains(mig.DeletedClasses, class) ||
			slices.ContainsFunc(mig.RenamedClasses, func(r RenamedClass) bool { return r.From == class || r.To == class }) ||
			slices.ContainsFunc(mig.TransferredClasses, func(t TransferredClass) bool { return t.To == class }) {
			return false
		}
	}
	return false
}

// countObjects counts the object databases under a namespace folder.
func countObjects(nsDir string) (int, error) {
	shards, err := os.ReadDir(nsDir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n := 0
	for _, sh := range shards {
		if !sh.IsDir() {
			continue
		}
		files, err := os.ReadDir(filepath.Join(nsDir, sh.Name()))
		if err != nil {
			return 0, err
		}
		for _, f := range files {
			if strings.HasSuffix(f.Name(), ".sqlite") {
				n++
			}
		}
	}
	return n, nil
}

// apply applies migration i of the config to the data folder, whose state
// is st, and returns the new state.
func (m *migrator) apply(st *folderState, i int) (*folderState, error) {
	migrationPoint("plan")
	steps, after, err := m.plan(st, i)
	if err != nil {
		return nil, err
	}
	tag := m.cfg.Migrations[i].Tag
	pending := st.clone()
	pending.Pending = &pendingMigration{Tag: tag, Steps: steps, After: after}
	if err := writeState(m.dir, pending); err != nil {
		return nil, m.cfg.errAt(fmt.Sprintf("migrations[%d]", i), errors.Join(ErrMigration, err),
			fmt.Sprintf("migration %q could not start: %v", tag, err), "fix the cause; nothing was changed")
	}
	migrationPoint("committed")
	if _, err := m.finish(pending); err != nil {
		return nil, err
	}
	return after, nil
}

// finish runs the steps of st's pending migration (again, after a crash)
// and records its result.
func (m *migrator) finish(st *folderState) (*folderState, error) {
	p := st.Pending
	fail := func(err error) (*folderState, error) {
		path := "migrations"
		if i := m.cfg.tagIndex(p.Tag); i >= 0 {
			path = fmt.Sprintf("migrations[%d]", i)
		}
		return nil, m.cfg.errAt(path, errors.Join(ErrMigration, err),
			fmt.Sprintf("migration %q is under way and could not finish: %v", p.Tag, err),
			"fix the cause and open the data folder again: the migration resumes where it stopped")
	}
	for _, s := range p.Steps {
		if s.Src != "" {
			if err := m.lockSource(s.Src, true); err != nil {
				return fail(err)
			}
		}
	}
	for _, s := range p.Steps {
		migrationPoint(s.Op)
		if err := m.run(s); err != nil {
			return fail(err)
		}
	}
	if err := writeState(m.dir, p.After); err != nil {
		return fail(err)
	}
	migrationPoint("applied")
	if err := os.RemoveAll(filepath.Join(m.dir, trashDir)); err != nil {
		return fail(err)
	}
	return p.After, nil
}

// run runs one step. Every step may be run again, after a crash, whether
// or not it had completed: the end state is the same.
func (m *migrator) run(s migStep) error {
	index := filepath.Join(m.dir, alarmIndexFile)
	var err error
	switch s.Op {
	case opRenameFolder:
		err = moveFolder(filepath.Join(m.dir, s.From), filepath.Join(m.dir, s.To), filepath.Join(m.dir, trashDir, s.Trash))
	case opImportFolder:
		err = moveFolder(filepath.Join(s.Src, s.From), filepath.Join(m.dir, s.To), filepath.Join(m.dir, trashDir, s.Trash))
	case opTrashFolder:
		err = moveFolder(filepath.Join(m.dir, s.From), filepath.Join(m.dir, trashDir, s.Trash), "")
	case opRenameAlarms:
		_, err = alarm.RenameNamespace(index, s.From, s.To)
	case opDeleteAlarms:
		_, err = alarm.DeleteNamespace(index, s.From)
	case opImportAlarms:
		_, err = alarm.CopyNamespace(filepath.Join(s.Src, alarmIndexFile), s.From, index, s.To)
	case opDropSource:
		_, err = alarm.DeleteNamespace(filepath.Join(s.Src, alarmIndexFile), s.From)
	case opMarkSource:
		err = markSource(s)
	default:
		err = fmt.Errorf("unknown step %q (written by a newer version?)", s.Op)
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", s.Op, s.From, err)
	}
	return nil
}

// moveFolder renames from to to, durably. A missing from has been moved
// already (or never existed: a class without objects). An existing to
// without objects (empty shard folders) is first moved to trash.
func moveFolder(from, to, trash string) error {
	if _, err := os.Lstat(from); errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	if _, err := os.Lstat(to); err == nil {
		n, err := countObjects(to)
		if err != nil {
			return err
		}
		if n > 0 || trash == "" {
			return fmt.Errorf("%s already holds %d objects", to, n)
		}
		if err := os.MkdirAll(filepath.Dir(trash), 0o755); err != nil {
			return err
		}
		if err := os.Rename(to, trash); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return err
	}
	if err := os.Rename(from, to); err != nil {
		return err
	}
	if err := durability.SyncDir(filepath.Dir(to)); err != nil {
		return err
	}
	if filepath.Dir(from) != filepath.Dir(to) {
		return durability.SyncDir(filepath.Dir(from))
	}
	return nil
}

// markSource records in a transfer's source folder that the class left.
func markSource(s migStep) error {
	if _, err := os.Stat(s.Src); errors.Is(err, os.ErrNotExist) {
		return nil // the source folder is gone: nothing to record
	}
	st, err := readState(s.Src)
	if err != nil {
		return err
	}
	if st.Pending != nil {
		return fmt.Errorf("%s has a migration of its own under way", s.Src)
	}
	delete(st.Classes, s.From)
	st.Gone[s.From] = *s.Gone
	if !slices.Contains(st.RetiredKeys, s.Key) {
		st.RetiredKeys = append(st.RetiredKeys, s.Key)
	}
	return writeState(s.Src, st)
}

// lockSource locks a transfer's source data folder for the rest of Open.
// With ifExists, a folder that no longer exists is not locked (every step
// that touches it then has nothing to do).
func (m *migrator) lockSource(dir string, ifExists bool) error {
	if m.locks[dir] != nil {
		return nil
	}
	if _, err := os.Stat(dir); ifExists && errors.Is(err, os.ErrNotExist) {
		return nil
	}
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("%w: %s", ErrLocked, dir)
		}
		return err
	}
	m.locks[dir] = f
	return nil
}

func (m *migrator) unlockSources() {
	for _, f := range m.locks {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}
}

// plan works out the steps of migration i and the state after it,
// checking it against the data folder. It changes nothing on disk.
func (m *migrator) plan(st *folderState, i int) ([]migStep, *folderState, error) {
	mig := m.cfg.Migrations[i]
	tag := mig.Tag
	mp := fmt.Sprintf("migrations[%d]", i)
	after := st.clone()
	after.Applied = append(after.Applied, appliedMigration{Migration: mig.canonical(), AppliedAt: time.Now().UTC()})
	failErr := func(path string, cause error, msg, hint string) ([]migStep, *folderState, error) {
		sentinel := ErrMigration
		if cause != nil {
			sentinel = errors.Join(ErrMigration, cause)
			msg += ": " + cause.Error()
		}
		return nil, nil, m.cfg.errAt(path, sentinel, fmt.Sprintf("migration %q: %s", tag, msg), hint)
	}
	fail := func(path, msg, hint string) ([]migStep, *folderState, error) { return failErr(path, nil, msg, hint) }
	used := map[string]bool{}
	for _, rec := range st.Classes {
		used[rec.Key] = true
	}
	for _, k := range st.RetiredKeys {
		used[k] = true
	}
	// The folder of a class that is not declared must hold no objects
	// (checkData made sure of it, unless the migration adopts them).
	noObjects := func(path, class string) error {
		n, err := countObjects(filepath.Join(m.dir, class))
		if err != nil {
			return err
		}
		if n > 0 {
			_, _, err := fail(path, fmt.Sprintf("the folder of class %q already holds %d objects", class, n),
				fmt.Sprintf("move the folder %s out of the data folder first", filepath.Join(m.dir, class)))
			return err
		}
		return nil
	}
	var steps []migStep

	for j, class := range mig.NewSQLiteClasses {
		p := fmt.Sprintf("%s.new_sqlite_classes[%d]", mp, j)
		def := newIDKey(class)
		key := hex.EncodeToString(def[:])
		n, err := countObjects(filepath.Join(m.dir, class))
		if err != nil {
			return nil, nil, err
		}
		switch {
		case n > 0 && used[key]:
			return fail(p, fmt.Sprintf("the folder of class %q holds %d objects, but their ID key belongs to a class renamed or deleted earlier", class, n),
				fmt.Sprintf("move the folder %s out of the data folder", filepath.Join(m.dir, class)))
		case used[key]:
			// The name had a class before: give the new one a fresh key, so
			// that ID strings of the old class do not name its objects.
			k := sha256.Sum256([]byte("durable/namespace/v1\x00" + class + "\x00migration\x00" + tag))
			key = hex.EncodeToString(k[:])
		}
		// n > 0 with the default key: objects made by a program running
		// without migrations; they are adopted as they are.
		after.Classes[class] = classRecord{Key: key, Since: tag}
		delete(after.Gone, class)
		used[key] = true
	}
	for j, r := range mig.RenamedClasses {
		p := fmt.Sprintf("%s.renamed_classes[%d]", mp, j)
		rec, ok := st.Classes[r.From]
		if !ok {
			return fail(p+".from", m.notHere(st, r.From), "remove the rename")
		}
		if err := noObjects(p+".to", r.To); err != nil {
			return nil, nil, err
		}
		steps = append(steps,
			migStep{Op: opRenameFolder, From: r.From, To: r.To, Trash: trashName()},
			migStep{Op: opRenameAlarms, From: r.From, To: r.To})
		delete(after.Classes, r.From)
		after.Classes[r.To] = classRecord{Key: rec.Key, Since: tag}
		after.Gone[r.From] = goneRecord{How: "renamed", To: r.To, Tag: tag}
		delete(after.Gone, r.To)
	}
	for j, class := range mig.DeletedClasses {
		p := fmt.Sprintf("%s.deleted_classes[%d]", mp, j)
		rec, ok := st.Classes[class]
		if !ok {
			if g, gone := st.Gone[class]; gone && g.How == "transferred" {
				continue // it left with its data already
			}
			return fail(p, m.notHere(st, class), "remove it from deleted_classes")
		}
		steps = append(steps,
			migStep{Op: opTrashFolder, From: class, Trash: trashName()},
			migStep{Op: opDeleteAlarms, From: class})
		delete(after.Classes, class)
		after.Gone[class] = goneRecord{How: "deleted", Tag: tag}
		after.RetiredKeys = append(after.RetiredKeys, rec.Key)
	}
	absDir, err := filepath.Abs(m.dir)
	if err != nil {
		return nil, nil, err
	}
	for j, t := range mig.TransferredClasses {
		p := fmt.Sprintf("%s.transferred_classes[%d]", mp, j)
		src := t.FromDir
		if !filepath.IsAbs(src) {
			src = filepath.Join(m.cfg.dir(), src)
		}
		if src, err = filepath.Abs(src); err != nil {
			return nil, nil, err
		}
		srcInfo, err := os.Stat(src)
		if err == nil && !srcInfo.IsDir() {
			err = errors.New("not a folder")
		}
		if err != nil {
			return failErr(p+".from_dir", err, fmt.Sprintf("%s is not a data folder", src),
				"give the path of the data folder of the program the class comes from")
		}
		dirInfo, err := os.Stat(m.dir)
		if err != nil {
			return nil, nil, err
		}
		if os.SameFile(srcInfo, dirInfo) {
			return fail(p+".from_dir", fmt.Sprintf("%s is this data folder", src), "use renamed_classes to rename a class of this data folder")
		}
		if !sameDevice(srcInfo, dirInfo) {
			return fail(p+".from_dir", fmt.Sprintf("%s is on another file system than the data folder %s", src, m.dir),
				"move it to the data folder's file system first: objects are moved by renaming, never copied")
		}
		if err := m.lockSource(src, false); err != nil {
			return failErr(p+".from_dir", err, "cannot lock the source data folder", "stop the program using that data folder, then open this one again")
		}
		sst, err := readState(src)
		if err != nil {
			return failErr(p+".from_dir", err, "cannot read the source data folder's migration record", "repair that data folder first")
		}
		if sst.Pending != nil {
			return fail(p+".from_dir", fmt.Sprintf("%s has a migration of its own under way", src),
				"open it with its own program first, so that the migration finishes")
		}
		var key string
		if rec, ok := sst.Classes[t.From]; ok {
			key = rec.Key
		} else if g, ok := sst.Gone[t.From]; ok {
			return fail(p+".from", fmt.Sprintf("class %q is no longer in %s: migration %q %s it", t.From, src, g.Tag, g.How),
				"transfer a class the data folder still has")
		} else if len(sst.Applied) > 0 {
			return fail(p+".from", fmt.Sprintf("no migration of %s declares class %q", src, t.From), "check the class name")
		} else {
			n, err := countObjects(filepath.Join(src, t.From))
			if err != nil {
				return nil, nil, err
			}
			if n == 0 {
				return fail(p+".from", fmt.Sprintf("%s has no objects of class %q", src, t.From), "check the class name and from_dir")
			}
			def := newIDKey(t.From) // a data folder without migrations
			key = hex.EncodeToString(def[:])
		}
		if err := noObjects(p+".to", t.To); err != nil {
			return nil, nil, err
		}
		steps = append(steps,
			// First the source forgets the class, so its program cannot use
			// it while the rest is under way (or interrupted).
			migStep{Op: opMarkSource, Src: src, From: t.From, Key: key,
				Gone: &goneRecord{How: "transferred", To: t.To, Dir: absDir, Tag: tag}},
			migStep{Op: opImportAlarms, Src: src, From: t.From, To: t.To},
			migStep{Op: opImportFolder, Src: src, From: t.From, To: t.To, Trash: trashName()},
			migStep{Op: opDropSource, Src: src, From: t.From})
		after.Classes[t.To] = classRecord{Key: key, Since: tag}
		delete(after.Gone, t.To)
	}
	return steps, after, nil
}

// notHere explains why class is not a class of the data folder.
func (m *migrator) notHere(st *folderState, class string) string {
	if g, ok := st.Gone[class]; ok {
		if g.How == "transferred" {
			return fmt.Sprintf("class %q was transferred to %s by its migration %q", class, g.Dir, g.Tag)
		}
		return fmt.Sprintf("class %q was %s by migration %q", class, g.How, g.Tag)
	}
	return fmt.Sprintf("the data folder has no class %q", class)
}

func trashName() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func sameDevice(a, b os.FileInfo) bool {
	sa, ok1 := a.Sys().(*syscall.Stat_t)
	sb, ok2 := b.Sys().(*syscall.Stat_t)
	return !ok1 || !ok2 || sa.Dev == sb.Dev
}

// ErrNotRegistered means a binding names a class that is not registered.
var ErrNotRegistered = errors.New("durable: class not registered")

// Lookup returns the namespace that the binding called name (in
// Options.Config) names. It fails with ErrNoBinding if there is no such
// binding, with ErrNotRegistered if its class is not registered yet, and
// if the class's objects are not of type T.
func Lookup[T any](rt *Runtime, name string) (*Namespace[T], error) {
	class, ok := rt.classes.binding(name)
	if !ok {
		return nil, fmt.Errorf("%w: %q is not in Options.Config.Bindings", ErrNoBinding, name)
	}
	rt.mu.Lock()
	c := rt.namespaces[class]
	rt.mu.Unlock()
	if c == nil {
		return nil, fmt.Errorf("%w: binding %q names class %q; register it with durable.Register before looking it up", ErrNotRegistered, name, class)
	}
	if want := reflect.TypeFor[*T](); c.typ != want {
		return nil, fmt.Errorf("durable: binding %q: class %q holds objects of type %v, not %v", name, class, c.typ, want)
	}
	return &Namespace[T]{c: c}, nil
}

func (ct *classTable) binding(name string) (string, bool) {
	if ct == nil {
		return "", false
	}
	class, ok := ct.bindings[name]
	return class, ok
}

// CheckBindings reports every binding of Options.Config whose class is
// not registered, as *ConfigErrors wrapping ErrNotRegistered (joined). Call
// it once the program has registered its namespaces.
func (rt *Runtime) CheckBindings() error {
	ct := rt.classes
	if ct == nil || ct.cfg == nil {
		return nil
	}
	var errs []error
	for i, b := range ct.cfg.Bindings {
		rt.mu.Lock()
		c := rt.namespaces[b.ClassName]
		rt.mu.Unlock()
		if c == nil {
			errs = append(errs, ct.cfg.errAt(fmt.Sprintf("durable_objects.bindings[%d].class_name", i), ErrNotRegistered,
				fmt.Sprintf("binding %q names class %q, which is not registered", b.Name, b.ClassName),
				fmt.Sprintf("call durable.Register(rt, %q, ...), or remove the binding", b.ClassName)))
		}
	}
	return errors.Join(errs...)
}

// AppliedMigrations returns the tags of the migrations applied to the data
// folder, in order.
func (rt *Runtime) AppliedMigrations() []string {
	if rt.classes == nil {
		return nil
	}
	return slices.Clone(rt.classes.applied)
}
