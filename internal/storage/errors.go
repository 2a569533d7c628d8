package storage

import (
	"errors"
	"fmt"

	"github.com/durable-go/durable/internal/durability"
)

// Sentinel errors. Each is returned as is or wrapped; test with errors.Is.
var (
	// ErrClosed is returned by every method of a DB after Close, and by a
	// Cursor whose DB was closed.
	ErrClosed = errors.New("storage: database closed")

	// ErrCursorClosed is returned by a Cursor used after Close, or after
	// the transaction it belonged to ended (Commit, Rollback, DeleteAll).
	ErrCursorClosed = errors.New("storage: cursor closed (cursors do not outlive Close, Commit, Rollback or DeleteAll)")

	// ErrNoRows is returned by Cursor.One when the query returned no row.
	ErrNoRows = errors.New("storage: query returned no rows, One wants exactly one")

	// ErrTooManyRows is returned by Cursor.One when the query returned more
	// than one row.
	ErrTooManyRows = errors.New("storage: query returned more than one row, One wants exactly one")

	// ErrInTransactionSync is returned by Commit and Rollback when called
	// from inside a TransactionSync callback.
	ErrInTransactionSync = errors.New("storage: Commit and Rollback cannot be called inside TransactionSync")

	// ErrDiskFull wraps the error of a write that failed because the file
	// system is full (or the user's quota spent), as opposed to the
	// database reaching Options.MaxDatabaseSize (a *LimitError). SQLite
	// reports both as SQLITE_FULL. It is durability.ErrDiskFull, so that a
	// commit whose journal write or sync found the disk full matches too.
	ErrDiskFull = durability.ErrDiskFull

	// ErrInUse is returned by Open when another connection, in this
	// process or another, has the database open: a database has one
	// writer, its object's live instance.
	ErrInUse = errors.New("storage: database is open in another connection")
)

// ForbiddenError reports SQL that user code may not run: transaction
// control, ATTACH, access to internal tables, PRAGMAs outside the allowlist,
// temporary schema objects and the like. The statement did not run.
type ForbiddenError struct {
	What string // what was refused, e.g. "BEGIN", "PRAGMA journal_mode", "table _durable_kv"
	Hint string // how to achieve the goal instead; may be empty
}

func (e *ForbiddenError) Error() string {
	if e.Hint == "" {
		return "storage: not allowed: " + e.What
	}
	return "storage: not allowed: " + e.What + ": " + e.Hint
}

// Limit names used in LimitError.
const (
	LimitSQLLength       = "SQL statement length"       // bytes of query text
	LimitBoundParameters = "bound parameters"           // per statement
	LimitColumns         = "columns"                    // per table, index, view or result
	LimitLength          = "string, BLOB or row size"   // bytes
	LimitFunctionArgs    = "function arguments"         // per call
	LimitLikePattern     = "LIKE or GLOB pattern"       // bytes
	LimitCompoundSelect  = "compound SELECT terms"      // per statement
	LimitTriggerDepth    = "trigger recursion depth"    // levels
	LimitExprDepth       = "expression depth"           // levels
	LimitVDBEOps         = "statement program size"     // virtual machine instructions
	LimitDatabaseSize    = "database size"              // bytes, Options.MaxDatabaseSize
	LimitKeySize         = "key size"                   // bytes of a KV key
	LimitEntrySize       = "key plus value size"        // bytes of a KV entry
	LimitBatchKeys       = "keys per batch"             // GetMany, PutMany, DeleteMany
	LimitCursorRows      = "rows collected by Raw/All"  // Options.MaxCollectedRows
	LimitSavepointDepth  = "TransactionSync nesting"    // levels
	LimitStatementCount  = "statements in one Exec"     // ';'-separated statements
	LimitMetaSize        = "metadata key or value size" // bytes
)

// LimitError reports an input past a documented limit. The operation had no
// effect; the database and the current transaction stay usable.
type LimitError struct {
	Limit string // one of the Limit* constants
	Max   int64  // the limit's value
	Got   int64  // the offending size when known, else 0
	Err   error  // the underlying SQLite error, if any
}

func (e *LimitError) Error() string {
	if e.Got > 0 {
		return fmt.Sprintf("storage: limit exceeded: %s is %d, maximum %d", e.Limit, e.Got, e.Max)
	}
	return fmt.Sprintf("storage: limit exceeded: %s (maximum %d)", e.Limit, e.Max)
}

// Unwrap returns the underlying SQLite error.
func (e *LimitError) Unwrap() error { return e.Err }

// SQLError is an error reported by SQLite for a statement: a syntax error,
// a constraint violation, a missing table, and so on.
type SQLError struct {
	Code    int    // SQLite extended result code, e.g. 2067 for SQLITE_CONSTRAINT_UNIQUE
	Name    string // the code's name, e.g. "SQLITE_CONSTRAINT_UNIQUE"
	Message string // SQLite's message, e.g. "UNIQUE constraint failed: t.id"
}

func (e *SQLError) Error() string {
	return "storage: " + e.Name + ": " + e.Message
}

// IsConstraint reports whether the error is a constraint violation
// (UNIQUE, NOT NULL, CHECK, FOREIGN KEY, PRIMARY KEY).
func (e *SQLError) IsConstraint() bool { return e.Code&0xff == 19 }

// ArgError reports an invalid argument: an unsupported binding type, a
// wrong number of bindings, a bad Scan destination or contradictory
// options.
type ArgError struct {
	Arg    string // e.g. "args[2]", "dest[0]", "ListOptions.StartAfter"
	Reason string
}

func (e *ArgError) Error() string {
	return "storage: invalid " + e.Arg + ": " + e.Reason
}

// ScanError reports a column value that cannot be stored in the Scan
// destination given for it.
type ScanError struct {
	Column int    // 0-based column index
	Name   string // column name
	From   string // SQLite type of the value: INTEGER, REAL, TEXT, BLOB or NULL
	To     string // Go type of the destination, e.g. "*int"
	Reason string // optional detail, e.g. "out of range"
}

func (e *ScanError) Error() string {
	s := fmt.Sprintf("storage: scan column %d (%q): cannot store %s in %s", e.Column, e.Name, e.From, e.To)
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	return s
}

// TxAbortedError reports that SQLite rolled the implicit transaction back
// by itself after an error (disk full, I/O error, ...). Every write of the
// turn so far is gone, so the turn must not continue: each later operation
// and Commit return this error until Rollback is called.
type TxAbortedError struct {
	Cause error // the error that made SQLite roll back
}

func (e *TxAbortedError) Error() string {
	return "storage: transaction rolled back by SQLite after an error, the turn must be rolled back: " + e.Cause.Error()
}

// Unwrap returns the cause.
func (e *TxAbortedError) Unwrap() error { return e.Cause }
