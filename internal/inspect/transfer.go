package inspect

import (
	"cmp"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"zombiezen.com/go/sqlite"

	"github.com/durable-go/durable/internal/alarm"
	"github.com/durable-go/durable/internal/durability"
	"github.com/durable-go/durable/internal/storage"
)

// errNoDelivery answers deliveries of the scheduler a Folder opens
// offline; it never delivers, since no namespace is ever made ready.
var errNoDelivery = errors.New("inspect: alarms are not delivered offline")

// durability returns the durability group writes commit through.
func (f *Folder) durability() (*durability.Group, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, fmt.Errorf("inspect: folder closed")
	}
	if f.dur == nil {
		f.dur = durability.New(durability.Config{Mode: durability.Fsync})
		f.ownDur = true
	}
	return f.dur, nil
}

// scheduler returns the alarm scheduler that announces alarms written.
func (f *Folder) scheduler() (*alarm.Scheduler, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, fmt.Errorf("inspect: folder closed")
	}
	if f.alarms == nil {
		s, err := alarm.Open(alarm.Config{
			Path:    filepath.Join(f.cfg.Dir, alarmIndexFile),
			Workers: 1,
			Deliver: func(context.Context, alarm.Delivery) alarm.Result { return alarm.Result{Err: errNoDelivery} },
		})
		if err != nil {
			return nil, err
		}
		f.alarms = s
		f.ownAlarms = true
	}
	return f.alarms, nil
}

// write runs fn on ref's database opened by the runtime's storage layer,
// inside the gate's Exclusive, and commits durably what fn wrote. fn
// reports whether it may have changed the alarm: the alarm index then
// learns the new alarm before the commit, as after an object's turn.
// Unless create is set, the object must exist.
func (f *Folder) write(ctx context.Context, r Ref, create bool, fn func(db *storage.DB) (alarmChanged bool, err error)) error {
	dur, err := f.durability()
	if err != nil {
		return err
	}
	return f.exclusive(ctx, r, func() (err error) {
		path := f.path(r)
		if !create {
			if _, err := stat(path); err != nil {
				return err
			}
		}
		db, err := storage.Open(path, storage.Options{Durability: dur, MaxDatabaseSize: f.cfg.MaxDatabaseSize, Spares: f.cfg.Spares})
		if err != nil {
			return err
		}
		defer func() {
			if cerr := db.Close(); err == nil {
				err = cerr
			}
		}()
		changed, err := fn(db)
		if err != nil {
			return errors.Join(err, db.Rollback())
		}
		return f.commit(ctx, r, db, changed)
	})
}

// commit commits db's transaction and waits until it is durable. If the
// alarm may have changed, the alarm index is first made to announce it
// (alarm.Scheduler.Prepare), so that no crash leaves an alarm the index
// does not know.
func (f *Folder) commit(ctx context.Context, r Ref, db *storage.DB, alarmChanged bool) error {
	var sched *alarm.Scheduler
	var change *alarm.Change
	if alarmChanged {
		at, ok, err := db.Alarm()
		if err != nil {
			return errors.Join(err, db.Rollback())
		}
		if sched, err = f.scheduler(); err != nil {
			return errors.Join(err, db.Rollback())
		}
		key := alarm.Key{NS: r.Namespace}
		hex.Decode(key.ID[:], []byte(r.ID))
		if change, err = sched.Prepare(key, at, ok); err != nil {
			return errors.Join(err, db.Rollback())
		}
	}
	ticket, err := db.Commit()
	if change != nil {
		sched.Committed(change, ticket, err)
	}
	if err != nil {
		return err
	}
	return ticket.Wait(ctx)
}

// tempFile creates an empty temporary file.
func (f *Folder) tempFile(pattern string) (*os.File, error) {
	return os.CreateTemp(f.cfg.TempDir, pattern)
}

// removeDB removes a database file and its sidecars.
func removeDB(path string) {
	for _, p := range []string{path, path + "-wal", path + "-shm", path + "-journal"} {
		os.Remove(p)
	}
}

// Export implements API. The SQLite copy is made with the backup API into
// a temporary file while the object is held, then streamed to w.
func (f *Folder) Export(ctx context.Context, namespace, ref string, format Format, w io.Writer) error {
	r, err := f.resolve(namespace, ref)
	if err != nil {
		return err
	}
	switch format {
	case FormatSQLite:
		tmp, err := f.tempFile("durable-export-*.sqlite")
		if err != nil {
			return err
		}
		tmp.Close()
		defer removeDB(tmp.Name())
		err = f.withRead(ctx, r, func(conn *sqlite.Conn) error { return backupTo(conn, tmp.Name()) })
		if err != nil {
			return err
		}
		src, err := os.Open(tmp.Name())
		if err != nil {
			return err
		}
		defer src.Close()
		_, err = io.Copy(w, src)
		return err
	case FormatJSON:
		var d *Dump
		err := f.withRead(ctx, r, func(conn *sqlite.Conn) error {
			var err error
			d, err = dumpConn(ctx, conn, r)
			return err
		})
		if err != nil {
			return err
		}
		return json.NewEncoder(w).Encode(d)
	}
	return fmt.Errorf("%w: format %q", ErrInvalid, format)
}

// backupTo copies the database of conn into a new file at dst with
// SQLite's backup API: a consistent snapshot, in WAL mode like the source.
func backupTo(conn *sqlite.Conn, dst string) error {
	removeDB(dst)
	out, err := storage.OpenConn(dst, sqlite.OpenReadWrite|sqlite.OpenCreate)
	if err != nil {
		return err
	}
	b, err := sqlite.NewBackup(out, "main", conn, "main")
	if err != nil {
		storage.CloseConn(out)
		return err
	}
	for more := true; more && err == nil; {
		more, err = b.Step(-1)
	}
	err = errors.Join(err, b.Close(), storage.CloseConn(out))
	return err
}

// dumpConn reads the object of conn into a Dump.
func dumpConn(ctx context.Context, conn *sqlite.Conn, r Ref) (*Dump, error) {
	m, err := readMeta(conn)
	if err != nil {
		return nil, err
	}
	d := &Dump{Format: DumpVersion, Namespace: r.Namespace, ID: r.ID, Name: m.name(), Meta: m.meta, Alarm: m.alarm,
		Schema: []SchemaEntry{}, Tables: []Table{}, KV: []DumpEntry{}}
	if len(d.Meta) == 0 {
		d.Meta = nil
	}
	err = eachKV(conn, func(key string, val []byte) error {
		e := DumpEntry{Key: key, Value: val}
		e.Decoded, _ = decodeKV(val)
		d.KV = append(d.KV, e)
		return nil
	})
	if err != nil {
		return nil, sqlErr(ctx, err)
	}
	schema, err := readSchema(conn)
	if err != nil {
		return nil, sqlErr(ctx, err)
	}
	for _, e := range schema {
		d.Schema = append(d.Schema, e.SchemaEntry)
	}
	for _, t := range tablesWithRows(conn, schema) {
		tc, err := tableColumns(conn, t)
		if err != nil {
			return nil, sqlErr(ctx, err)
		}
		tab := Table{Name: t.Name, Columns: tc.names(), Rows: [][]Value{}}
		err = exec(conn, tc.selectSQL(), nil, func(s *sqlite.Stmt) error {
			row := make([]Value, s.ColumnCount())
			for i := range row {
				row[i] = Value{column(s, i)}
			}
			tab.Rows = append(tab.Rows, row)
			return nil
		})
		if err != nil {
			return nil, sqlErr(ctx, err)
		}
		d.Tables = append(d.Tables, tab)
	}
	return d, nil
}

// eachKV calls fn for every KV entry of conn's database, in key order.
func eachKV(conn *sqlite.Conn, fn func(key string, val []byte) error) error {
	if ok, err := hasTable(conn, kvTable); err != nil || !ok {
		return err
	}
	return exec(conn, kvEntries, nil, func(s *sqlite.Stmt) error {
		b, _ := column(s, 1).([]byte)
		if b == nil {
			b = []byte(s.ColumnText(1)) // a TEXT value written by hand
		}
		return fn(s.ColumnText(0), b)
	})
}

// schemaItem is a schema entry with what sqlite's table_list says of it.
type schemaItem struct {
	SchemaEntry
	virtual bool // a virtual table
	noRowid bool // a WITHOUT ROWID table
}

// sequenceTable holds the AUTOINCREMENT counters.
const sequenceTable = "sqlite_sequence"

// internalName reports names of SQLite's and the runtime's own objects.
func internalName(name string) bool {
	n := strings.ToLower(name)
	return strings.HasPrefix(n, "sqlite_") || strings.HasPrefix(n, internalPrefix)
}

// readSchema lists the user's schema objects of conn: not SQLite's or the
// runtime's own, not the shadow tables of virtual tables, not the
// automatic indexes of constraints. Tables come first, then indexes, views
// and triggers, each in creation order: the order Import creates them in
// (triggers must not fire while rows are copied), so that an import
// exports the same again.
func readSchema(conn *sqlite.Conn) ([]schemaItem, error) {
	kinds := map[string][2]any{} // name -> table_list type, wr
	err := exec(conn, "SELECT name, type, wr FROM pragma_table_list WHERE schema = 'main'", nil, func(s *sqlite.Stmt) error {
		kinds[s.ColumnText(0)] = [2]any{s.ColumnText(1), s.ColumnInt64(2)}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var out []schemaItem
	err = exec(conn, "SELECT type, name, tbl_name, sql FROM sqlite_schema WHERE sql IS NOT NULL ORDER BY rowid", nil, func(s *sqlite.Stmt) error {
		e := schemaItem{SchemaEntry: SchemaEntry{Type: s.ColumnText(0), Name: s.ColumnText(1), Table: s.ColumnText(2), SQL: s.ColumnText(3)}}
		if internalName(e.Name) || internalName(e.Table) {
			return nil
		}
		if k, ok := kinds[e.Table]; ok && k[0] == "shadow" {
			return nil
		}
		if e.Type == "table" {
			k := kinds[e.Name]
			e.virtual = k[0] == "virtual"
			e.noRowid = k[1] == int64(1)
		}
		out = append(out, e)
		return nil
	})
	slices.SortStableFunc(out, func(a, b schemaItem) int {
		return cmp.Compare(b2i(a.Type != "table"), b2i(b.Type != "table"))
	})
	return out, err
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// tablesWithRows returns the tables of schema whose rows are copied, and
// sqlite_sequence last if conn has it.
func tablesWithRows(conn *sqlite.Conn, schema []schemaItem) []schemaItem {
	var out []schemaItem
	for _, e := range schema {
		if e.Type == "table" {
			out = append(out, e)
		}
	}
	if ok, _ := hasTable(conn, sequenceTable); ok {
		out = append(out, schemaItem{SchemaEntry: SchemaEntry{Type: "table", Name: sequenceTable, Table: sequenceTable}})
	}
	return out
}

// tableCols are the columns of a table that an export carries.
type tableCols struct {
	table string
	rowid string   // the name the rowid is read and written under; "" if not carried
	cols  []string // the table's own visible, non-generated columns
}

// names returns the exported column names: the rowid first, if carried.
func (t tableCols) names() []string {
	if t.rowid == "" {
		return t.cols
	}
	return append([]string{t.rowid}, t.cols...)
}

func (t tableCols) selectSQL() string {
	return "SELECT " + strings.Join(quoteAll(t.names(), t.rowid), ", ") + " FROM " + quoteIdent(t.table)
}

func (t tableCols) insertSQL() string {
	ph := strings.TrimSuffix(strings.Repeat("?, ", len(t.names())), ", ")
	return "INSERT INTO " + quoteIdent(t.table) + " (" + strings.Join(quoteAll(t.names(), t.rowid), ", ") + ") VALUES (" + ph + ")"
}

// quoteAll quotes column names, except the rowid alias (a keyword-like
// name that must stay bare to mean the rowid).
func quoteAll(names []string, rowid string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		if rowid != "" && i == 0 {
			out[i] = n
			continue
		}
		out[i] = quoteIdent(n)
	}
	return out
}

func quoteIdent(name string) string {
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}

// maxBound is storage.MaxBoundParameters: a row insert binds every column.
const maxBound = storage.MaxBoundParameters

// tableColumns reads which columns of t an export carries. The rowid of a
// rowid table is carried unless an INTEGER PRIMARY KEY column already is
// it, so that rows keep their rowids.
func tableColumns(conn *sqlite.Conn, t schemaItem) (tableCols, error) {
	tc := tableCols{table: t.Name}
	if t.Name == sequenceTable {
		tc.cols = []string{"name", "seq"}
		return tc, nil
	}
	lower := map[string]bool{}
	var pkTypes []string
	err := exec(conn, "SELECT name, type, pk, hidden FROM pragma_table_xinfo(?)", []any{t.Name}, func(s *sqlite.Stmt) error {
		name := s.ColumnText(0)
		lower[strings.ToLower(name)] = true
		if s.ColumnInt64(2) > 0 {
			pkTypes = append(pkTypes, strings.ToUpper(s.ColumnText(1)))
		}
		if s.ColumnInt64(3) == 0 { // 1: hidden (virtual tables), 2 and 3: generated
			tc.cols = append(tc.cols, name)
		}
		return nil
	})
	if err != nil {
		return tc, err
	}
	aliased := len(pkTypes) == 1 && pkTypes[0] == "INTEGER"
	if t.virtual || t.noRowid || aliased || len(tc.cols) >= maxBound {
		return tc, nil
	}
	for _, n := range []string{"rowid", "oid", "_rowid_"} {
		if !lower[n] {
			tc.rowid = n
			break
		}
	}
	return tc, nil
}
