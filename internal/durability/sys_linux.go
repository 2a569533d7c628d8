package durability

import (
	"hash/maphash"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The system calls durability makes, on Linux; sys_other.go has the
// portable versions for other systems.

// hasSyncFS reports whether syncfsFD makes a whole file system durable.
// Without it a Group syncs each file (see New) and keeps no journal.
const hasSyncFS = true

// syncfsFD runs syncfs(2) on the file system that holds fd.
func syncfsFD(fd uintptr) error { return unix.Syncfs(int(fd)) }

// fdatasync makes f's data durable (and the metadata needed to read it).
func fdatasync(fd uintptr) error { return unix.Fdatasync(int(fd)) }

// startWriteback asks the kernel to start writing f's dirty pages back.
func startWriteback(fd uintptr) {
	_ = unix.SyncFileRange(int(fd), 0, 0, unix.SYNC_FILE_RANGE_WRITE)
}

// rawSync runs fdatasync(2), if data is set, or fsync(2) on fd, holding
// the P through the call (raw) or not.
func rawSync(fd uintptr, data, raw bool) error {
	nr := uintptr(unix.SYS_FSYNC)
	if data {
		nr = unix.SYS_FDATASYNC
	}
	var errno unix.Errno
	if raw {
		_, _, errno = unix.RawSyscall(nr, fd, 0, 0)
	} else {
		_, _, errno = unix.Syscall(nr, fd, 0, 0)
	}
	if errno != 0 {
		return errno
	}
	return nil
}

// rawRW runs one pwrite(2), if write is set, or pread(2) without giving
// up the P.
func rawRW(write bool, f *os.File, buf []byte, off int64) (int, error) {
	nr := uintptr(unix.SYS_PREAD64)
	if write {
		nr = unix.SYS_PWRITE64
	}
	n, _, errno := unix.RawSyscall6(nr, f.Fd(), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), uintptr(off), 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// keyOf identifies the file at path: its path, inode and birth time. Zero
// if the file system does not record a birth time; an error if the file
// is missing.
func keyOf(path string) (fileKey, error) {
	var st unix.Statx_t
	err := unix.Statx(unix.AT_FDCWD, path, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_INO|unix.STATX_BTIME, &st)
	if err != nil {
		return fileKey{}, &os.PathError{Op: "statx", Path: path, Err: err}
	}
	if st.Mask&(unix.STATX_INO|unix.STATX_BTIME) != unix.STATX_INO|unix.STATX_BTIME {
		return fileKey{}, nil
	}
	return fileKey{
		path:  maphash.String(pathSeed, path),
		ino:   st.Ino,
		birth: st.Btime.Sec*1e9 + int64(st.Btime.Nsec),
	}, nil
}
