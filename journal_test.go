package durable_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/durable-go/durable"
)

// journalLoss models a power loss for a runtime that makes commits durable
// through its node journal. It keeps, for each file, the image the file
// had when a sync that covers it began:
//
//   - a journal file: at each sync of it (fdatasync);
//   - every file of the data folder: at each syncfs (a journal rotation);
//   - SQLite syncs a WAL's header itself before writing frames after it,
//     and a database file itself at each checkpoint, so at the crash a
//     WAL keeps its current header and database files are kept as they
//     are.
//
// Everything else written since its last image is lost.
type journalLoss struct {
	dir string

	reads atomic.Uint64 // orders the reads of images

	mu        sync.Mutex
	images    map[string][]byte
	readAt    map[string]uint64 // when images[path] was read (p.reads)
	frozen    bool              // stop recording: the workload is over
	skipSync  bool              // negative control: journal syncs record nothing
	rotations int
}

// keepLocked records img, read at stamp at, as path's image unless an
// image read later is recorded already: a syncfs runs in the background
// and may finish after a journal sync that read the file after it did.
func (p *journalLoss) keepLocked(path string, img []byte, at uint64) {
	if at >= p.readAt[path] {
		p.images[path], p.readAt[path] = img, at
	}
}

func (p *journalLoss) syncJournal(f *os.File) error {
	at := p.reads.Add(1)
	img, err := os.ReadFile(f.Name())
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.frozen && !p.skipSync {
		p.keepLocked(f.Name(), img, at)
	}
	return nil
}

func (p *journalLoss) syncFS(files []*os.File) error {
	type image struct {
		img []byte
		at  uint64
	}
	images := map[string]image{}
	err := filepath.Walk(p.dir, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() || !p.tracked(path) {
			return err
		}
		at := p.reads.Add(1)
		img, err := os.ReadFile(path)
		if err == nil {
			images[path] = image{img, at}
		}
		return err
	})
	if err != nil {
		return err
	}
	if err := files[0].Sync(); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.frozen {
		for k, v := range images {
			p.keepLocked(k, v.img, v.at)
		}
		p.rotations++
	}
	return nil
}

func (p *journalLoss) tracked(path string) bool {
	return strings.Contains(path, "Journal") || strings.Contains(path, ".journal")
}

// crash puts every tracked file back to its last image.
func (p *journalLoss) crash(t *testing.T) {
	p.mu.Lock()
	defer p.mu.Unlock()
	err := filepath.Walk(p.dir, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() || !p.tracked(path) {
			return err
		}
		img, ok := p.images[path]
		switch {
		case strings.HasSuffix(path, "-wal"):
			cur, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			// The current header (synced by SQLite) over the last image.
			out := img
			if !ok || len(img) < 32 {
				out = nil
			}
			out = append([]byte(nil), out...)
			if len(cur) >= 32 {
				if len(out) < 32 {
					out = append(out, make([]byte, 32-len(out))...)
				}
				copy(out, cur[:32])
			}
			return os.WriteFile(path, out, 0o644)
		case strings.Contains(path, ".journal"):
			if !ok {
				img = make([]byte, info.Size()) // preallocated zeros
			}
			return os.WriteFile(path, img, 0o644)
		default:
			return nil // database files: see journalLoss
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}

// runJournalLoss writes from 32 callers over powerLossObjects objects,
// simulates a power loss, reopens the folder and counts the acknowledged
// writes that are missing.
func runJournalLoss(t *testing.T, objects int, size int64, skipSync, dropJournal bool) (acked, missing, rotations int) {
	dir := t.TempDir()
	pl := &journalLoss{dir: dir, images: map[string][]byte{}, readAt: map[string]uint64{}, skipSync: skipSync}
	rt, err := durable.OpenWithJournalHooks(durable.Options{Dir: dir}, pl.syncJournal, pl.syncFS, size)
	if err != nil {
		t.Fatal(err)
	}
	ackedNs := appendFromMany(t, durable.MustRegister(rt, "Journal", newJournal, struct{}{}), objects)
	pl.mu.Lock()
	pl.frozen = true
	rotations = pl.rotations
	pl.mu.Unlock()
	rt.Close()
	if objects == 2 && maxCheckpointSeq(t, dir) == 0 {
		t.Error("no WAL was checkpointed and restarted: that path went untested")
	}
	pl.crash(t)
	if dropJournal {
		if err := os.RemoveAll(filepath.Join(dir, ".journal")); err != nil {
			t.Fatal(err)
		}
	}

	missing = countMissing(t, dir, objects, ackedNs)
	return len(ackedNs), missing, rotations
}

// maxCheckpointSeq returns the highest checkpoint sequence in the headers
// of the WAL files under dir: how many times a WAL was restarted.
func maxCheckpointSeq(t *testing.T, dir string) uint32 {
	var seq uint32
	err := filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err != nil || !strings.HasSuffix(path, "-wal") {
			return err
		}
		b, err := os.ReadFile(path)
		if err == nil && len(b) >= 32 {
			seq = max(seq, binary.BigEndian.Uint32(b[12:]))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return seq
}

// TestPowerLoss_Journal: with the node journal, every acknowledged write
// survives a power loss that keeps only what was synced: with small
// journal files that rotate many times, with journal files that never
// rotate (everything since the start comes from the replay), and with two
// objects whose WALs grow past SQLite's checkpoint size, so that they are
// checkpointed and restarted while the journal holds their frames.
func TestPowerLoss_Journal(t *testing.T) {
	for _, tc := range []struct {
		name    string
		objects int
		size    int64
	}{
		{"rotating", powerLossObjects, 128 << 10},
		{"no-rotation", powerLossObjects, 0},
		{"checkpoints", 2, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			acked, missing, rotations := runJournalLoss(t, tc.objects, tc.size, false, false)
			t.Logf("%d acknowledged, %d missing after power loss (%d rotations)", acked, missing, rotations)
			if missing != 0 {
				t.Fatalf("%d acknowledged writes lost", missing)
			}
			if tc.size != 0 && rotations == 0 {
				t.Error("the journal never rotated: the rotation path went untested")
			}
		})
	}
}

// TestPowerLoss_JournalControls: the check above must be able to fail. If
// journal syncs kept nothing, or the journal were not replayed, writes
// would be lost. (The journal is large enough not to rotate here: a
// rotation's syncfs would make writes durable without it.)
func TestPowerLoss_JournalControls(t *testing.T) {
	acked, missing, _ := runJournalLoss(t, powerLossObjects, 0, true, false)
	t.Logf("unsynced journal: %d acknowledged, %d missing", acked, missing)
	if missing == 0 {
		t.Error("negative control: an unsynced journal lost nothing, so the check cannot detect a missing sync")
	}
	acked, missing, _ = runJournalLoss(t, powerLossObjects, 0, false, true)
	t.Logf("journal not replayed: %d acknowledged, %d missing", acked, missing)
	if missing == 0 {
		t.Error("negative control: dropping the journal lost nothing, so the check cannot detect a missing replay")
	}
}

// TestJournal_SyncFailure: when a sync of the journal fails, the reply
// waiting for it is an ErrDurability error, and so is every later write's
// (the kernel may have dropped the journal's pages, so it can no longer be
// trusted); after a restart the writes acknowledged before are there and
// the object works again.
func TestJournal_SyncFailure(t *testing.T) {
	dir := t.TempDir()
	var fail atomic.Bool
	syncJournal := func(f *os.File) error {
		if fail.Load() {
			return syscall.EIO
		}
		return f.Sync()
	}
	rt, err := durable.OpenWithJournalHooks(durable.Options{Dir: dir}, syncJournal, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	ns := durable.MustRegister(rt, "Journal", newJournal, struct{}{})
	ctx := t.Context()
	for n := range int64(10) {
		if err := durable.Do1(ctx, ns.GetByName(fmt.Sprint("j", n%2)), (*Journal).Append, n); err != nil {
			t.Fatal(err)
		}
	}
	fail.Store(true)
	for n := int64(10); n < 14; n++ {
		err := durable.Do1(ctx, ns.GetByName(fmt.Sprint("j", n%2)), (*Journal).Append, n)
		if !errors.Is(err, durable.ErrDurability) {
			t.Fatalf("write %d after the failed sync: %v, want ErrDurability", n, err)
		}
		if durable.IsRetryable(err) {
			t.Fatalf("write %d after the failed sync: IsRetryable(%v) = true; no retry can succeed before a restart", n, err)
		}
	}
	// The failure is sticky even once syncs would succeed again.
	fail.Store(false)
	if err := durable.Do1(ctx, ns.GetByName("j0"), (*Journal).Append, 100); !errors.Is(err, durable.ErrDurability) {
		t.Fatalf("write after the disk recovered: %v, want ErrDurability", err)
	}
	rt.Close()

	rt2 := openRuntime(t, durable.Options{Dir: dir})
	ns2 := durable.MustRegister(rt2, "Journal", newJournal, struct{}{})
	var all []int64
	for i := range 2 {
		got, err := durable.Call0(ctx, ns2.GetByName(fmt.Sprint("j", i)), (*Journal).All)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, got...)
	}
	for n := range int64(10) {
		if !slices.Contains(all, n) {
			t.Errorf("acknowledged write %d missing after restart (have %v)", n, all)
		}
	}
	if err := durable.Do1(ctx, ns2.GetByName("j0"), (*Journal).Append, 200); err != nil {
		t.Fatalf("write after restart: %v", err)
	}
}
