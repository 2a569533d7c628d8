package storage

import (
	"strings"

	"zombiezen.com/go/sqlite"
)

// internalPrefix starts the name of every table storage keeps for itself.
// User SQL cannot touch such names, in any letter case.
const internalPrefix = "_durable_"

const txHint = "each turn runs in an implicit transaction that commits when the turn ends; use TransactionSync for an atomic, nested unit of work"

// pragmaRule says how a PRAGMA may be used by user SQL.
type pragmaRule uint8

const (
	pragmaAny      pragmaRule = iota + 1 // read, or call with an argument (table_info(t))
	pragmaReadOnly                       // only without an argument
)

// pragmas is the allowlist for user SQL. Every other PRAGMA is refused.
var pragmas = map[string]pragmaRule{
	"table_list":                pragmaAny,
	"table_info":                pragmaAny,
	"table_xinfo":               pragmaAny,
	"index_info":                pragmaAny,
	"index_list":                pragmaAny,
	"index_xinfo":               pragmaAny,
	"foreign_key_check":         pragmaAny,
	"foreign_key_list":          pragmaAny,
	"foreign_keys":              pragmaAny,
	"defer_foreign_keys":        pragmaAny,
	"case_sensitive_like":       pragmaAny,
	"ignore_check_constraints":  pragmaAny,
	"legacy_alter_table":        pragmaAny,
	"recursive_triggers":        pragmaAny,
	"reverse_unordered_selects": pragmaAny,
	"quick_check":               pragmaAny,
	"integrity_check":           pragmaAny,
	"optimize":                  pragmaAny,
	"data_version":              pragmaReadOnly,
	"page_size":                 pragmaReadOnly,
}

// vtabModules are the virtual table modules user SQL may instantiate.
var vtabModules = map[string]bool{
	"fts5":      true,
	"fts5vocab": true,
	"rtree":     true,
	"rtree_i32": true,
}

// readableSQLiteTables are the sqlite_ tables user SQL may use. SQLite
// itself keeps user SQL from writing sqlite_schema directly (the authorizer
// sees those writes for every CREATE); sqlite_sequence and sqlite_stat*
// hold the user's own AUTOINCREMENT counters and planner statistics.
var readableSQLiteTables = map[string]bool{
	"sqlite_master":      true,
	"sqlite_schema":      true,
	"sqlite_temp_master": true,
	"sqlite_temp_schema": true,
	"sqlite_sequence":    true,
	"sqlite_stat1":       true,
	"sqlite_stat4":       true,
}

// authorize is the connection's authorizer. It also notes in db.ddl that
// a user statement changes the schema. Statements storage prepares for
// itself run with db.userSQL false and are not restricted. For user SQL the
// first refusal is kept in db.denial, because SQLite reports only "not
// authorized".
func (db *DB) authorize(a authAction) sqlite.AuthResult {
	if !db.userSQL {
		return sqlite.AuthResultOK
	}
	switch a.Type() {
	case sqlite.OpCreateTable, sqlite.OpDropTable, sqlite.OpCreateIndex, sqlite.OpDropIndex,
		sqlite.OpCreateView, sqlite.OpDropView, sqlite.OpCreateTrigger, sqlite.OpDropTrigger,
		sqlite.OpAlterTable, sqlite.OpCreateVTable, sqlite.OpDropVTable:
		db.ddl = true
	}
	if f := checkAction(a); f != nil {
		if db.denial == nil {
			db.denial = f
		}
		return sqlite.AuthResultDeny
	}
	return sqlite.AuthResultOK
}

func checkAction(a authAction) *ForbiddenError {
	switch a.Type() {
	case sqlite.OpTransaction:
		return &ForbiddenError{What: strings.ToUpper(a.Operation()), Hint: txHint}
	case sqlite.OpSavepoint:
		what := "SAVEPOINT"
		switch strings.ToUpper(a.Operation()) {
		case "RELEASE":
			what = "RELEASE"
		case "ROLLBACK":
			what = "ROLLBACK TO"
		}
		return &ForbiddenError{What: what, Hint: txHint}
	case sqlite.OpAttach, sqlite.OpDetach:
		return &ForbiddenError{What: "ATTACH and DETACH", Hint: "each object has exactly one database"}
	case sqlite.OpPragma:
		return checkPragma(a.Pragma(), a.PragmaArg())
	case sqlite.OpCreateTempTable, sqlite.OpCreateTempIndex, sqlite.OpCreateTempTrigger, sqlite.OpCreateTempView,
		sqlite.OpDropTempTable, sqlite.OpDropTempIndex, sqlite.OpDropTempTrigger, sqlite.OpDropTempView:
		return &ForbiddenError{What: "temporary schema objects", Hint: "create ordinary tables; they are private to the object"}
	case sqlite.OpCreateVTable, sqlite.OpDropVTable:
		if f := checkName(a.Table(), true); f != nil {
			return f
		}
		if !vtabModules[strings.ToLower(a.Module())] {
			return &ForbiddenError{What: "virtual table module " + a.Module(), Hint: "available modules: fts5, fts5vocab, rtree, rtree_i32"}
		}
		return nil
	case sqlite.OpRead, sqlite.OpSelect, sqlite.OpRecursive:
		t := a.Table()
		if t == "" {
			return nil
		}
		lt := strings.ToLower(t)
		if strings.HasPrefix(lt, "sqlite_") {
			if readableSQLiteTables[lt] {
				return nil
			}
			return &ForbiddenError{What: "table " + t, Hint: "SQLite's internal tables are not accessible"}
		}
		if lt == "dbstat" {
			return &ForbiddenError{What: "table dbstat"}
		}
		if p, ok := strings.CutPrefix(lt, "pragma_"); ok {
			// Table-valued PRAGMA functions, e.g. pragma_table_info('t').
			if pragmas[p] == 0 {
				return &ForbiddenError{What: "PRAGMA " + p, Hint: pragmaHint}
			}
			return nil
		}
		return checkName(t, false)
	case sqlite.OpInsert, sqlite.OpUpdate, sqlite.OpDelete:
		return checkName(a.Table(), true)
	case sqlite.OpCreateTable, sqlite.OpDropTable, sqlite.OpAlterTable:
		// SQLite itself refuses to create or drop objects named sqlite_*.
		return checkName(a.Table(), false)
	case sqlite.OpCreateView, sqlite.OpDropView:
		return checkName(a.View(), false)
	case sqlite.OpCreateIndex, sqlite.OpDropIndex:
		// Indexes SQLite makes for UNIQUE constraints are sqlite_autoindex_*.
		if f := checkName(a.Index(), false); f != nil {
			return f
		}
		return checkName(a.Table(), false)
	case sqlite.OpCreateTrigger, sqlite.OpDropTrigger:
		if f := checkName(a.Trigger(), false); f != nil {
			return f
		}
		return checkName(a.Table(), false)
	case sqlite.OpReindex:
		return checkName(a.Index(), false)
	case sqlite.OpAnalyze:
		// ANALYZE (and PRAGMA optimize) may analyze the internal tables
		// too; that only writes planner statistics.
		return nil
	}
	return nil
}

const pragmaHint = "allowed: table_list, table_info, table_xinfo, index_info, index_list, index_xinfo, " +
	"foreign_key_check, foreign_key_list, foreign_keys, defer_foreign_keys, case_sensitive_like, " +
	"ignore_check_constraints, legacy_alter_table, recursive_triggers, reverse_unordered_selects, " +
	"quick_check, integrity_check, optimize, data_version, page_size (read only)"

func checkPragma(name, arg string) *ForbiddenError {
	switch pragmas[strings.ToLower(name)] {
	case pragmaAny:
		return nil
	case pragmaReadOnly:
		if arg == "" {
			return nil
		}
		return &ForbiddenError{What: "setting PRAGMA " + name, Hint: "it is read only"}
	}
	return &ForbiddenError{What: "PRAGMA " + name, Hint: pragmaHint}
}

// checkName refuses internal names. write also refuses writing SQLite's
// tables other than those in readableSQLiteTables.
func checkName(name string, write bool) *ForbiddenError {
	if name == "" {
		return nil
	}
	lower := strings.ToLower(name)
	if strings.HasPrefix(lower, internalPrefix) {
		return &ForbiddenError{What: "name " + name, Hint: "names starting with " + internalPrefix + " are reserved for storage's own tables; use the KV methods for KV data"}
	}
	if write && strings.HasPrefix(lower, "sqlite_") && !readableSQLiteTables[lower] {
		return &ForbiddenError{What: "writing " + name, Hint: "SQLite's internal tables are read only"}
	}
	return nil
}
