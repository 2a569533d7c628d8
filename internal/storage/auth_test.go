package storage_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/durable-go/durable/internal/storage"
)

func TestDB_Exec_Forbidden(t *testing.T) {
	db := openDB(t, storage.Options{})
	exec(t, db, "CREATE TABLE t (id INTEGER PRIMARY KEY, v)")
	exec(t, db, "INSERT INTO t VALUES (1, 'x')")
	if err := db.Put("secret", []byte("s")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		query string
		what  string // substring of ForbiddenError.What
		hint  string // substring of ForbiddenError.Hint
	}{
		{"BEGIN", "BEGIN", "TransactionSync"},
		{"BEGIN IMMEDIATE", "BEGIN", "TransactionSync"},
		{"COMMIT", "COMMIT", "TransactionSync"},
		{"END", "COMMIT", "TransactionSync"},
		{"ROLLBACK", "ROLLBACK", "TransactionSync"},
		{"SAVEPOINT x", "SAVEPOINT", "TransactionSync"},
		{"RELEASE x", "RELEASE", "TransactionSync"},
		{"ROLLBACK TO x", "ROLLBACK TO", "TransactionSync"},
		{"ATTACH DATABASE ':memory:' AS other", "ATTACH", ""},
		{"DETACH DATABASE other", "ATTACH", ""},
		{"SELECT * FROM _durable_kv", "_durable_kv", "KV"},
		{"SELECT * FROM _DURABLE_KV", "_durable_kv", ""},
		{"SELECT count(*) FROM _durable_kv", "_durable_kv", ""},
		{"DELETE FROM _durable_kv", "_durable_kv", ""},
		{"INSERT INTO _durable_kv VALUES (CAST('alarm' AS BLOB), 0)", "_durable_kv", ""},
		{"DROP TABLE _durable_kv", "_durable_kv", ""},
		{"CREATE TABLE _durable_x (a)", "_durable_x", ""},
		{"CREATE TABLE _Durable_y (a)", "_Durable_y", ""},
		{"CREATE INDEX _durable_i ON t (v)", "_durable_i", ""},
		{"CREATE VIEW _durable_v AS SELECT 1", "_durable_v", ""},
		{"CREATE TRIGGER _durable_tr AFTER INSERT ON t BEGIN SELECT 1; END", "_durable_tr", ""},
		{"CREATE TRIGGER tr AFTER INSERT ON _durable_kv BEGIN SELECT 1; END", "_durable_kv", ""},
		{"ALTER TABLE _durable_kv ADD COLUMN x", "_durable_kv", ""},
		{"CREATE TEMP TABLE tmp (a)", "temporary", ""},
		{"CREATE TEMP VIEW tv AS SELECT 1", "temporary", ""},
		{"PRAGMA journal_mode = DELETE", "journal_mode", "table_info"},
		{"PRAGMA journal_mode", "journal_mode", ""},
		{"PRAGMA synchronous = OFF", "synchronous", ""},
		{"PRAGMA user_version", "user_version", ""},
		{"PRAGMA user_version = 7", "user_version", ""},
		{"PRAGMA writable_schema = ON", "writable_schema", ""},
		{"PRAGMA max_page_count = 1000000000", "max_page_count", ""},
		{"PRAGMA cache_size = 100000", "cache_size", ""},
		{"PRAGMA locking_mode = NORMAL", "locking_mode", ""},
		{"PRAGMA wal_checkpoint", "wal_checkpoint", ""},
		{"PRAGMA page_size = 1024", "page_size", "read only"},
		{"SELECT * FROM pragma_user_version", "user_version", ""},
		{"SELECT * FROM dbstat", "dbstat", ""},
		{"CREATE VIRTUAL TABLE g USING geopoly(a)", "geopoly", "fts5"},
	} {
		t.Run(tc.query, func(t *testing.T) {
			_, err := db.Exec(tc.query)
			var fe *storage.ForbiddenError
			if !errors.As(err, &fe) {
				t.Fatalf("got %v, want *ForbiddenError", err)
			}
			if !strings.Contains(fe.What, tc.what) || !strings.Contains(fe.Hint, tc.hint) {
				t.Errorf("got What %q Hint %q, want them to contain %q and %q", fe.What, fe.Hint, tc.what, tc.hint)
			}
		})
	}
	// SQLite protects its schema table itself.
	if _, err := db.Exec("UPDATE sqlite_schema SET sql = ''"); err == nil {
		t.Error("UPDATE sqlite_schema succeeded")
	}
	// Nothing was changed and the turn goes on.
	if n := queryInt(t, db, "SELECT count(*) FROM t"); n != 1 {
		t.Errorf("rows = %d, want 1", n)
	}
	if v, ok, err := db.Get("secret"); err != nil || !ok || string(v) != "s" {
		t.Errorf("Get = %q, %v, %v", v, ok, err)
	}
	commit(t, db)
}

func TestDB_Exec_ForbiddenThroughViewAndTrigger(t *testing.T) {
	db := openDB(t, storage.Options{})
	exec(t, db, "CREATE TABLE t (v)")
	// A view over an internal table cannot be read.
	if _, err := db.Exec("CREATE VIEW peek AS SELECT * FROM _durable_kv"); err == nil {
		_, err = db.Exec("SELECT * FROM peek")
		var fe *storage.ForbiddenError
		if !errors.As(err, &fe) {
			t.Errorf("reading a view of _durable_kv: got %v, want *ForbiddenError", err)
		}
	}
	// A trigger that writes an internal table cannot fire.
	if _, err := db.Exec("CREATE TRIGGER sneak AFTER INSERT ON t BEGIN INSERT INTO _durable_kv VALUES ('x', x'00'); END"); err == nil {
		_, err = db.Exec("INSERT INTO t VALUES (1)")
		var fe *storage.ForbiddenError
		if !errors.As(err, &fe) {
			t.Errorf("firing a trigger that writes _durable_kv: got %v, want *ForbiddenError", err)
		}
	}
	if _, ok, _ := db.Get("x"); ok {
		t.Error("a trigger wrote the KV table")
	}
}

func TestDB_Exec_Allowed(t *testing.T) {
	db := openDB(t, storage.Options{})
	for _, q := range []string{
		"CREATE TABLE p (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE)",
		"CREATE TABLE c (id INTEGER PRIMARY KEY, pid INTEGER REFERENCES p(id))",
		"CREATE INDEX c_pid ON c (pid)",
		"CREATE VIEW pv AS SELECT name FROM p",
		"CREATE TRIGGER p_ins AFTER INSERT ON p BEGIN INSERT INTO c (pid) VALUES (new.id); END",
		"INSERT INTO p (name) VALUES ('a')",
		"SELECT * FROM pv",
		"SELECT name, sql FROM sqlite_schema",
		"SELECT name, sql FROM sqlite_master",
		"SELECT * FROM sqlite_sequence",
		"ALTER TABLE p ADD COLUMN extra",
		"ALTER TABLE c RENAME TO children",
		"PRAGMA table_list",
		"PRAGMA table_info(p)",
		"PRAGMA table_xinfo(p)",
		"PRAGMA index_list(children)",
		"PRAGMA index_info(c_pid)",
		"PRAGMA index_xinfo(c_pid)",
		"PRAGMA foreign_key_list(children)",
		"PRAGMA foreign_key_check",
		"PRAGMA foreign_keys",
		"PRAGMA foreign_keys = ON",
		"PRAGMA defer_foreign_keys = ON",
		"PRAGMA case_sensitive_like = OFF",
		"PRAGMA ignore_check_constraints = OFF",
		"PRAGMA legacy_alter_table",
		"PRAGMA recursive_triggers = ON",
		"PRAGMA reverse_unordered_selects = OFF",
		"PRAGMA quick_check",
		"PRAGMA integrity_check",
		"PRAGMA optimize",
		"PRAGMA data_version",
		"PRAGMA page_size",
		"SELECT * FROM pragma_table_info('p')",
		"SELECT json_extract('{\"a\": 1}', '$.a'), sqrt(4), abs(-1)",
		"SELECT * FROM json_each('[1, 2]')",
		"CREATE VIRTUAL TABLE docs USING fts5(body)",
		"INSERT INTO docs VALUES ('hello world')",
		"SELECT * FROM docs WHERE docs MATCH 'hello'",
		"CREATE VIRTUAL TABLE boxes USING rtree(id, x0, x1)",
		"ANALYZE",
		"SELECT * FROM sqlite_stat1",
		"DROP VIEW pv",
		"DROP TRIGGER p_ins",
		"DROP INDEX c_pid",
		"DROP TABLE docs",
		"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3) SELECT * FROM n",
	} {
		cur, err := db.Exec(q)
		if err != nil {
			t.Errorf("Exec(%q): %v", q, err)
			continue
		}
		if _, err := cur.Raw(); err != nil {
			t.Errorf("Exec(%q): Raw: %v", q, err)
		}
	}
	commit(t, db)
}

func TestDB_Exec_LoadExtension(t *testing.T) {
	db := openDB(t, storage.Options{})
	_, err := db.Exec("SELECT load_extension('/nonexistent')")
	if err == nil {
		t.Fatal("load_extension succeeded")
	}
}
