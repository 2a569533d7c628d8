package storage

import (
	"errors"
	"sync"
	"sync/atomic"

	"modernc.org/libc"
	lib "modernc.org/sqlite/lib"
	"zombiezen.com/go/sqlite"
)

// Databases install their authorizer with SQLite directly, not with the
// driver's Conn.SetAuthorizer. The driver keeps every connection's
// authorizer in one process-wide map behind a sync.RWMutex: each callback
// (several per statement prepared) takes the read lock, and each
// connection's open and close the write lock, which stops every reader
// until it is through. With objects activated and evicted by the
// thousand, goroutines spent more time queued on that lock than running
// (an execution trace of the alarm benchmark: 231 s blocked over a 5 s
// run), and the driver's callback also builds four Go strings for every
// callback, though storage's own statements need none of them.
//
// Here each DB takes a slot in a table that callbacks read without locks,
// and SQLite passes the callback the slot's number.

const (
	authChunkBits = 10
	authChunkSize = 1 << authChunkBits
	authChunks    = 1 << 12 // up to 4M databases open at once
)

var authSlots struct {
	chunks [authChunks]atomic.Pointer[[authChunkSize]atomic.Pointer[DB]]

	mu   sync.Mutex // guards the fields below and chunk creation
	free []uintptr  // released slot numbers
	next uintptr    // the lowest slot number never used
}

// errTooManyDBs is returned when every authorizer slot is taken.
var errTooManyDBs = errors.New("storage: too many databases open")

// setAuthorizer makes db.authorize the authorizer of db's connection.
// releaseAuthorizer must follow once the connection is closed.
func (db *DB) setAuthorizer() error {
	s := &authSlots
	s.mu.Lock()
	var n uintptr
	if k := len(s.free); k > 0 {
		n = s.free[k-1]
		s.free = s.free[:k-1]
	} else {
		if s.next >= authChunks*authChunkSize {
			s.mu.Unlock()
			return errTooManyDBs
		}
		n = s.next
		s.next++
		if c := &s.chunks[n>>authChunkBits]; c.Load() == nil {
			c.Store(new([authChunkSize]atomic.Pointer[DB]))
		}
	}
	s.mu.Unlock()
	s.chunks[n>>authChunkBits].Load()[n&(authChunkSize-1)].Store(db)
	db.authSlot = n + 1
	if rc := lib.Xsqlite3_set_authorizer(db.raw.tls, db.raw.db, funcPointer(authCallback), n); rc != lib.SQLITE_OK {
		db.releaseAuthorizer()
		return sqlError(sqlite.ResultCode(rc), "set authorizer")
	}
	return nil
}

// releaseAuthorizer frees db's slot. The connection must be closed (or
// its authorizer removed).
func (db *DB) releaseAuthorizer() {
	if db.authSlot == 0 {
		return
	}
	n := db.authSlot - 1
	db.authSlot = 0
	s := &authSlots
	s.chunks[n>>authChunkBits].Load()[n&(authChunkSize-1)].Store(nil)
	s.mu.Lock()
	s.free = append(s.free, n)
	s.mu.Unlock()
}

// authCallback is SQLite's authorizer callback for every DB; slot is the
// DB's slot number.
func authCallback(tls *libc.TLS, slot uintptr, op int32, arg1, arg2, dbName, trigger uintptr) int32 {
	var db *DB
	if c := authSlots.chunks[slot>>authChunkBits].Load(); c != nil {
		db = c[slot&(authChunkSize-1)].Load()
	}
	if db == nil {
		return lib.SQLITE_DENY // cannot happen: the slot outlives the connection
	}
	if !db.userSQL {
		return lib.SQLITE_OK
	}
	return int32(db.authorize(authAction{
		op:      sqlite.OpType(op),
		arg1:    libc.GoString(arg1),
		arg2:    libc.GoString(arg2),
		trigger: libc.GoString(trigger),
	}))
}

// authAction is what SQLite asks the authorizer about: the accessors
// name its arguments as SQLite's documentation of each action code does.
type authAction struct {
	op         sqlite.OpType
	arg1, arg2 string
	trigger    string // the innermost trigger or view responsible, if any
}

// Type returns the action code.
func (a authAction) Type() sqlite.OpType { return a.op }

// Table returns the table the action is on, if any.
func (a authAction) Table() string {
	switch a.op {
	case sqlite.OpCreateTable, sqlite.OpCreateTempTable, sqlite.OpDelete, sqlite.OpDropTable,
		sqlite.OpDropTempTable, sqlite.OpInsert, sqlite.OpRead, sqlite.OpUpdate, sqlite.OpAnalyze,
		sqlite.OpCreateVTable, sqlite.OpDropVTable:
		return a.arg1
	case sqlite.OpCreateIndex, sqlite.OpCreateTempIndex, sqlite.OpCreateTempTrigger, sqlite.OpCreateTrigger,
		sqlite.OpDropIndex, sqlite.OpDropTempIndex, sqlite.OpDropTempTrigger, sqlite.OpDropTrigger, sqlite.OpAlterTable:
		return a.arg2
	}
	return ""
}

// Index returns the index the action is on, if any.
func (a authAction) Index() string {
	switch a.op {
	case sqlite.OpCreateIndex, sqlite.OpCreateTempIndex, sqlite.OpDropIndex, sqlite.OpDropTempIndex, sqlite.OpReindex:
		return a.arg1
	}
	return ""
}

// Trigger returns the trigger the action is on, if any.
func (a authAction) Trigger() string {
	switch a.op {
	case sqlite.OpCreateTempTrigger, sqlite.OpCreateTrigger, sqlite.OpDropTempTrigger, sqlite.OpDropTrigger:
		return a.arg1
	}
	return ""
}

// View returns the view the action is on, if any.
func (a authAction) View() string {
	switch a.op {
	case sqlite.OpCreateTempView, sqlite.OpCreateView, sqlite.OpDropTempView, sqlite.OpDropView:
		return a.arg1
	}
	return ""
}

// Pragma returns the PRAGMA's name, for OpPragma.
func (a authAction) Pragma() string {
	if a.op != sqlite.OpPragma {
		return ""
	}
	return a.arg1
}

// PragmaArg returns the PRAGMA's argument, if any, for OpPragma.
func (a authAction) PragmaArg() string {
	if a.op != sqlite.OpPragma {
		return ""
	}
	return a.arg2
}

// Operation returns BEGIN, COMMIT, ROLLBACK or RELEASE for transaction and
// savepoint actions.
func (a authAction) Operation() string {
	switch a.op {
	case sqlite.OpTransaction, sqlite.OpSavepoint:
		return a.arg1
	}
	return ""
}

// Module returns the module of a virtual table being created or dropped.
func (a authAction) Module() string {
	switch a.op {
	case sqlite.OpCreateVTable, sqlite.OpDropVTable:
		return a.arg2
	}
	return ""
}
