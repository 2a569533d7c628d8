package durability

import (
	"errors"

	"golang.org/x/sys/unix"
)

// fullSync makes fd's data durable on stable storage. On macOS fsync(2)
// only hands the data to the drive, which may keep it in its cache across
// a power loss; fcntl F_FULLFSYNC asks the drive to flush. File systems
// that do not support it (some network and FUSE ones) get fsync.
func fullSync(fd uintptr) error {
	_, err := unix.FcntlInt(fd, unix.F_FULLFSYNC, 0)
	if err == nil {
		return nil
	}
	if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EINVAL) {
		return unix.Fsync(int(fd))
	}
	return err
}
