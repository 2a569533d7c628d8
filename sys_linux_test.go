package durable_test

import (
	"os"

	"golang.org/x/sys/unix"
)

// fdatasync is fdatasync(2), for the raw baselines of the benchmarks.
func fdatasync(f *os.File) error { return unix.Fdatasync(int(f.Fd())) }
