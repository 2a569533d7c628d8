package durable

import (
	"os"

	"github.com/durable-go/durable/internal/durability"
)

// OpenWithSyncHooks opens a runtime whose durability layer calls file
// instead of fsync for a WAL file, and fs instead of syncfs for a batch of
// at least batch WAL files. Tests use them to record what was durable when.
// A nil fs calls file on each file of the batch.
func OpenWithSyncHooks(opts Options, file func(*os.File) error, fs func([]*os.File) error, batch int) (*Runtime, error) {
	if fs == nil {
		fs = func(files []*os.File) error {
			for _, f := range files {
				if err := file(f); err != nil {
					return err
				}
			}
			return nil
		}
	}
	return open(opts, durability.Config{SyncFile: file, SyncFS: fs, BatchThreshold: batch})
}
