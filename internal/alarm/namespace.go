package alarm

import (
	"errors"
	"fmt"
	"os"

	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"
)

// The functions below rewrite the index rows of a whole namespace, for
// class migrations (renames, deletions, transfers between data folders).
// No Scheduler may have the index open meanwhile: the caller holds the
// data folder's lock and runs them before Open. Each is one transaction,
// fsynced, and idempotent: running it again after a crash, whether or not
// the first run committed, leaves the same rows.

// RenameNamespace moves the rows of namespace from to namespace to in the
// index at path (replacing rows of to with the same ID) and returns how
// many it moved. A missing index has no rows.
func RenameNamespace(path, from, to string) (int, error) {
	return withIndex(path, false, func(c *sqlite.Conn) (int, error) {
		err := sqlitex.Execute(c, "UPDATE OR REPLACE alarms SET ns = ? WHERE ns = ?",
			&sqlitex.ExecOptions{Args: []any{to, from}})
		return c.Changes(), err
	})
}

// DeleteNamespace deletes the rows of namespace ns from the index at path
// and returns how many it deleted.
func DeleteNamespace(path, ns string) (int, error) {
	return withIndex(path, false, func(c *sqlite.Conn) (int, error) {
		err := sqlitex.Execute(c, "DELETE FROM alarms WHERE ns = ?", &sqlitex.ExecOptions{Args: []any{ns}})
		return c.Changes(), err
	})
}

// CopyNamespace copies the rows of namespace from in the index at src into
// the index at dst as rows of namespace to (replacing rows with the same
// ID), creating dst if needed, and returns how many it copied. The rows
// stay in src; DeleteNamespace removes them once the objects have moved.
func CopyNamespace(src, from, dst, to string) (int, error) {
	type row struct {
		id []byte
		at int64
	}
	var rows []row
	_, err := withIndex(src, false, func(c *sqlite.Conn) (int, error) {
		err := sqlitex.Execute(c, "SELECT id, at FROM alarms WHERE ns = ?", &sqlitex.ExecOptions{
			Args: []any{from},
			ResultFunc: func(s *sqlite.Stmt) error {
				id := make([]byte, s.ColumnLen(0))
				s.ColumnBytes(0, id)
				rows = append(rows, row{id: id, at: s.ColumnInt64(1)})
				return nil
			},
		})
		return 0, err
	})
	if err != nil || len(rows) == 0 {
		return 0, err
	}
	return withIndex(dst, true, func(c *sqlite.Conn) (int, error) {
		ins, err := c.Prepare("INSERT OR REPLACE INTO alarms (ns, id, at) VALUES (?, ?, ?)")
		if err != nil {
			return 0, err
		}
		for _, r := range rows {
			ins.BindText(1, to)
			ins.BindBytes(2, r.id)
			ins.BindInt64(3, r.at)
			_, err := ins.Step()
			if rerr := ins.Reset(); err == nil {
				err = rerr
			}
			if err != nil {
				return 0, err
			}
		}
		return len(rows), nil
	})
}

// withIndex runs fn in one write transaction of the index at path. A
// missing index is created if create is set, and otherwise has no rows
// (fn does not run).
func withIndex(path string, create bool, fn func(*sqlite.Conn) (int, error)) (n int, err error) {
	if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) && !create {
		return 0, nil
	}
	x, _, err := openIndex(path, true)
	if err != nil {
		return 0, err
	}
	defer func() {
		if cerr := x.close(); err == nil && cerr != nil {
			err = fmt.Errorf("alarm: close index %s: %w", path, cerr)
		}
	}()
	c := x.conn
	if err := sqlitex.ExecuteTransient(c, "BEGIN IMMEDIATE", nil); err != nil {
		return 0, fmt.Errorf("alarm: index %s: %w", path, err)
	}
	n, err = fn(c)
	if err == nil {
		err = sqlitex.ExecuteTransient(c, "COMMIT", nil)
	}
	if err != nil {
		if !c.AutocommitEnabled() {
			sqlitex.ExecuteTransient(c, "ROLLBACK", nil)
		}
		return 0, fmt.Errorf("alarm: index %s: %w", path, err)
	}
	return n, nil
}
