//go:build !linux && !darwin

package durability

import "golang.org/x/sys/unix"

// fullSync makes fd's data durable: fsync(2).
func fullSync(fd uintptr) error { return unix.Fsync(int(fd)) }
