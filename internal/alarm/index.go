package alarm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/durable-go/durable/internal/durability"
	"github.com/durable-go/durable/internal/storage"
	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"
)

// Key names one object: its namespace and its 32-byte ID.
type Key struct {
	NS string
	ID [32]byte
}

// indexVersion is the index file's user_version.
const indexVersion = 1

// index is the SQLite file holding one row per object with an alarm:
// (namespace, id, time in Unix nanoseconds). It is used by one goroutine
// at a time (Open, then the writer), through storage.OpenPrivate: the
// runtime holds the index open for its life, and a file open through
// SQLite's default VFS would slow every object's open (see there). The
// runtime's lock on its data folder keeps other processes out.
type index struct {
	conn *sqlite.Conn
	path string
}

// indexRow is one loaded row.
type indexRow struct {
	key Key
	at  time.Time
}

// openIndex opens or creates the index at path and reads every row. With
// sync, each write transaction is fsynced before it returns (WAL mode,
// synchronous=FULL); without, writes reach only the operating system.
func openIndex(path string, sync bool) (*index, []indexRow, error) {
	_, statErr := os.Lstat(path)
	created := errors.Is(statErr, os.ErrNotExist)
	conn, err := storage.OpenPrivate(path, sqlite.OpenReadWrite|sqlite.OpenCreate)
	if err != nil {
		return nil, nil, fmt.Errorf("alarm: open index %s: %w", path, err)
	}
	x := &index{conn: conn, path: path}
	rows, err := x.setup(sync, created)
	if err != nil {
		storage.CloseConn(conn)
		return nil, nil, fmt.Errorf("alarm: open index %s: %w", path, err)
	}
	return x, rows, nil
}

func (x *index) setup(sync, created bool) ([]indexRow, error) {
	c := x.conn
	c.SetBusyTimeout(0)
	mode := "FULL"
	if !sync {
		mode = "OFF"
	}
	for _, q := range []string{
		"PRAGMA synchronous = " + mode,
		"PRAGMA journal_mode = WAL",
	} {
		if err := sqlitex.ExecuteTransient(c, q, nil); err != nil {
			return nil, fmt.Errorf("%s: %w", q, err)
		}
	}
	var version int64
	err := sqlitex.ExecuteTransient(c, "PRAGMA user_version", &sqlitex.ExecOptions{
		ResultFunc: func(s *sqlite.Stmt) error { version = s.ColumnInt64(0); return nil },
	})
	if err != nil {
		return nil, err
	}
	switch {
	case version > indexVersion:
		return nil, fmt.Errorf("index version %d is newer than this program's %d", version, indexVersion)
	case version < indexVersion:
		err := sqlitex.ExecuteScript(c, `
			CREATE TABLE IF NOT EXISTS alarms (
				ns TEXT NOT NULL,
				id BLOB NOT NULL,
				at INTEGER NOT NULL,
				PRIMARY KEY (ns, id)
			) WITHOUT ROWID;
			PRAGMA user_version = 1;`, nil)
		if err != nil {
			return nil, err
		}
	}
	if created && sync {
		// The file's directory entry must survive a power loss before any
		// alarm relies on it. (SQLite syncs the directory of the WAL file
		// itself at its first sync.)
		if err := durability.SyncDir(filepath.Dir(x.path)); err != nil {
			return nil, err
		}
	}
	var rows []indexRow
	err = sqlitex.ExecuteTransient(c, "SELECT ns, id, at FROM alarms", &sqlitex.ExecOptions{
		ResultFunc: func(s *sqlite.Stmt) error {
			var r indexRow
			r.key.NS = s.ColumnText(0)
			if s.ColumnLen(1) != len(r.key.ID) {
				return nil // not ours: ignore
			}
			s.ColumnBytes(1, r.key.ID[:])
			r.at = time.Unix(0, s.ColumnInt64(2)).UTC()
			rows = append(rows, r)
			return nil
		},
	})
	return rows, err
}

// op is one index change: an upsert of key's row to at, or its deletion.
type op struct {
	e   *entry
	del bool
	at  time.Time
}

// apply runs ops in one transaction.
func (x *index) apply(ops []op) (err error) {
	c := x.conn
	if err := sqlitex.ExecuteTransient(c, "BEGIN IMMEDIATE", nil); err != nil {
		return err
	}
	defer func() {
		if err != nil && !c.AutocommitEnabled() {
			sqlitex.ExecuteTransient(c, "ROLLBACK", nil)
		}
	}()
	up, err := c.Prepare("INSERT INTO alarms (ns, id, at) VALUES (?, ?, ?) ON CONFLICT (ns, id) DO UPDATE SET at = excluded.at")
	if err != nil {
		return err
	}
	del, err := c.Prepare("DELETE FROM alarms WHERE ns = ? AND id = ?")
	if err != nil {
		return err
	}
	for _, o := range ops {
		s := up
		if o.del {
			s = del
		}
		s.BindText(1, o.e.key.NS)
		s.BindBytes(2, o.e.key.ID[:])
		if !o.del {
			s.BindInt64(3, o.at.UnixNano())
		}
		_, err := s.Step()
		if rerr := s.Reset(); err == nil {
			err = rerr
		}
		if err != nil {
			return err
		}
	}
	return sqlitex.ExecuteTransient(c, "COMMIT", nil)
}

func (x *index) close() error { return storage.CloseConn(x.conn) }
