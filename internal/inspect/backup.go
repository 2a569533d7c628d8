package inspect

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/durable-go/durable/internal/alarm"

	"github.com/durable-go/durable/internal/storage"
)

// BackupResult says what Backup wrote.
type BackupResult struct {
	Dir     string `json:"dir"`
	Objects int    `json:"objects"`
	Bytes   int64  `json:"bytes"`
	Alarms  int    `json:"alarms"`
}

// Backup copies every object that api lists into dst, a new data folder
// (dst must not exist or be empty), calling progress after each object if
// it is not nil. Each object is a consistent snapshot (Export in
// FormatSQLite); offline, with the folder lock held, the whole backup is
// one. The copy gets a fresh alarm index built from the copied objects'
// alarms, so every alarm fires once the folder is opened. Files and
// folders are fsynced before Backup returns. An object deleted while the
// backup runs is left out.
func Backup(ctx context.Context, api API, dst string, progress Progress) (*BackupResult, error) {
	if ents, err := os.ReadDir(dst); err == nil && len(ents) > 0 {
		return nil, fmt.Errorf("%w: %s", ErrExists, dst)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	objs, err := api.Objects(ctx, "")
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return nil, err
	}
	res := &BackupResult{Dir: dst}
	type due struct {
		key alarm.Key
		at  time.Time
	}
	var alarms []due
	dirs := map[string]bool{dst: true, filepath.Dir(dst): true}
	for i, o := range objs {
		dir := filepath.Join(dst, o.Namespace, o.ID[:2])
		path := filepath.Join(dir, o.ID+storage.DBSuffix)
		size, at, err := backupObject(ctx, api, o, dir, path)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		dirs[dir], dirs[filepath.Dir(dir)] = true, true
		res.Objects++
		res.Bytes += size
		if at != nil {
			k := alarm.Key{NS: o.Namespace}
			hex.Decode(k.ID[:], []byte(o.ID))
			alarms = append(alarms, due{k, *at})
		}
		if progress != nil {
			progress(i+1, len(objs))
		}
	}
	if len(alarms) > 0 {
		s, err := alarm.Open(alarm.Config{
			Path:    filepath.Join(dst, alarmIndexFile),
			NoSync:  true, // fsynced below
			Workers: 1,
			Deliver: func(context.Context, alarm.Delivery) alarm.Result { return alarm.Result{Err: errNoDelivery} },
		})
		if err != nil {
			return nil, err
		}
		for _, a := range alarms {
			c, err := s.Prepare(a.key, a.at, true)
			if err != nil {
				s.Close()
				return nil, err
			}
			s.Committed(c, doneTicket{}, nil)
		}
		if err := s.Close(); err != nil {
			return nil, err
		}
		if err := syncPath(filepath.Join(dst, alarmIndexFile)); err != nil {
			return nil, err
		}
		res.Alarms = len(alarms)
	}
	for d := range dirs {
		if err := syncPath(d); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// backupObject exports o into path (through a temporary file, renamed
// once complete and fsynced) and reads its alarm back from the copy.
func backupObject(ctx context.Context, api API, o Object, dir, path string) (int64, *time.Time, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, nil, err
	}
	part := path + ".part"
	out, err := os.Create(part)
	if err != nil {
		return 0, nil, err
	}
	err = api.Export(ctx, o.Namespace, o.ID, FormatSQLite, out)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(part, path)
	}
	if err != nil {
		os.Remove(part)
		return 0, nil, err
	}
	st, err := os.Stat(path)
	if err != nil {
		return 0, nil, err
	}
	conn, closeConn, err := openRead(ctx, path)
	if err != nil {
		return 0, nil, err
	}
	defer closeConn()
	m, err := readMeta(conn)
	return st.Size(), m.alarm, err
}

// doneTicket is the ticket of a commit that is durable already.
type doneTicket struct{}

func (doneTicket) Wait(context.Context) error { return nil }

// syncPath fsyncs a file or directory.
func syncPath(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
