//go:build !linux

package durable_test

import "os"

// fdatasync is fsync elsewhere than Linux.
func fdatasync(f *os.File) error { return f.Sync() }
