package durable

import "os"

// OpenWithSyncHook opens a runtime whose durability layer calls hook
// instead of fsync for every WAL sync. Tests use it to record what was
// durable when.
func OpenWithSyncHook(opts Options, hook func(*os.File) error) (*Runtime, error) {
	return open(opts, hook)
}
