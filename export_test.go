package durable

import (
	"os"

	"github.com/durable-go/durable/internal/durability"
)

// OpenWithSyncHooks opens a runtime whose durability layer calls file
// instead of fsync for a WAL file, and fs instead of syncfs for a batch of
// at least batch WAL files. Tests use them to record what was durable when.
func OpenWithSyncHooks(opts Options, file func(*os.File) error, fs func([]*os.File) error, batch int) (*Runtime, error) {
	return open(opts, durability.Config{SyncFile: file, SyncFS: fs, BatchThreshold: batch})
}
