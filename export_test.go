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
	return open(opts, durability.Config{SyncFile: file, SyncFS: fs, BatchThreshold: batch, PerFile: true})
}

// OpenWithJournalHooks opens a runtime that journals its commits (as Open
// does) with journal files of size bytes (0: the default), calling sync
// instead of fdatasync on a journal file and instead of fsync on a WAL file
// (a batch of commits of one object only), and fs instead of syncfs when
// it rotates or closes. Nil hooks keep the real calls.
func OpenWithJournalHooks(opts Options, sync func(*os.File) error, fs func([]*os.File) error, size int64) (*Runtime, error) {
	return open(opts, durability.Config{SyncJournal: sync, SyncFile: sync, SyncFS: fs, JournalSize: size})
}
