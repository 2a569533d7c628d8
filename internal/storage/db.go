package storage

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	lib "modernc.org/sqlite/lib"
	"zombiezen.com/go/sqlite"

	"github.com/durable-go/durable/internal/durability"
)

// Defaults for Options.
const (
	// DefaultMaxDatabaseSize is the storage limit of one object: 10 GB.
	DefaultMaxDatabaseSize = 10_000_000_000
	// DefaultCacheSize is the page cache of one database, in bytes. The
	// cache grows only as pages are read, so an idle database holds less.
	DefaultCacheSize = 1 << 20
	// DefaultStatementCacheSize is how many prepared user statements one
	// database keeps, least recently used first out.
	DefaultStatementCacheSize = 64
	// DefaultJournalSizeLimit is the size the WAL file is truncated to
	// after a checkpoint that emptied it.
	DefaultJournalSizeLimit = 4 << 20
	// MinDatabaseSize is the smallest MaxDatabaseSize accepted: room for
	// the internal tables and a little data.
	MinDatabaseSize = 16 * pageSize
)

// SQL limits, set with sqlite3_limit on every connection and checked
// before SQLite sees the input where that gives a better error.
const (
	MaxSQLLength       = 100_000   // bytes of query text passed to Exec
	MaxBoundParameters = 100       // bindings per statement (highest ?NNN)
	MaxColumns         = 100       // columns of a table, index, view or result
	MaxLength          = 2_000_000 // bytes of one string or BLOB, and of a stored row (values plus a record header of a few bytes)
	MaxFunctionArgs    = 32        // arguments of one SQL function call
	MaxLikePattern     = 50        // bytes of a LIKE or GLOB pattern
	MaxCompoundSelect  = 5         // terms of one compound SELECT (UNION ...)
	MaxTriggerDepth    = 10        // levels of trigger recursion
	MaxExprDepth       = 100       // depth of one expression tree
	MaxVDBEOps         = 25_000    // instructions of one compiled statement
	MaxStatements      = 100       // ';'-separated statements in one Exec
	MaxSavepointDepth  = 64        // TransactionSync nesting
)

// Options configures a DB. Durability is required; every other zero value
// selects the documented default.
type Options struct {
	// Durability makes commits durable. Open registers the database's WAL
	// file with it (Group.File(path+"-wal", dir)). In NoSync mode the
	// connection also runs with synchronous=OFF, since nothing is fsynced
	// anyway; in Fsync mode it runs with synchronous=NORMAL.
	Durability *durability.Group

	// MaxDatabaseSize bounds the database file, in bytes, through
	// max_page_count. 0 means DefaultMaxDatabaseSize. A write that would
	// grow the file past it fails with a *LimitError (LimitDatabaseSize)
	// and has no effect. KV writes and multi-row statements undo only
	// themselves; for a statement SQLite runs without a statement journal
	// (such as a single-row INSERT) SQLite rolls back the whole
	// transaction, and the error is a *TxAbortedError wrapping the
	// *LimitError (errors.As finds both).
	MaxDatabaseSize int64

	// CacheSize is the page cache size in bytes; 0 means DefaultCacheSize.
	CacheSize int64

	// StatementCacheSize bounds the prepared-statement cache for Exec;
	// 0 means DefaultStatementCacheSize, negative disables the cache.
	StatementCacheSize int

	// MaxCollectedRows bounds the rows Cursor.Raw and Cursor.All collect
	// into memory; 0 means no limit.
	MaxCollectedRows int

	// Spares, if set, supplies pre-created files for new databases.
	Spares *Spares
}

// DB is one object's SQLite database: SQL tables, a KV table, the alarm and
// a little metadata, all changed inside one implicit transaction per turn.
//
// A DB is driven by one turn at a time and is not meant for concurrent use:
// interleaving calls from several goroutines interleaves their statements
// in one transaction. Each method takes a mutex, so such misuse cannot
// corrupt memory, but it is still misuse.
type DB struct {
	mu sync.Mutex // guards every field below and the connection

	conn   *sqlite.Conn
	raw    rawConn
	path   string
	file   *durability.File
	opts   Options
	closed bool
	// extensions is set once SQLite's deferred extensions are
	// registered on the connection (or it never deferred them; ext.go).
	extensions bool

	// Authorizer state: userSQL is true while user SQL is prepared or
	// stepped; denial is the first refusal since it was last cleared.
	userSQL bool
	denial  *ForbiddenError
	ddl     bool // the statement being prepared changes the schema

	inTx    bool            // the implicit transaction is open
	aborted *TxAbortedError // SQLite rolled the transaction back
	// alarm remembers the stored alarm as the connection sees it (in the
	// open transaction, if any), so that reading it does not query the
	// database at every alarm delivery. Writes through SetAlarm,
	// DeleteAlarm and DeleteAll set or forget it; anything that may undo
	// writes (a rollback, a failed commit, a savepoint undone, an aborted
	// transaction) forgets it.
	alarm alarmMemo
	// authSlot is 1 + the DB's slot in the authorizer table (authhook.go),
	// 0 when it has none.
	authSlot uintptr
	spDepth  int      // TransactionSync nesting
	dbFile   *os.File // if set and !dbSynced, fsync it before the first write commit
	dbSynced bool

	cache    stmtCache
	internal map[string]*sqlite.Stmt // storage's own statements
	cursors  map[*Cursor]struct{}    // open cursors

	// wal is the WAL as of the last commit, if walKnown: where the next
	// commit's frames start (see walRange).
	wal      walState
	walKnown bool

	noLookaside bool             // ReleaseMemory freed the lookaside arena; begin restores it
	walTrimmed  lib.TWalIndexHdr // WAL index header when ReleaseMemory last trimmed the index

	rowsRead    int64
	rowsWritten int64
}

// Stats are counters of a DB.
type Stats struct {
	// RowsRead and RowsWritten accumulate the metering of every Exec
	// cursor and KV call since Open (see Cursor.RowsRead).
	RowsRead    int64
	RowsWritten int64
	// Bytes is DatabaseSize as of now (0 if it cannot be read).
	Bytes int64
	// Memory is the heap SQLite holds for this connection's page cache,
	// schema and prepared statements.
	Memory int64
}

// Open opens the database at path, creating it (and its parent directory)
// if it does not exist. Only one DB may be open on a path at a time; the
// connection holds an exclusive lock on the file until Close.
func Open(path string, opts Options) (*DB, error) {
	if err := checkLayout(); err != nil {
		return nil, err
	}
	if opts.Durability == nil {
		return nil, &ArgError{Arg: "Options.Durability", Reason: "required"}
	}
	switch {
	case opts.MaxDatabaseSize == 0:
		opts.MaxDatabaseSize = DefaultMaxDatabaseSize
	case opts.MaxDatabaseSize < MinDatabaseSize:
		return nil, &ArgError{Arg: "Options.MaxDatabaseSize", Reason: fmt.Sprintf("%d is below the minimum %d", opts.MaxDatabaseSize, MinDatabaseSize)}
	}
	switch {
	case opts.CacheSize == 0:
		opts.CacheSize = DefaultCacheSize
	case opts.CacheSize < 0:
		return nil, &ArgError{Arg: "Options.CacheSize", Reason: "negative"}
	}
	if opts.StatementCacheSize == 0 {
		opts.StatementCacheSize = DefaultStatementCacheSize
	}
	if opts.MaxCollectedRows < 0 {
		return nil, &ArgError{Arg: "Options.MaxCollectedRows", Reason: "negative"}
	}

	dir := filepath.Dir(path)
	// A new database is made from the template image, either moved into
	// place from Spares or written here. In Fsync mode its contents must be
	// durable before the first commit on top of them is acknowledged:
	// synced spares already are; a file written here is fsynced through
	// dbFile at the first write commit (never closing dbFile before the
	// connection, which would drop SQLite's POSIX locks).
	created, needSync := false, false
	var dbFile *os.File
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		fsyncMode := opts.Durability.Mode() == durability.Fsync
		if err := mkdirs(dir, fsyncMode); err != nil {
			return nil, fmt.Errorf("storage: open %s: %w", path, err)
		}
		if opts.Spares != nil {
			created, err = opts.Spares.install(path)
			if err != nil {
				return nil, err
			}
			needSync = created && fsyncMode && !opts.Spares.cfg.Sync
		}
		if !created {
			dbFile, created, err = createFromTemplate(path, fsyncMode)
			if err != nil {
				return nil, err
			}
			needSync = created && fsyncMode
		}
	} else if err != nil {
		return nil, fmt.Errorf("storage: open %s: %w", path, err)
	}
	if needSync && dbFile == nil {
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			return nil, fmt.Errorf("storage: open %s: %w", path, err)
		}
		dbFile = f
	}

	name, flags, err := connName(path, sqlite.OpenReadWrite, true)
	var conn *sqlite.Conn
	if err == nil {
		conn, err = OpenConn(name, flags)
	}
	if err == nil {
		if err = rawOf(conn).lockMain(); err != nil {
			CloseConn(conn)
		}
	}
	if err != nil {
		if dbFile != nil {
			dbFile.Close()
		}
		return nil, fmt.Errorf("storage: open %s: %w", path, err)
	}
	db := &DB{
		conn:     conn,
		raw:      rawOf(conn),
		path:     path,
		opts:     opts,
		internal: make(map[string]*sqlite.Stmt),
		cursors:  make(map[*Cursor]struct{}),
		dbFile:   dbFile,
	}
	db.cache.init(opts.StatementCacheSize)
	if err := db.setup(created); err != nil {
		db.closeConn()
		if dbFile != nil {
			dbFile.Close()
		}
		return nil, fmt.Errorf("storage: open %s: %w", path, err)
	}
	// Drop the C stack that opening grew (see renewTLS).
	db.raw = renewTLS(conn).withPager()
	db.file = opts.Durability.File(path+"-wal", dir)
	return db, nil
}

// setup configures a freshly opened connection.
func (db *DB) setup(created bool) error {
	r := db.raw
	if fn := r.filename(); fn == "" || filepath.Base(fn) != filepath.Base(db.path) {
		return errors.New("storage: unsupported zombiezen.com/go/sqlite version (handle check)")
	}
	if err := r.persistWAL(); err != nil {
		return err
	}
	// Not db.conn.SetDefensive: zombiezen v1.4.2 passes sqlite3_db_config
	// a va_list holding only the flag, and SQLite reads the int* result
	// pointer that follows it from the stale rest of the malloc block (the
	// allocator's free-list link: the block the next small malloc in the
	// process returns) and stores 1 through it, corrupting another
	// goroutine's memory (SQL text, statement handles). See
	// TestNoSetDefensive.
	if err := r.dbConfig(lib.SQLITE_DBCONFIG_DEFENSIVE, true); err != nil {
		return err
	}
	if err := r.dbConfig(lib.SQLITE_DBCONFIG_TRUSTED_SCHEMA, false); err != nil {
		return err
	}
	if err := r.dbConfig(lib.SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, false); err != nil {
		return err
	}
	if err := r.dbConfig(lib.SQLITE_DBCONFIG_ENABLE_FKEY, true); err != nil {
		return err
	}
	// Closing must be cheap, since eviction closes databases one after
	// another: without this, the last close of a WAL database checkpoints
	// it, which costs two fsyncs (1-3 ms here) for nothing durability
	// needs, since every commit in the WAL is durable already. The WAL
	// is checkpointed as it fills (wal_autocheckpoint) instead, and the
	// next Open reads it back.
	if err := r.dbConfig(lib.SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true); err != nil {
		return err
	}
	c := db.conn
	// Fail at once on a lock held by another connection (a second Open of
	// the same path) instead of the driver's default of waiting forever.
	c.SetBusyTimeout(0)
	c.Limit(sqlite.LimitAttached, 0)
	c.Limit(sqlite.LimitWorkerThreads, 0)
	c.Limit(sqlite.LimitSQLLength, MaxSQLLength)
	c.Limit(sqlite.LimitVariableNumber, MaxBoundParameters)
	c.Limit(sqlite.LimitColumn, MaxColumns)
	c.Limit(sqlite.LimitLength, MaxLength)
	c.Limit(sqlite.LimitFunctionArg, MaxFunctionArgs)
	c.Limit(sqlite.LimitLikePatternLength, MaxLikePattern)
	c.Limit(sqlite.LimitCompoundSelect, MaxCompoundSelect)
	c.Limit(sqlite.LimitTriggerDepth, MaxTriggerDepth)
	c.Limit(sqlite.LimitExprDepth, MaxExprDepth)
	c.Limit(sqlite.LimitVDBEOp, MaxVDBEOps)
	if err := db.setAuthorizer(); err != nil {
		return err
	}
	sync := "NORMAL"
	if db.opts.Durability.Mode() == durability.NoSync {
		sync = "OFF"
	}
	// locking_mode must come first: with EXCLUSIVE set before the WAL is
	// opened, SQLite keeps the WAL index in heap memory and never creates
	// a -shm file.
	pragmas := []string{
		"PRAGMA locking_mode = EXCLUSIVE",
		"PRAGMA synchronous = " + sync,
		"PRAGMA cache_size = " + strconv.FormatInt(-(db.opts.CacheSize+1023)/1024, 10),
		"PRAGMA journal_size_limit = " + strconv.Itoa(DefaultJournalSizeLimit),
		"PRAGMA max_page_count = " + strconv.FormatInt(db.opts.MaxDatabaseSize/pageSize, 10),
	}
	pragmas = append(pragmas, osPragmas...)
	script := strings.Join(pragmas, "; ")
	if err := r.exec(script); err != nil {
		return fmt.Errorf("%s: %w", script, err)
	}
	if created {
		return nil
	}
	// An existing file: check that it is one of ours and up to date.
	s, err := db.prep("PRAGMA user_version")
	if err != nil {
		return err
	}
	v, err := db.queryInt(s)
	if err != nil {
		return err
	}
	// The query opened the WAL. The frames in it now are durable (see
	// durability.Recover): the first commit's range starts after them,
	// and covers the frames of a schema upgrade below.
	db.wal, db.walKnown = db.raw.walState()
	if v == schemaVersion {
		return nil
	}
	if v > schemaVersion {
		return fmt.Errorf("storage: database schema version %d is newer than this program's %d", v, schemaVersion)
	}
	// An empty file (e.g. created but never written before a crash) or
	// an older layout.
	if err := execTransient(c, "PRAGMA journal_mode = WAL"); err != nil {
		return err
	}
	if err := execTransient(c, "BEGIN IMMEDIATE"); err != nil {
		return err
	}
	steps := schemaDDL
	if v == 1 {
		steps = append(slices.Clone(upgradeFrom1), schemaDDL...)
	}
	for _, q := range steps {
		if err := execTransient(c, q); err != nil {
			execTransient(c, "ROLLBACK")
			return err
		}
	}
	return execTransient(c, "COMMIT")
}

// Path returns the path of the database file.
func (db *DB) Path() string { return db.path }

// Close rolls back an open transaction, closes every cursor, waits until
// the commits made so far are durable, and closes the database. Close is
// idempotent.
func (db *DB) Close() error {
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.closed {
		return nil
	}
	db.closeCursors()
	var errs []error
	if db.inTx {
		if err := db.rollbackLocked(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := db.file.Last().Wait(context.Background()); err != nil && !errors.Is(err, durability.ErrClosed) {
		errs = append(errs, err)
	}
	errs = append(errs, db.closeConn())
	if err := db.file.Close(); err != nil {
		errs = append(errs, err)
	}
	if db.dbFile != nil {
		errs = append(errs, db.dbFile.Close())
	}
	return errors.Join(errs...)
}

func (db *DB) closeConn() error {
	db.closed = true
	db.finalizeStatements()
	err := CloseConn(db.conn)
	db.releaseAuthorizer() // after: SQLite calls the authorizer until closed
	return err
}

// finalizeStatements finalizes every prepared statement the DB keeps. No
// cursor may be open.
func (db *DB) finalizeStatements() {
	db.cache.clear()
	for q, s := range db.internal {
		s.Finalize()
		delete(db.internal, q)
	}
}

// lock takes the mutex and checks that the DB is open.
func (db *DB) lock() error {
	db.mu.Lock()
	if db.closed {
		db.mu.Unlock()
		return ErrClosed
	}
	return nil
}

// begin opens the implicit transaction if it is not open yet.
func (db *DB) begin() error {
	if db.aborted != nil {
		return db.aborted
	}
	if db.inTx {
		return nil
	}
	if db.noLookaside {
		// Without the arena SQLite still works, only slower: on failure
		// (out of memory), try again at the next turn.
		db.noLookaside = db.raw.setLookaside(lookasideSlotSize, lookasideSlotCount) != nil
	}
	db.raw.journalInMemory()
	if err := db.execInternal("BEGIN"); err != nil {
		return err
	}
	db.inTx = true
	return nil
}

// InTx reports whether the implicit transaction of the current turn is open.
func (db *DB) InTx() bool {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.inTx
}

// Commit ends the turn's implicit transaction. It closes every open cursor,
// then commits. If the transaction wrote anything, the returned Ticket is
// the durability File's Commit; otherwise it is the File's Last, so a
// read-only turn still waits for earlier writes it may have observed.
// With no transaction open, Commit just returns Last.
//
// If the commit fails (for example a deferred foreign key violation), the
// transaction is rolled back and the error returned: the turn's writes are
// gone. If SQLite had already rolled the transaction back, Commit returns
// the *TxAbortedError. Either way the next operation starts a fresh
// transaction.
func (db *DB) Commit() (durability.Ticket, error) {
	if err := db.lock(); err != nil {
		return durability.Ticket{}, err
	}
	defer db.mu.Unlock()
	if db.spDepth > 0 {
		return durability.Ticket{}, ErrInTransactionSync
	}
	db.closeCursors()
	if db.aborted != nil {
		err := db.aborted
		db.resetTx()
		db.alarm = alarmMemo{}
		return durability.Ticket{}, err
	}
	if !db.inTx {
		return db.file.Last(), nil
	}
	wrote := db.raw.writing()
	if wrote && db.dbFile != nil && !db.dbSynced {
		// The template was written without fsync: make it durable before
		// any commit on top of it is acknowledged.
		if err := db.dbFile.Sync(); err != nil {
			db.rollbackLocked()
			return durability.Ticket{}, fmt.Errorf("storage: commit: sync new database file: %w", err)
		}
		db.dbSynced = true
	}
	if err := db.execInternal("COMMIT"); err != nil {
		if !db.conn.AutocommitEnabled() {
			db.execInternal("ROLLBACK")
		}
		db.resetTx()
		db.alarm = alarmMemo{}
		return durability.Ticket{}, err
	}
	db.resetTx()
	if !wrote {
		return db.file.Last(), nil
	}
	st, ok := db.raw.walState()
	if !ok {
		return durability.Ticket{}, errors.New("storage: commit: the WAL is not open")
	}
	r := walRange(db.wal, db.walKnown, st)
	db.wal, db.walKnown = st, true
	data, err := db.raw.walData(r)
	if err != nil {
		// SQLite counts frames the file lacks: the connection must not go
		// on (the caller resets the object, which reopens the database).
		return durability.Ticket{}, err
	}
	t := db.file.CommitWALData(r, data)
	db.raw.releaseWAL()
	return t, nil
}

// walRange returns the bytes of the WAL file that the commits between
// states last and now added: the frames after last's, or, if the WAL was
// restarted since (new salts) or last is not known, the header and every
// frame.
func walRange(last walState, known bool, now walState) durability.WALRange {
	frame := int64(walFrameHeaderSize) + int64(now.pageSize)
	end := walHeaderSize + int64(now.mxFrame)*frame
	off := int64(0)
	if known && last.salt == now.salt && last.mxFrame <= now.mxFrame {
		off = walHeaderSize + int64(last.mxFrame)*frame
	}
	return durability.WALRange{Off: off, End: end, Ckpt: now.ckpt, Salt: now.salt}
}

// The sizes of SQLite's WAL header and of the header of each frame.
const (
	walHeaderSize      = 32
	walFrameHeaderSize = 24
)

// Rollback discards the turn's implicit transaction, if one is open, and
// closes every open cursor. It also clears a *TxAbortedError.
func (db *DB) Rollback() error {
	if err := db.lock(); err != nil {
		return err
	}
	defer db.mu.Unlock()
	if db.spDepth > 0 {
		return ErrInTransactionSync
	}
	db.closeCursors()
	return db.rollbackLocked()
}

func (db *DB) rollbackLocked() error {
	db.alarm = alarmMemo{}
	var err error
	if db.inTx && !db.conn.AutocommitEnabled() {
		err = db.execInternal("ROLLBACK")
	}
	db.resetTx()
	return err
}

func (db *DB) resetTx() {
	db.inTx = false
	db.aborted = nil
}

// TransactionSync runs fn as a nested unit of work inside the implicit
// transaction, using a savepoint. If fn returns an error or panics, the
// changes made since fn started are rolled back (and the panic continues);
// otherwise they join the enclosing transaction. TransactionSync returns
// fn's error. Calls may nest; Commit and Rollback may not be called from
// fn.
func (db *DB) TransactionSync(fn func() error) error {
	if err := db.lock(); err != nil {
		return err
	}
	if err := db.begin(); err != nil {
		db.mu.Unlock()
		return err
	}
	if db.spDepth >= MaxSavepointDepth {
		db.mu.Unlock()
		return &LimitError{Limit: LimitSavepointDepth, Max: MaxSavepointDepth}
	}
	if err := db.execInternal("SAVEPOINT _durable_sp"); err != nil {
		db.mu.Unlock()
		return err
	}
	db.spDepth++
	db.mu.Unlock()

	done := false
	defer func() {
		if done {
			return
		}
		// fn panicked: undo and let the panic continue.
		db.mu.Lock()
		db.spDepth--
		if !db.closed {
			db.undoSavepoint()
		}
		db.mu.Unlock()
	}()
	ferr := fn()
	done = true

	db.mu.Lock()
	defer db.mu.Unlock()
	db.spDepth--
	if db.closed {
		return errors.Join(ferr, ErrClosed)
	}
	if ferr != nil {
		if uerr := db.undoSavepoint(); uerr != nil {
			return errors.Join(ferr, uerr)
		}
		return ferr
	}
	if db.aborted != nil {
		return db.aborted
	}
	return db.execInternal("RELEASE _durable_sp")
}

// undoSavepoint rolls back to the innermost savepoint and removes it.
func (db *DB) undoSavepoint() error {
	db.alarm = alarmMemo{}
	if db.aborted != nil {
		return db.aborted
	}
	if err := db.execInternal("ROLLBACK TO _durable_sp"); err != nil {
		return err
	}
	return db.execInternal("RELEASE _durable_sp")
}

// InSavepoint reports whether a TransactionSync callback is running.
func (db *DB) InSavepoint() bool {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.spDepth > 0
}

// Last returns the Ticket of the last commit; see durability.File.Last.
func (db *DB) Last() durability.Ticket {
	return db.file.Last()
}

// DatabaseSize returns the bytes the database uses: (page_count -
// freelist_count) * page_size. It counts the internal tables too.
func (db *DB) DatabaseSize() (int64, error) {
	if err := db.lock(); err != nil {
		return 0, err
	}
	defer db.mu.Unlock()
	if err := db.begin(); err != nil {
		return 0, err
	}
	return db.sizeLocked()
}

func (db *DB) sizeLocked() (int64, error) {
	// Two PRAGMA statements rather than one SELECT from the pragma_*
	// table-valued functions: those are virtual tables, which stay
	// connected (about 9 KB) until the database is closed, and whose
	// objects keep the lookaside arena in use (see ReleaseMemory).
	var n [2]int64
	for i, q := range []string{"PRAGMA page_count", "PRAGMA freelist_count"} {
		s, err := db.prep(q)
		if err != nil {
			return 0, err
		}
		if n[i], err = db.queryInt(s); err != nil {
			return 0, err
		}
	}
	return (n[0] - n[1]) * pageSize, nil
}

// Stats returns the DB's counters. It does not start a transaction.
func (db *DB) Stats() Stats {
	db.mu.Lock()
	defer db.mu.Unlock()
	st := Stats{RowsRead: db.rowsRead, RowsWritten: db.rowsWritten}
	if db.closed {
		return st
	}
	if n, err := db.sizeLocked(); err == nil {
		st.Bytes = n
	}
	st.Memory = db.raw.memoryUsed()
	return st
}

// Rows returns Stats's RowsRead and RowsWritten without its queries: it is
// cheap enough to call after every turn. It works on a closed DB.
func (db *DB) Rows() (read, written int64) {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.rowsRead, db.rowsWritten
}

// ReleaseMemory gives back the memory an open database can do without:
// the page cache (pages no statement holds), the prepared statements (if
// no cursor is open), the C stack the connection grew, and the pages of
// the in-memory WAL index that hold nothing (see Memory in the package
// documentation).
//
// The engine may call it when an object goes idle without hibernating,
// but not after every turn: the next turn reads its pages again (from the
// OS cache) and prepares its statements again, which costs a few
// microseconds per statement. It does not start a transaction.
func (db *DB) ReleaseMemory() {
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.closed {
		return
	}
	if len(db.cursors) == 0 {
		db.finalizeStatements()
		// With the statements gone the lookaside arena is normally
		// unused and can go too (8 KiB); begin brings it back.
		if !db.noLookaside && db.raw.setLookaside(0, 0) == nil {
			db.noLookaside = true
		}
	}
	db.raw.releaseMemory()
	db.raw = renewTLS(db.conn).withPager()
	db.raw.trimWALIndex(&db.walTrimmed)
}

// closeCursors closes every open cursor; their later use fails.
func (db *DB) closeCursors() {
	for c := range db.cursors {
		c.closeLocked()
	}
}

// prep returns a cached internal statement, reset and without bindings.
func (db *DB) prep(query string) (*sqlite.Stmt, error) {
	if s, ok := db.internal[query]; ok {
		return s, nil
	}
	db.userSQL = false
	s, trailing, err := db.conn.PrepareTransient(query)
	if err != nil {
		return nil, db.sqlErr(err)
	}
	if trailing != 0 {
		s.Finalize()
		return nil, fmt.Errorf("storage: internal statement has trailing text: %q", query)
	}
	db.internal[query] = s
	return s, nil
}

// step steps an internal statement; on error or when done it is reset.
func (db *DB) step(s *sqlite.Stmt) (bool, error) {
	db.userSQL = false
	row, err := s.Step()
	if err != nil {
		return false, db.sqlErr(err)
	}
	return row, nil
}

// finish resets an internal statement after use.
func (db *DB) finish(s *sqlite.Stmt) {
	s.Reset()
	s.ClearBindings()
}

// execInternal runs an internal statement without bindings to completion.
func (db *DB) execInternal(query string) error {
	s, err := db.prep(query)
	if err != nil {
		return err
	}
	defer db.finish(s)
	for {
		row, err := db.step(s)
		if err != nil || !row {
			return err
		}
	}
}

// queryInt runs s and returns the integer in its first column.
func (db *DB) queryInt(s *sqlite.Stmt) (int64, error) {
	defer db.finish(s)
	row, err := db.step(s)
	if err != nil {
		return 0, err
	}
	if !row {
		return 0, errors.New("storage: internal query returned no row")
	}
	return s.ColumnInt64(0), nil
}

// sqlErr converts a driver error into a typed error, and records that
// SQLite rolled the implicit transaction back if it did.
func (db *DB) sqlErr(err error) error {
	if err == nil {
		return nil
	}
	code, msg := db.raw.errInfo()
	if code == sqlite.ResultOK || sqlite.ErrCode(err).ToPrimary() != code.ToPrimary() {
		code = sqlite.ErrCode(err)
		msg = err.Error()
	}
	var out error
	switch {
	case code.ToPrimary() == sqlite.ResultAuth && db.denial != nil:
		out = db.denial
	case code.ToPrimary() == sqlite.ResultFull && db.raw.diskFull():
		out = fmt.Errorf("%w: %w", ErrDiskFull, sqlError(code, msg))
	case code.ToPrimary() == sqlite.ResultFull:
		out = &LimitError{Limit: LimitDatabaseSize, Max: db.opts.MaxDatabaseSize, Err: sqlError(code, msg)}
	case code.ToPrimary() == sqlite.ResultTooBig:
		if strings.Contains(msg, "statement too long") {
			out = &LimitError{Limit: LimitSQLLength, Max: MaxSQLLength, Err: sqlError(code, msg)}
		} else {
			out = &LimitError{Limit: LimitLength, Max: MaxLength, Err: sqlError(code, msg)}
		}
	default:
		out = limitFromMessage(code, msg)
		if out == nil {
			out = sqlError(code, msg)
		}
	}
	db.denial = nil
	if db.inTx && db.conn.AutocommitEnabled() && db.aborted == nil {
		db.aborted = &TxAbortedError{Cause: out}
		db.alarm = alarmMemo{}
		db.closeCursors()
		db.spDepth = 0
		return db.aborted
	}
	return out
}

func sqlError(code sqlite.ResultCode, msg string) *SQLError {
	return &SQLError{Code: int(code), Name: code.String(), Message: msg}
}

// limitMessages maps SQLite's messages for limit violations to limits.
var limitMessages = []struct {
	substr string
	limit  string
	max    int64
}{
	{"too many columns", LimitColumns, MaxColumns},
	{"too many SQL variables", LimitBoundParameters, MaxBoundParameters},
	{"variable number must be between", LimitBoundParameters, MaxBoundParameters},
	{"too many arguments on function", LimitFunctionArgs, MaxFunctionArgs},
	{"LIKE or GLOB pattern too complex", LimitLikePattern, MaxLikePattern},
	{"too many terms in compound SELECT", LimitCompoundSelect, MaxCompoundSelect},
	{"too many levels of trigger recursion", LimitTriggerDepth, MaxTriggerDepth},
	{"Expression tree is too large", LimitExprDepth, MaxExprDepth},
	{"too many operations", LimitVDBEOps, MaxVDBEOps},
	{"statement too long", LimitSQLLength, MaxSQLLength},
}

func limitFromMessage(code sqlite.ResultCode, msg string) error {
	for _, m := range limitMessages {
		if strings.Contains(msg, m.substr) {
			return &LimitError{Limit: m.limit, Max: m.max, Err: sqlError(code, msg)}
		}
	}
	return nil
}

// mkdirs creates dir and its missing parents. With sync set, it fsyncs the
// parent of every directory it creates, so that the new entries survive a
// power loss (durability.File fsyncs dir itself before the first commit).
func mkdirs(dir string, sync bool) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil || filepath.Dir(d) == d {
			break
		}
		missing = append(missing, d)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if !sync {
		return nil
	}
	for _, d := range missing {
		if err := durability.SyncDir(filepath.Dir(d)); err != nil {
			return err
		}
	}
	return nil
}
