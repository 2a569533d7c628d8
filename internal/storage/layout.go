package storage

import (
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// A data folder keeps one database per object at
// <dir>/<namespace>/<id[:2]>/<id>.sqlite, id being the object's ID in 64
// lowercase hexadecimal digits: names on disk come from IDs, never from
// object names. ObjectPath and ObjectIDs are the one place that knows it.

// DBSuffix ends the name of every object database file.
const DBSuffix = ".sqlite"

// ObjectPath returns the database file of object hexID of namespace ns in
// the data folder dir.
func ObjectPath(dir, ns, hexID string) string {
	return filepath.Join(dir, ns, hexID[:2], hexID+DBSuffix)
}

// ObjectIDs lists, sorted, the IDs (64 lowercase hexadecimal digits) of
// the object databases in the folder of namespace ns of the data folder
// dir: files of that layout only, whatever namespace their IDs' MACs
// belong to (callers check). A missing folder has none.
func ObjectIDs(dir, ns string) ([]string, error) {
	nsDir := filepath.Join(dir, ns)
	shards, err := os.ReadDir(nsDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, sh := range shards {
		if !sh.IsDir() || len(sh.Name()) != 2 {
			continue
		}
		files, err := os.ReadDir(filepath.Join(nsDir, sh.Name()))
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			id, ok := strings.CutSuffix(f.Name(), DBSuffix)
			if !ok || len(id) != 64 || !strings.HasPrefix(id, sh.Name()) || id != strings.ToLower(id) {
				continue
			}
			if _, err := hex.DecodeString(id); err == nil {
				ids = append(ids, id)
			}
		}
	}
	slices.Sort(ids)
	return ids, nil
}
