package inspect

import (
	"context"
	"errors"
	"fmt"
	"time"

	"zombiezen.com/go/sqlite"
)

// maxProblems bounds the problems reported per object and kind.
const maxProblems = 20

// Check implements API. For each object it runs SQLite's integrity_check
// and foreign_key_check, checks the runtime's tables are there, the
// metadata well typed, the stored name an ID of this object and every KV
// value decodable; offline, it also checks that the node's alarm index
// announces the object's alarm (else the alarm would never fire). A
// database that cannot be read at all is a problem too. Check fails only
// when it cannot go on (ctx ended, the folder cannot be listed).
func (f *Folder) Check(ctx context.Context, namespace string, progress Progress) ([]CheckResult, error) {
	refs, err := f.allRefs(namespace)
	if err != nil {
		return nil, err
	}
	var index map[Ref]time.Time // offline only: live, the index moves under us
	if f.cfg.Gate == nil {
		rows, err := readIndex(ctx, f.cfg.Dir)
		if err != nil {
			return nil, err
		}
		index = make(map[Ref]time.Time, len(rows))
		for _, r := range rows {
			index[Ref{Namespace: r.Namespace, ID: r.ID}] = r.At
		}
	}
	out := make([]CheckResult, 0, len(refs))
	if progress != nil {
		progress(0, len(refs))
	}
	for i, r := range refs {
		res := CheckResult{Namespace: r.Namespace, ID: r.ID}
		var alarm *time.Time
		err := f.exclusive(ctx, r, func() error {
			var err error
			alarm, err = f.checkOne(ctx, r, &res)
			return err
		})
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		switch {
		case errors.Is(err, ErrNotFound):
			continue // deleted meanwhile
		case err != nil:
			res.Problems = append(res.Problems, err.Error())
		}
		if alarm != nil && index != nil {
			if at, ok := index[r]; !ok || at.After(*alarm) {
				res.Problems = append(res.Problems, fmt.Sprintf("alarm at %s is not announced in the alarm index (%s): it will not fire; import the object again to repair it",
					alarm.Format(time.RFC3339Nano), alarmIndexFile))
			}
		}
		res.OK = len(res.Problems) == 0
		out = append(out, res)
		if progress != nil {
			progress(i+1, len(refs))
		}
	}
	return out, nil
}

// checkOne checks the database of r, adding what is wrong to res. It
// returns the stored alarm.
func (f *Folder) checkOne(ctx context.Context, r Ref, res *CheckResult) (*time.Time, error) {
	conn, closeConn, err := openRead(ctx, f.path(r))
	if err != nil {
		return nil, err
	}
	defer closeConn()
	problem := func(format string, args ...any) { res.Problems = append(res.Problems, fmt.Sprintf(format, args...)) }
	m, metaErr := readMeta(conn) // first: a damaged object is still named
	if name := m.name(); name != "" {
		res.Name = name
	}
	err = exec(conn, fmt.Sprintf("PRAGMA integrity_check(%d)", maxProblems), nil, func(s *sqlite.Stmt) error {
		if msg := s.ColumnText(0); msg != "ok" {
			problem("integrity: %s", msg)
		}
		return nil
	})
	if err != nil {
		return nil, sqlErr(ctx, err)
	}
	if len(res.Problems) > 0 {
		return nil, nil // the rest would read damaged pages
	}
	n := 0
	err = exec(conn, "PRAGMA foreign_key_check", nil, func(s *sqlite.Stmt) error {
		if n++; n <= maxProblems {
			problem("foreign key: row %d of table %s refers to a missing row of %s", s.ColumnInt64(1), s.ColumnText(0), s.ColumnText(2))
		}
		return nil
	})
	if err != nil {
		return nil, sqlErr(ctx, err)
	}
	if ok, err := hasTable(conn, kvTable); err != nil {
		return nil, sqlErr(ctx, err)
	} else if !ok {
		problem("layout: table %s is missing: not a database made by the runtime", kvTable)
	}
	if metaErr != nil {
		problem("metadata: %v", metaErr)
	}
	if name := m.name(); name != "" {
		if rr, err := f.cfg.Resolve(r.Namespace, name); err != nil || rr.ID != r.ID {
			problem("metadata: the stored name %q is not the name of this ID", name)
		}
	}
	n = 0
	err = eachKV(conn, func(key string, val []byte) error {
		if _, msg := decodeKV(val); msg != "" {
			if n++; n <= maxProblems {
				problem("KV: the value of key %q does not decode: %s", key, msg)
			}
		}
		return nil
	})
	if err != nil {
		return nil, sqlErr(ctx, err)
	}
	if n > maxProblems {
		problem("KV: %d more values do not decode", n-maxProblems)
	}
	return m.alarm, nil
}
