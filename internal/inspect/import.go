package inspect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"zombiezen.com/go/sqlite"

	"github.com/durable-go/durable/internal/storage"
)

// source is an object's content to import: user tables in conn; KV
// entries, metadata and alarm either in conn's internal tables (an
// exported SQLite file) or in dump (a JSON export).
type source struct {
	conn  *sqlite.Conn
	meta  objectMeta
	dump  *Dump // nil for a SQLite file
	close func()
}

// eachKV calls fn for every KV entry of the source, in key order.
func (s *source) eachKV(fn func(key string, val []byte) error) error {
	if s.dump == nil {
		return eachKV(s.conn, fn)
	}
	for _, e := range s.dump.KV {
		if err := fn(e.Key, e.Value); err != nil {
			return err
		}
	}
	return nil
}

// maxImport bounds an import's input: the database size limit.
func (f *Folder) maxImport() int64 {
	if f.cfg.MaxDatabaseSize > 0 {
		return f.cfg.MaxDatabaseSize
	}
	return storage.DefaultMaxDatabaseSize
}

// openSource reads an export from r.
func (f *Folder) openSource(format Format, r io.Reader) (*source, error) {
	limit := f.maxImport()
	switch format {
	case FormatSQLite:
		tmp, err := f.tempFile("durable-import-*.sqlite")
		if err != nil {
			return nil, err
		}
		n, err := io.Copy(tmp, io.LimitReader(r, limit+1))
		tmp.Close()
		path := tmp.Name()
		if err == nil && n > limit {
			err = fmt.Errorf("%w: import larger than %d bytes", ErrInvalid, limit)
		}
		if err != nil {
			removeDB(path)
			return nil, err
		}
		conn, err := storage.OpenConn(path, sqlite.OpenReadWrite)
		if err == nil {
			if err = conn.SetAuthorizer(readAuthorizer); err == nil {
				err = exec(conn, "SELECT count(*) FROM sqlite_schema", nil, nil)
			}
			if err != nil {
				storage.CloseConn(conn)
			}
		}
		if err != nil {
			removeDB(path)
			return nil, fmt.Errorf("%w: not an SQLite database: %v", ErrInvalid, err)
		}
		src := &source{conn: conn, close: func() { storage.CloseConn(conn); removeDB(path) }}
		if src.meta, err = readMeta(conn); err != nil {
			src.close()
			return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		return src, nil
	case FormatJSON:
		var d Dump
		dec := json.NewDecoder(io.LimitReader(r, limit))
		if err := dec.Decode(&d); err != nil {
			return nil, fmt.Errorf("%w: JSON export: %v", ErrInvalid, err)
		}
		if d.Format != DumpVersion {
			return nil, fmt.Errorf("%w: JSON export format %q, want %q", ErrInvalid, d.Format, DumpVersion)
		}
		return dumpSource(&d)
	}
	return nil, fmt.Errorf("%w: format %q", ErrInvalid, format)
}

// dumpSource rebuilds the user tables of d in an in-memory database.
func dumpSource(d *Dump) (*source, error) {
	conn, err := storage.OpenConn(":memory:", sqlite.OpenReadWrite|sqlite.OpenCreate|sqlite.OpenMemory)
	if err != nil {
		return nil, err
	}
	src := &source{conn: conn, dump: d, close: func() { storage.CloseConn(conn) }}
	src.meta = objectMeta{meta: d.Meta, alarm: d.Alarm}
	if src.meta.meta == nil {
		src.meta.meta = map[string]string{}
	}
	if err := src.load(d); err != nil {
		src.close()
		return nil, fmt.Errorf("%w: JSON export: %v", ErrInvalid, err)
	}
	return src, nil
}

// load creates d's schema and rows in the source's database.
func (s *source) load(d *Dump) error {
	if err := s.conn.SetAuthorizer(readAuthorizer); err != nil {
		return err
	}
	create := func(e SchemaEntry) error {
		if internalName(e.Name) || !strings.HasPrefix(strings.ToUpper(strings.TrimSpace(e.SQL)), "CREATE ") {
			return fmt.Errorf("schema entry %q: not a CREATE statement of a user object", e.Name)
		}
		st, trailing, err := s.conn.PrepareTransient(e.SQL)
		if err != nil {
			return fmt.Errorf("schema entry %q: %w", e.Name, err)
		}
		defer st.Finalize()
		if trailing != 0 && strings.TrimSpace(e.SQL[len(e.SQL)-trailing:]) != "" {
			return fmt.Errorf("schema entry %q: more than one statement", e.Name)
		}
		_, err = st.Step()
		return err
	}
	for _, e := range d.Schema {
		if e.Type == "table" {
			if err := create(e); err != nil {
				return err
			}
		}
	}
	schema, err := readSchema(s.conn)
	if err != nil {
		return err
	}
	var seq *Table
	for i, t := range d.Tables {
		if t.Name == sequenceTable {
			seq = &d.Tables[i]
			continue
		}
		j := slices.IndexFunc(schema, func(e schemaItem) bool { return e.Type == "table" && e.Name == t.Name })
		if j < 0 {
			return fmt.Errorf("rows of table %q, which the schema does not create", t.Name)
		}
		if err := s.insertRows(schema[j], t); err != nil {
			return err
		}
	}
	if seq != nil {
		if ok, err := hasTable(s.conn, sequenceTable); err != nil || !ok {
			return errors.Join(err, errors.New("AUTOINCREMENT counters without an AUTOINCREMENT table"))
		}
		if err := exec(s.conn, "DELETE FROM "+sequenceTable, nil, nil); err != nil {
			return err
		}
		if err := s.insertRows(schemaItem{SchemaEntry: SchemaEntry{Type: "table", Name: sequenceTable}}, *seq); err != nil {
			return err
		}
	}
	for _, e := range d.Schema {
		if e.Type != "table" {
			if err := create(e); err != nil {
				return err
			}
		}
	}
	return nil
}

// insertRows inserts the rows of t into table e of the source.
func (s *source) insertRows(e schemaItem, t Table) error {
	tc, err := tableColumns(s.conn, e)
	if err != nil {
		return err
	}
	if !slices.Equal(tc.names(), t.Columns) {
		return fmt.Errorf("table %q: columns %q, but its schema gives %q", t.Name, t.Columns, tc.names())
	}
	st, err := s.conn.Prepare(tc.insertSQL())
	if err != nil {
		return fmt.Errorf("table %q: %w", t.Name, err)
	}
	for i, row := range t.Rows {
		if len(row) != len(t.Columns) {
			return fmt.Errorf("table %q: row %d has %d values for %d columns", t.Name, i, len(row), len(t.Columns))
		}
		for j, v := range row {
			bind(st, j+1, v.V)
		}
		_, err := st.Step()
		if rerr := st.Reset(); err == nil {
			err = rerr
		}
		if err != nil {
			return fmt.Errorf("table %q: row %d: %w", t.Name, i, err)
		}
	}
	return nil
}

// Import implements API. The object's name is the one ref gives, else the
// export's if it is the name of the same ID, else whatever the object had.
func (f *Folder) Import(ctx context.Context, namespace, ref string, format Format, r io.Reader) (*ImportResult, error) {
	target, err := f.resolve(namespace, ref)
	if err != nil {
		return nil, err
	}
	src, err := f.openSource(format, r)
	if err != nil {
		return nil, err
	}
	defer src.close()
	name := target.Name
	if n := src.meta.name(); name == "" && n != "" {
		if rr, err := f.cfg.Resolve(namespace, n); err == nil && rr.ID == target.ID {
			name = n
		}
	}
	res := &ImportResult{Ref: target}
	res.Name = name
	err = f.write(ctx, target, true, func(db *storage.DB) (bool, error) {
		return true, copyObject(ctx, db, src, name, res)
	})
	if err != nil {
		return nil, f.objErr(target, err)
	}
	return res, nil
}

// copyObject replaces the content of db by the source's: it deletes
// everything, then creates the tables, copies their rows (with their
// rowids), the AUTOINCREMENT counters, then indexes, views and triggers,
// then the KV entries, metadata and alarm. It all joins db's open
// transaction; foreign keys are checked at its commit.
func copyObject(ctx context.Context, db *storage.DB, src *source, name string, res *ImportResult) error {
	if err := db.DeleteAll(); err != nil {
		return err
	}
	run := func(q string, args ...any) error {
		cur, err := db.Exec(q, args...)
		if err != nil {
			return writeErr(err)
		}
		return cur.Close()
	}
	if err := run("PRAGMA defer_foreign_keys = ON"); err != nil {
		return err
	}
	schema, err := readSchema(src.conn)
	if err != nil {
		return err
	}
	for _, e := range schema {
		if e.Type == "table" {
			if err := run(e.SQL); err != nil {
				return fmt.Errorf("create %s: %w", e.Name, err)
			}
			res.Tables++
		}
	}
	for _, t := range tablesWithRows(src.conn, schema) {
		if err := ctx.Err(); err != nil {
			return err
		}
		tc, err := tableColumns(src.conn, t)
		if err != nil {
			return err
		}
		ins := tc.insertSQL()
		if t.Name == sequenceTable {
			// Inserting rows with their rowids moved the counters to the
			// largest rowid; set them to the exported values.
			if err := run("DELETE FROM " + sequenceTable); err != nil {
				return err
			}
		}
		err = exec(src.conn, tc.selectSQL(), nil, func(s *sqlite.Stmt) error {
			args := make([]any, s.ColumnCount())
			for i := range args {
				args[i] = column(s, i)
			}
			if t.Name != sequenceTable {
				res.Rows++
			}
			return run(ins, args...)
		})
		if err != nil {
			return fmt.Errorf("copy rows of %s: %w", t.Name, err)
		}
	}
	for _, e := range schema {
		if e.Type != "table" {
			if err := run(e.SQL); err != nil {
				return fmt.Errorf("create %s %s: %w", e.Type, e.Name, err)
			}
		}
	}
	var batch []storage.Entry
	flush := func() error {
		err := db.PutMany(batch)
		batch = batch[:0]
		return err
	}
	err = src.eachKV(func(key string, val []byte) error {
		batch = append(batch, storage.Entry{Key: key, Value: val})
		res.KV++
		if len(batch) == storage.MaxBatchKeys {
			return flush()
		}
		return nil
	})
	if err == nil && len(batch) > 0 {
		err = flush()
	}
	if err != nil {
		return fmt.Errorf("copy KV entries: %w", err)
	}
	for k, v := range src.meta.meta {
		if k != metaName {
			if err := db.SetMeta(k, v); err != nil {
				return err
			}
		}
	}
	if name != "" {
		if err := db.SetMeta(metaName, name); err != nil {
			return err
		}
	}
	if at := src.meta.alarm; at != nil {
		if err := db.SetAlarm(*at); err != nil {
			return err
		}
		res.Alarm = at
	}
	return nil
}
