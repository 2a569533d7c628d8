//go:build !linux

package durability

import "os"

// The portable versions of sys_linux.go. Without syncfs(2) a Group keeps
// no node journal: each batch fsyncs every file it covers, with fullSync
// (on macOS F_FULLFSYNC, since fsync there leaves the data in the drive's
// cache). The runtime is built and measured for Linux; these keep it
// usable elsewhere.

const hasSyncFS = false

// syncfsFD is not available: it syncs fd alone (see SyncFS and syncFS).
func syncfsFD(fd uintptr) error { return fullSync(fd) }

func fdatasync(fd uintptr) error { return fullSync(fd) }

func startWriteback(uintptr) {}

func rawSync(fd uintptr, _, _ bool) error { return fullSync(fd) }

func rawRW(write bool, f *os.File, buf []byte, off int64) (int, error) {
	if write {
		return f.WriteAt(buf, off)
	}
	return f.ReadAt(buf, off)
}

// keyOf returns zero: without a birth time the directory is always
// synced. It fails if the file is missing.
func keyOf(path string) (fileKey, error) {
	if _, err := os.Lstat(path); err != nil {
		return fileKey{}, err
	}
	return fileKey{}, nil
}
