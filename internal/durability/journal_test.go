package durability_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math/bits"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/durable-go/durable/internal/durability"
)

// The tests below run a journaled Group over real files in a temporary
// root and simulate a crash like this: once the tickets are durable they
// copy the journal files aside, Close the Group (which writes a clean
// marker), put the copies back, and zero the frames of the WAL files (the
// WAL pages the crash lost). Recover must then write the frames back.

// testJournalSize keeps the journal files small.
const testJournalSize = 256 << 10

// walTestFile is a fake SQLite WAL under a journaled Group's root: a valid
// 32-byte header followed by "frames", and the bytes it should hold.
type walTestFile struct {
	t    *testing.T
	path string
	dir  string
	ckpt uint32
	salt [2]uint32 // as a WALRange carries them: the header bytes in native order
	want []byte    // the file's content as written
}

// walHeaderBytes builds a SQLite WAL header. The salts are raw bytes,
// which SQLite memcpy's into its WAL index.
func walHeaderBytes(magic, version, ckpt uint32, salt [8]byte) []byte {
	h := make([]byte, 32)
	binary.BigEndian.PutUint32(h[0:], magic)
	binary.BigEndian.PutUint32(h[4:], version)
	binary.BigEndian.PutUint32(h[8:], 4096) // page size
	binary.BigEndian.PutUint32(h[12:], ckpt)
	copy(h[16:24], salt[:])
	binary.BigEndian.PutUint32(h[24:], 0xc0ffee01) // checksums: not checked
	binary.BigEndian.PutUint32(h[28:], 0xc0ffee02)
	return h
}

// newWAL creates root/name/wal with a valid header (magic 0x377f0682 or
// 0x377f0683) whose salts are the bytes salt.
func newWAL(t *testing.T, root, name string, magic, ckpt uint32, salt [8]byte) *walTestFile {
	t.Helper()
	dir := filepath.Join(root, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	w := &walTestFile{
		t:    t,
		path: filepath.Join(dir, "wal"),
		dir:  dir,
		ckpt: ckpt,
		salt: [2]uint32{binary.NativeEndian.Uint32(salt[0:4]), binary.NativeEndian.Uint32(salt[4:8])},
		want: walHeaderBytes(magic, 3007000, ckpt, salt),
	}
	if err := os.WriteFile(w.path, w.want, 0o644); err != nil {
		t.Fatal(err)
	}
	return w
}

// appendFrames writes n bytes of a pattern derived from seed at the end of
// the WAL and returns the range they occupy, of the header's generation.
func (w *walTestFile) appendFrames(n int, seed byte) durability.WALRange {
	w.t.Helper()
	off := int64(len(w.want))
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7) + byte(i>>8)
		if b[i] == 0 {
			b[i] = 1 // a restored range must be distinguishable from zeros
		}
	}
	f, err := os.OpenFile(w.path, os.O_RDWR, 0)
	if err != nil {
		w.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		w.t.Fatal(err)
	}
	w.want = append(w.want, b...)
	return durability.WALRange{Off: off, End: int64(len(w.want)), Ckpt: w.ckpt, Salt: w.salt}
}

// zeroFrames overwrites everything after the header with zeros: the
// frames that a crash lost.
func (w *walTestFile) zeroFrames() {
	w.t.Helper()
	w.zeroRange(32, int64(len(w.want)))
}

func (w *walTestFile) zeroRange(off, end int64) {
	w.t.Helper()
	f, err := os.OpenFile(w.path, os.O_RDWR, 0)
	if err != nil {
		w.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(make([]byte, end-off), off); err != nil {
		w.t.Fatal(err)
	}
}

func (w *walTestFile) read() []byte {
	w.t.Helper()
	b, err := os.ReadFile(w.path)
	if err != nil {
		w.t.Fatal(err)
	}
	return b
}

// checkRange reports whether bytes [r.Off, r.End) of the file on disk are
// as written (restored) or all zeros, and fails the test otherwise.
func (w *walTestFile) checkRange(r durability.WALRange) (restored bool) {
	w.t.Helper()
	got := w.read()
	if int64(len(got)) < r.End {
		w.t.Fatalf("%s: %d bytes, want at least %d", w.path, len(got), r.End)
	}
	seg := got[r.Off:r.End]
	switch {
	case bytes.Equal(seg, w.want[r.Off:r.End]):
		return true
	case bytes.Count(seg, []byte{0}) == len(seg):
		return false
	}
	w.t.Fatalf("%s: bytes %d..%d are neither the committed ones nor zeros", w.path, r.Off, r.End)
	return false
}

// journalEnv is a journaled Group over a temporary root.
type journalEnv struct {
	root string
	jdir string
	cfg  durability.Config
	g    *durability.Group
}

// openJournalEnv opens a journaled Group over a new root, with the
// journal in root/.journal. cfg's Journal and Root are filled in.
func openJournalEnv(t *testing.T, cfg durability.Config) *journalEnv {
	cfg.JournalAlways = true // the journal, even for one file's commits
	return openJournalEnvAs(t, cfg)
}

// openJournalEnvAs is openJournalEnv with cfg.JournalAlways as given.
func openJournalEnvAs(t *testing.T, cfg durability.Config) *journalEnv {
	t.Helper()
	root := t.TempDir()
	e := &journalEnv{root: root, jdir: filepath.Join(root, durability.JournalDir)}
	cfg.Journal, cfg.Root = e.jdir, root
	if cfg.JournalSize == 0 {
		cfg.JournalSize = testJournalSize
	}
	e.cfg = cfg
	e.open(t, true)
	return e
}

// open opens the Group (again) and checks what Open recovered.
func (e *journalEnv) open(t *testing.T, wantClean bool) durability.Recovery {
	t.Helper()
	g, rec, err := durability.Open(e.cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if rec.Clean != wantClean {
		t.Fatalf("Open recovered %+v, want Clean=%v", rec, wantClean)
	}
	if !g.Journaled() {
		t.Fatal("Open in Fsync mode with a Journal returned a Group that does not journal")
	}
	e.g = g
	t.Cleanup(g.Close)
	return rec
}

func (e *journalEnv) file(t *testing.T, w *walTestFile) *durability.File {
	t.Helper()
	f := e.g.File(w.path, w.dir)
	if err := f.Err(); err != nil {
		t.Fatalf("File(%s): %v", w.path, err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// snapshot returns the journal files' contents.
func (e *journalEnv) snapshot(t *testing.T) map[string][]byte {
	t.Helper()
	snap := map[string][]byte{}
	for _, name := range []string{"journal-0", "journal-1"} {
		b, err := os.ReadFile(filepath.Join(e.jdir, name))
		if err != nil {
			t.Fatalf("journal file: %v", err)
		}
		snap[name] = b
	}
	return snap
}

// restore writes a snapshot back over the journal files.
func (e *journalEnv) restore(t *testing.T, snap map[string][]byte) {
	t.Helper()
	for name, b := range snap {
		if err := os.WriteFile(filepath.Join(e.jdir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// crash closes the Group but leaves the journal files as they were before
// Close: as if the process had died once the last ticket was durable.
func (e *journalEnv) crash(t *testing.T, files ...*durability.File) {
	t.Helper()
	snap := e.snapshot(t)
	for _, f := range files {
		if err := f.Close(); err != nil {
			t.Fatalf("File.Close: %v", err)
		}
	}
	e.g.Close()
	e.restore(t, snap)
}

// waitDurable waits for tickets, failing the test if one fails or hangs.
func waitDurable(t *testing.T, tickets ...durability.Ticket) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for i, tk := range tickets {
		if err := tk.Wait(ctx); err != nil {
			t.Fatalf("ticket %d: Wait = %v", i, err)
		}
		if !tk.Durable() {
			t.Fatalf("ticket %d: Wait returned nil but Durable is false", i)
		}
	}
}

// waitErr waits for a ticket that must fail and returns its error.
func waitErr(t *testing.T, tk durability.Ticket) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	err := tk.Wait(ctx)
	if err == nil {
		t.Fatal("Wait = nil, want an error")
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatal("Wait hung")
	}
	return err
}

var (
	saltA = [8]byte{0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88}
	saltB = [8]byte{0xa1, 0xb2, 0xc3, 0xd4, 0xe5, 0xf6, 0x07, 0x18}
)

func TestJournal_RoundTrip(t *testing.T) {
	e := openJournalEnv(t, durability.Config{})
	// One WAL of each header magic (the low bit selects the checksum's
	// byte order).
	wa := newWAL(t, e.root, "a", 0x377f0682, 7, saltA)
	wb := newWAL(t, e.root, "b", 0x377f0683, 0, saltB)
	fa, fb := e.file(t, wa), e.file(t, wb)

	var ranges []durability.WALRange
	var tickets []durability.Ticket
	// The first commit of a WAL journals its header too.
	r := wa.appendFrames(4096+24, 1)
	r.Off = 0
	ranges = append(ranges, r)
	tickets = append(tickets, fa.CommitWAL(r))
	for i := range 4 {
		w, f := wa, fa
		if i%2 == 1 {
			w, f = wb, fb
		}
		r := w.appendFrames(1000+i*333, byte(10*i+3))
		ranges = append(ranges, r)
		tickets = append(tickets, f.CommitWAL(r))
	}
	waitDurable(t, tickets...)
	if st := e.g.Stats(); st.Commits != 5 || st.SyncFailures != 0 {
		t.Fatalf("Stats = %+v, want 5 commits and no failures", st)
	}

	e.crash(t, fa, fb)
	wa.zeroFrames()
	wb.zeroFrames()

	rec, err := durability.Recover(e.jdir, e.root)
	if err != nil {
		t.Fatalf("Recover: %v", err)
	}
	if rec.Clean || rec.Records != 5 || rec.Replayed != 5 || rec.Files != 2 || rec.Skipped != 0 {
		t.Fatalf("Recover = %+v, want 5 records replayed into 2 files", rec)
	}
	for _, w := range []*walTestFile{wa, wb} {
		if got := w.read(); !bytes.Equal(got, w.want) {
			t.Fatalf("%s after Recover: %d bytes, differ from the %d committed", w.path, len(got), len(w.want))
		}
	}
	if !wa.checkRange(ranges[0]) || ranges[0].Off != 0 {
		t.Fatal("the first commit, header included, was not restored")
	}

	again, err := durability.Recover(e.jdir, e.root)
	if err != nil {
		t.Fatalf("second Recover: %v", err)
	}
	if !again.Clean || again.Records != 0 || again.Replayed != 0 || again.Files != 0 {
		t.Fatalf("second Recover = %+v, want Clean and nothing replayed", again)
	}
	if again.Epoch != rec.Epoch {
		t.Fatalf("second Recover found epoch %d, want the %d of the first one's clean marker", again.Epoch, rec.Epoch)
	}
}

// TestJournal_RecoverThenNewRun checks that a Group opened after a
// recovery journals under a new epoch: a crash of the second run replays
// its own commits, not the first run's again, although they share a file.
func TestJournal_RecoverThenNewRun(t *testing.T) {
	e := openJournalEnv(t, durability.Config{})
	w := newWAL(t, e.root, "obj", 0x377f0682, 1, saltA)
	f := e.file(t, w)
	var old []durability.WALRange
	for i := range 6 {
		r := w.appendFrames(3000, byte(i+1))
		old = append(old, r)
		waitDurable(t, f.CommitWAL(r))
	}
	e.crash(t, f)
	rec := e.open(t, false) // Open recovers
	if rec.Replayed != 6 {
		t.Fatalf("Open recovered %+v, want 6 records replayed", rec)
	}

	f = e.file(t, w)
	var fresh []durability.WALRange
	var tickets []durability.Ticket
	for i := range 2 {
		r := w.appendFrames(500, byte(100+i))
		fresh = append(fresh, r)
		tickets = append(tickets, f.CommitWAL(r))
	}
	waitDurable(t, tickets...)
	e.crash(t, f)
	w.zeroFrames()

	rec, err := durability.Recover(e.jdir, e.root)
	if err != nil {
		t.Fatalf("Recover: %v", err)
	}
	if rec.Clean || rec.Records != 2 || rec.Replayed != 2 || rec.Files != 1 {
		t.Fatalf("Recover = %+v, want only the 2 records of the second run", rec)
	}
	for _, r := range fresh {
		if !w.checkRange(r) {
			t.Fatalf("range %d..%d of the second run not restored", r.Off, r.End)
		}
	}
	for _, r := range old {
		if w.checkRange(r) {
			t.Fatalf("range %d..%d of the first run replayed again: its records were retired by the first recovery", r.Off, r.End)
		}
	}
}

func TestJournal_GenerationRule(t *testing.T) {
	e := openJournalEnv(t, durability.Config{})
	cur := newWAL(t, e.root, "cur", 0x377f0682, 3, saltA)
	noHeader := newWAL(t, e.root, "noheader", 0x377f0682, 0, saltB)
	badVersion := newWAL(t, e.root, "badversion", 0x377f0682, 0, saltB)
	gone := newWAL(t, e.root, "gone", 0x377f0682, 0, saltB)
	fc := e.file(t, cur)

	// Frames of an older generation (other salts), then frames of the
	// generation on disk. A WALRange carries the salts as the header's
	// bytes in native order: the same salts read in the other byte order
	// are another generation.
	older := cur.appendFrames(2000, 1)
	older.Salt = [2]uint32{cur.salt[0] + 1, cur.salt[1]}
	swapped := cur.appendFrames(2000, 2)
	swapped.Salt = [2]uint32{bits.ReverseBytes32(cur.salt[0]), bits.ReverseBytes32(cur.salt[1])}
	current := cur.appendFrames(2000, 3)
	tickets := []durability.Ticket{fc.CommitWAL(older), fc.CommitWAL(swapped), fc.CommitWAL(current)}

	var others []*durability.File
	for _, w := range []*walTestFile{noHeader, badVersion, gone} {
		f := e.file(t, w)
		others = append(others, f)
		tickets = append(tickets, f.CommitWAL(w.appendFrames(1500, 9)))
	}
	waitDurable(t, tickets...)
	e.crash(t, append(others, fc)...)

	cur.zeroFrames()
	// A WAL whose header is gone (zeros), one whose header has an unknown
	// version, and one that was deleted.
	noHeader.zeroRange(0, int64(len(noHeader.want)))
	badHeader := walHeaderBytes(0x377f0682, 3007001, 0, saltB)
	if err := os.WriteFile(badVersion.path, badHeader, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(gone.path); err != nil {
		t.Fatal(err)
	}

	rec, err := durability.Recover(e.jdir, e.root)
	if err != nil {
		t.Fatalf("Recover: %v", err)
	}
	if rec.Clean || rec.Records != 6 || rec.Replayed != 1 || rec.Skipped != 5 || rec.Files != 1 {
		t.Fatalf("Recover = %+v, want 6 records: 1 replayed, 5 skipped, 1 file written", rec)
	}
	if cur.checkRange(older) {
		t.Fatal("a record of an older WAL generation was written back")
	}
	if cur.checkRange(swapped) {
		t.Fatal("a record whose salts match the header read in the wrong byte order was written back")
	}
	if !cur.checkRange(current) {
		t.Fatal("the record of the WAL generation on disk was not written back")
	}
	if got := cur.read(); !bytes.Equal(got[:32], cur.want[:32]) {
		t.Fatal("the WAL header changed")
	}
	if got := noHeader.read(); bytes.Count(got, []byte{0}) != len(got) || len(got) != len(noHeader.want) {
		t.Fatal("Recover wrote into a WAL file without a valid header")
	}
	if got := badVersion.read(); !bytes.Equal(got, badHeader) {
		t.Fatalf("Recover wrote into a WAL file with an invalid header version: %d bytes", len(got))
	}
	if _, err := os.Stat(gone.path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Recover recreated a deleted WAL file: Stat = %v", err)
	}
}

func TestJournal_CleanStop(t *testing.T) {
	e := openJournalEnv(t, durability.Config{})
	w := newWAL(t, e.root, "obj", 0x377f0682, 0, saltA)
	f := e.file(t, w)
	var tickets []durability.Ticket
	for i := range 5 {
		tickets = append(tickets, f.CommitWAL(w.appendFrames(777, byte(i))))
	}
	waitDurable(t, tickets...)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	e.g.Close()

	// Whatever the WAL holds now, a clean stop replays nothing into it.
	w.zeroFrames()
	rec, err := durability.Recover(e.jdir, e.root)
	if err != nil {
		t.Fatalf("Recover: %v", err)
	}
	if !rec.Clean || rec.Records != 0 || rec.Replayed != 0 || rec.Files != 0 || rec.Skipped != 0 {
		t.Fatalf("Recover after Close = %+v, want Clean and nothing replayed", rec)
	}
	if got := w.read(); bytes.Count(got[32:], []byte{0}) != len(got)-32 {
		t.Fatal("Recover after a clean stop wrote into the WAL")
	}
	// Open (which recovers too) agrees, and the next run journals again.
	e.open(t, true)
	f = e.file(t, w)
	waitDurable(t, f.CommitWAL(w.appendFrames(100, 5)))
}

func TestJournal_TornRecord(t *testing.T) {
	const pathLen = len("obj/wal")
	for _, torn := range []int{2, 1} { // the last record, then a middle one
		t.Run(map[int]string{1: "middle", 2: "last"}[torn], func(t *testing.T) {
			e := openJournalEnv(t, durability.Config{})
			w := newWAL(t, e.root, "obj", 0x377f0682, 0, saltA)
			f := e.file(t, w)
			var ranges []durability.WALRange
			for i := range 3 {
				r := w.appendFrames(1000+100*i, byte(i+1))
				ranges = append(ranges, r)
				// One batch each, so that the records are in commit order.
				waitDurable(t, f.CommitWAL(r))
			}
			snap := e.snapshot(t)
			// Exactly one journal file holds records: flip a byte of the
			// data of record torn in it.
			var name string
			for n, b := range snap {
				if len(b) >= 4 && binary.LittleEndian.Uint32(b) != 0 {
					if name != "" {
						t.Fatal("both journal files start with a record")
					}
					name = n
				}
			}
			if name == "" {
				t.Fatal("no journal file holds the records")
			}
			at := 0
			for _, r := range ranges[:torn] {
				at += 52 + pathLen + int(r.End-r.Off)
			}
			at += 52 + pathLen + 10 // 10 bytes into the data
			snap[name][at] ^= 0x40

			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			e.g.Close()
			e.restore(t, snap)
			w.zeroFrames()

			rec, err := durability.Recover(e.jdir, e.root)
			if err != nil {
				t.Fatalf("Recover: %v", err)
			}
			if rec.Clean || rec.Records != torn || rec.Replayed != torn {
				t.Fatalf("Recover = %+v, want the %d records before the torn one", rec, torn)
			}
			for i, r := range ranges {
				if got := w.checkRange(r); got != (i < torn) {
					t.Fatalf("record %d restored = %v, want %v (record %d is torn)", i, got, i < torn, torn)
				}
			}
		})
	}
}

// countingSyncFS is a Config.SyncFS that counts its calls and syncs the
// files it is given.
type countingSyncFS struct {
	calls atomic.Int64
	err   error // returned instead of syncing, if set
}

func (c *countingSyncFS) sync(files []*os.File) error {
	c.calls.Add(1)
	if c.err != nil {
		return c.err
	}
	for _, f := range files {
		if err := f.Sync(); err != nil {
			return err
		}
	}
	return nil
}

func TestJournal_Rotation(t *testing.T) {
	const (
		size    = 64 << 10
		commits = 100
		n       = 2000
	)
	var fs countingSyncFS
	e := openJournalEnv(t, durability.Config{JournalSize: size, SyncFS: fs.sync})
	w := newWAL(t, e.root, "obj", 0x377f0682, 0, saltA)
	f := e.file(t, w)

	// Each commit is its own batch of one record: the journal switches
	// files when the next record does not fit.
	recLen := int64(52 + len("obj/wal") + n)
	var rotations int
	var segments []int // records in each journal file used, in turn
	off := int64(0)
	segments = append(segments, 0)
	var ranges []durability.WALRange
	for i := range commits {
		r := w.appendFrames(n, byte(i))
		ranges = append(ranges, r)
		waitDurable(t, f.CommitWAL(r))
		if off+recLen > size {
			rotations++
			off = 0
			segments = append(segments, 0)
		}
		off += recLen
		segments[len(segments)-1]++
	}
	if rotations < 2 {
		t.Fatalf("test setup: %d rotations, want at least 2", rotations)
	}
	st := e.g.Stats()
	if st.Batches != uint64(rotations) {
		t.Fatalf("Stats.Batches = %d, want %d rotations", st.Batches, rotations)
	}
	if st.SyncFailures != 0 || st.Commits != commits {
		t.Fatalf("Stats = %+v", st)
	}
	for _, name := range []string{"journal-0", "journal-1"} {
		fi, err := os.Stat(filepath.Join(e.jdir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > size {
			t.Fatalf("%s is %d bytes, more than the journal size %d", name, fi.Size(), size)
		}
	}

	e.crash(t, f)
	// Each rotation retired the file it left with one SyncFS, and Close
	// made one more.
	if got := fs.calls.Load(); got != int64(rotations)+1 {
		t.Fatalf("SyncFS called %d times, want %d (one per rotation and one at Close)", got, rotations+1)
	}
	// The hook synced only the journal: the frames of retired records are
	// lost in this crash, but the records of the two journal files (the
	// last two segments) are replayed.
	w.zeroFrames()
	rec, err := durability.Recover(e.jdir, e.root)
	if err != nil {
		t.Fatalf("Recover: %v", err)
	}
	want := segments[len(segments)-1] + segments[len(segments)-2]
	if rec.Clean || rec.Records != want || rec.Replayed != want || rec.Files != 1 {
		t.Fatalf("Recover = %+v, want %d records replayed (segments %v)", rec, want, segments)
	}
	for i, r := range ranges {
		if got := w.checkRange(r); got != (i >= commits-want) {
			t.Fatalf("commit %d restored = %v, want %v", i, got, i >= commits-want)
		}
	}
}

// TestJournal_RotationConcurrent commits to many files at once through a
// small journal, so that batches of several records cross rotations.
func TestJournal_RotationConcurrent(t *testing.T) {
	var fs countingSyncFS
	e := openJournalEnv(t, durability.Config{JournalSize: 64 << 10, SyncFS: fs.sync})
	const files, commits = 8, 40
	var wg sync.WaitGroup
	errs := make(chan error, files*commits)
	for i := range files {
		w := newWAL(t, e.root, "obj"+string(rune('a'+i)), 0x377f0682, 0, saltA)
		f := e.file(t, w)
		wg.Go(func() {
			var tickets []durability.Ticket
			for j := range commits {
				tickets = append(tickets, f.CommitWAL(w.appendFrames(1500, byte(j))))
			}
			for _, tk := range tickets {
				if err := tk.Wait(t.Context()); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Wait: %v", err)
	}
	if st := e.g.Stats(); st.Batches == 0 || st.Commits != files*commits || st.SyncFailures != 0 {
		t.Fatalf("Stats = %+v, want rotations (Batches > 0) and %d commits", st, files*commits)
	}
	if fs.calls.Load() == 0 {
		t.Fatal("SyncFS never called")
	}
}

func TestJournal_SyncFailureIsSticky(t *testing.T) {
	boom := errors.New("journal EIO")
	var syncs atomic.Int64
	e := openJournalEnv(t, durability.Config{SyncJournal: func(f *os.File) error {
		if syncs.Add(1) == 2 {
			return boom
		}
		return f.Sync()
	}})
	wa := newWAL(t, e.root, "a", 0x377f0682, 0, saltA)
	wb := newWAL(t, e.root, "b", 0x377f0682, 0, saltB)
	fa, fb := e.file(t, wa), e.file(t, wb)

	acked := wa.appendFrames(1000, 1)
	waitDurable(t, fa.CommitWAL(acked))
	if err := waitErr(t, fa.CommitWAL(wa.appendFrames(1000, 2))); !errors.Is(err, boom) {
		t.Fatalf("Wait = %v, want the journal's sync error", err)
	}
	if !errors.Is(fa.Err(), boom) {
		t.Fatalf("Err = %v, want the journal's sync error", fa.Err())
	}
	// The journal is broken: another file's commits fail too, although
	// SyncJournal would succeed now, and so do later commits of the first.
	if err := waitErr(t, fb.CommitWAL(wb.appendFrames(1000, 3))); !errors.Is(err, boom) {
		t.Fatalf("other file: Wait = %v, want the journal's sync error", err)
	}
	if !errors.Is(fb.Err(), boom) {
		t.Fatalf("other file: Err = %v, want the journal's sync error", fb.Err())
	}
	if err := waitErr(t, fa.CommitWAL(wa.appendFrames(1000, 4))); !errors.Is(err, boom) {
		t.Fatalf("later commit: Wait = %v, want the journal's sync error", err)
	}
	if got := syncs.Load(); got != 2 {
		t.Fatalf("SyncJournal called %d times, want 2: a broken journal syncs no more", got)
	}
	if st := e.g.Stats(); st.SyncFailures < 2 {
		t.Fatalf("Stats.SyncFailures = %d, want at least 2", st.SyncFailures)
	}

	// Close must not mark a broken journal clean: the acknowledged commit
	// is still replayed after a crash that loses the WAL's pages.
	fa.Close()
	fb.Close()
	e.g.Close()
	wa.zeroFrames()
	rec, err := durability.Recover(e.jdir, e.root)
	if err != nil {
		t.Fatalf("Recover: %v", err)
	}
	if rec.Clean {
		t.Fatalf("Recover = %+v: a broken journal was closed clean", rec)
	}
	if !wa.checkRange(acked) {
		t.Fatal("the acknowledged commit was not replayed")
	}
}

// Ensure a journal whose sync fails because the file system is full
// reports ErrDiskFull (with ErrJournalBroken) to every commit it fails.
func TestJournal_DiskFull(t *testing.T) {
	full := &os.PathError{Op: "fdatasync", Path: "journal-0", Err: syscall.ENOSPC}
	var syncs atomic.Int64
	e := openJournalEnv(t, durability.Config{SyncJournal: func(f *os.File) error {
		if syncs.Add(1) >= 2 {
			return full
		}
		return f.Sync()
	}})
	wa := newWAL(t, e.root, "a", 0x377f0682, 0, saltA)
	wb := newWAL(t, e.root, "b", 0x377f0682, 0, saltB)
	fa, fb := e.file(t, wa), e.file(t, wb)
	waitDurable(t, fa.CommitWAL(wa.appendFrames(1000, 1)))
	for i, c := range []struct {
		f *durability.File
		w *walTestFile
	}{{fa, wa}, {fb, wb}} {
		err := waitErr(t, c.f.CommitWAL(c.w.appendFrames(1000, byte(2+i))))
		if !errors.Is(err, durability.ErrDiskFull) || !errors.Is(err, durability.ErrJournalBroken) || !errors.Is(err, syscall.ENOSPC) {
			t.Errorf("file %d: Wait = %v, want ErrDiskFull, ErrJournalBroken and ENOSPC", i, err)
		}
	}
}

func TestJournal_BigCommitSyncsFS(t *testing.T) {
	// Larger than a record's limit, so that only that limit keeps the big
	// commit out of the journal.
	const size = 4 << 20
	var fs countingSyncFS
	e := openJournalEnv(t, durability.Config{JournalSize: size, SyncFS: fs.sync})
	w := newWAL(t, e.root, "obj", 0x377f0682, 0, saltA)
	f := e.file(t, w)

	waitDurable(t, f.CommitWAL(w.appendFrames(1000, 1)))
	if fs.calls.Load() != 0 {
		t.Fatal("a small commit called SyncFS")
	}
	big := w.appendFrames(1<<20+1, 2) // one byte more than a record holds
	waitDurable(t, f.CommitWAL(big))
	if got := fs.calls.Load(); got != 1 {
		t.Fatalf("SyncFS called %d times for a big commit, want 1", got)
	}
	if st := e.g.Stats(); st.Batches != 1 {
		t.Fatalf("Stats.Batches = %d, want 1", st.Batches)
	}
	for _, name := range []string{"journal-0", "journal-1"} {
		b, err := os.ReadFile(filepath.Join(e.jdir, name))
		if err != nil {
			t.Fatal(err)
		}
		// The files grow with zeros ahead of their records, so look for
		// the big commit's bytes rather than at the size.
		if bytes.Contains(b, w.want[big.Off+4096:big.Off+8192]) {
			t.Fatalf("%s holds bytes of the big commit: it was copied", name)
		}
	}
	after := w.appendFrames(500, 3)
	waitDurable(t, f.CommitWAL(after))

	e.crash(t, f)
	// The SyncFS made everything before it durable: only the commit after
	// it is in the journal.
	w.zeroFrames()
	rec, err := durability.Recover(e.jdir, e.root)
	if err != nil {
		t.Fatalf("Recover: %v", err)
	}
	if rec.Clean || rec.Records != 1 || rec.Replayed != 1 {
		t.Fatalf("Recover = %+v, want only the commit after the big one", rec)
	}
	if w.checkRange(big) {
		t.Fatal("the big commit was in the journal")
	}
	if !w.checkRange(after) {
		t.Fatal("the commit after the big one was not replayed")
	}
}

// TestJournal_BigCommitSyncFSFailure: when the SyncFS that should make a
// big commit durable fails, the commits journaled before it, which were
// acknowledged, must still be replayed by the next recovery.
func TestJournal_BigCommitSyncFSFailure(t *testing.T) {
	boom := errors.New("syncfs EIO")
	fs := &countingSyncFS{err: boom}
	e := openJournalEnv(t, durability.Config{JournalSize: 64 << 10, SyncFS: fs.sync})
	w := newWAL(t, e.root, "obj", 0x377f0682, 0, saltA)
	f := e.file(t, w)

	acked := w.appendFrames(1000, 1)
	waitDurable(t, f.CommitWAL(acked))
	if err := waitErr(t, f.CommitWAL(w.appendFrames(1<<20+1, 2))); !errors.Is(err, boom) {
		t.Fatalf("big commit: Wait = %v, want the SyncFS error", err)
	}
	f.Close()
	e.g.Close()

	// The failed syncfs may have lost the WAL's pages.
	w.zeroFrames()
	rec, err := durability.Recover(e.jdir, e.root)
	if err != nil {
		t.Fatalf("Recover: %v", err)
	}
	if rec.Clean || !w.checkRange(acked) {
		t.Fatalf("Recover = %+v and restored the acknowledged commit = %v: "+
			"the clean marker written before the failed SyncFS hid the journaled records", rec, w.checkRange(acked))
	}
}

func TestJournal_FileOutsideRoot(t *testing.T) {
	e := openJournalEnv(t, durability.Config{})
	other := t.TempDir()
	w := newWAL(t, other, "obj", 0x377f0682, 0, saltA)
	f := e.g.File(w.path, w.dir)
	defer f.Close()
	if f.Err() == nil {
		t.Fatal("File outside the journal's root has no error")
	}
	if err := waitErr(t, f.CommitWAL(w.appendFrames(100, 1))); !strings.Contains(err.Error(), "root") {
		t.Fatalf("Wait = %v, want the not-under-root error", err)
	}
}

// TestJournal_CommitWALAfterFileClose checks that a commit after
// File.Close fails with ErrClosed and leaves no descriptor open.
func TestJournal_CommitWALAfterFileClose(t *testing.T) {
	e := openJournalEnv(t, durability.Config{})
	w := newWAL(t, e.root, "obj", 0x377f0682, 0, saltA)
	f := e.file(t, w)
	waitDurable(t, f.CommitWAL(w.appendFrames(100, 1)))
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := waitErr(t, f.CommitWAL(w.appendFrames(100, 2))); !errors.Is(err, durability.ErrClosed) {
		t.Fatalf("Wait = %v, want ErrClosed", err)
	}
	if n := openFDs(t, w.path); n != 0 {
		t.Fatalf("%d descriptors of the WAL open after File.Close and a later CommitWAL", n)
	}
}

// openFDs counts this process's descriptors open on path.
func openFDs(t *testing.T, path string) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	n := 0
	for _, ent := range ents {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", ent.Name())); err == nil && target == path {
			n++
		}
	}
	return n
}

func TestJournal_OpenNeedsRoot(t *testing.T) {
	if _, _, err := durability.Open(durability.Config{Journal: t.TempDir()}); err == nil {
		t.Fatal("Open with a Journal and no Root succeeded")
	}
}

func TestJournal_OpenNoSyncDoesNotJournal(t *testing.T) {
	root := t.TempDir()
	g, rec, err := durability.Open(durability.Config{
		Mode: durability.NoSync, Journal: filepath.Join(root, durability.JournalDir), Root: root,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if !rec.Clean || g.Journaled() {
		t.Fatalf("NoSync Open: Recovery %+v, Journaled %v; want clean and not journaled", rec, g.Journaled())
	}
}

func TestJournal_RecoverWithoutJournal(t *testing.T) {
	root := t.TempDir()
	rec, err := durability.Recover(filepath.Join(root, "missing"), root)
	if err != nil || !rec.Clean || rec.Records != 0 {
		t.Fatalf("Recover of a missing journal = %+v, %v; want Clean", rec, err)
	}
}

// countingEnv is a journaled Group (not JournalAlways) that counts file
// and journal syncs, and whose next directory sync, once hold is set,
// blocks (holding the journal's writer) until release is closed.
type countingEnv struct {
	*journalEnv
	fileSyncs, journalSyncs atomic.Int64
	dirSyncs                atomic.Int64
	hold                    atomic.Bool
	entered, release        chan struct{}
}

func openCountingEnv(t *testing.T, cfg durability.Config) *countingEnv {
	c := &countingEnv{entered: make(chan struct{}), release: make(chan struct{})}
	cfg.SyncFile = func(f *os.File) error {
		c.fileSyncs.Add(1)
		return f.Sync()
	}
	cfg.SyncJournal = func(f *os.File) error {
		c.journalSyncs.Add(1)
		return f.Sync()
	}
	cfg.SyncDir = func(dir string) error {
		c.dirSyncs.Add(1)
		if c.hold.CompareAndSwap(true, false) {
			close(c.entered)
			<-c.release
		}
		return durability.SyncDir(dir)
	}
	c.journalEnv = openJournalEnvAs(t, cfg)
	return c
}

// heldBatch makes first (the first commit of a file, whose directory sync
// the writer is held in) and, while the writer waits, the commits of
// others, which therefore form one batch; it waits until all are durable.
func (c *countingEnv) heldBatch(t *testing.T, first func() durability.Ticket, others ...func() durability.Ticket) {
	t.Helper()
	c.hold.Store(true)
	tickets := []durability.Ticket{first()}
	<-c.entered
	for _, commit := range others {
		tickets = append(tickets, commit())
	}
	close(c.release)
	waitDurable(t, tickets...)
}

// TestJournal_OneFileBatchFsyncsTheFile: a batch whose commits all belong
// to one file is made durable by fsyncing that file (one sync either way,
// and no second copy of the bytes); a batch of several files' commits goes
// through the journal.
func TestJournal_OneFileBatchFsyncsTheFile(t *testing.T) {
	e := openCountingEnv(t, durability.Config{})
	a := newWAL(t, e.root, "a", 0x377f0682, 0, saltA)
	b := newWAL(t, e.root, "b", 0x377f0682, 0, saltA)
	c := newWAL(t, e.root, "c", 0x377f0682, 0, saltA)
	fa, fb, fc := e.file(t, a), e.file(t, b), e.file(t, c)
	waitDurable(t, fa.CommitWAL(a.appendFrames(100, 1)))
	if e.fileSyncs.Load() != 1 || e.journalSyncs.Load() != 0 {
		t.Fatalf("one file's commit: %d file syncs, %d journal syncs; want 1 and 0", e.fileSyncs.Load(), e.journalSyncs.Load())
	}
	// Hold the writer in the directory sync of c's first commit while a
	// commit of a and one of b wait: they form the next batch.
	e.heldBatch(t, func() durability.Ticket { return fc.CommitWAL(c.appendFrames(100, 2)) },
		func() durability.Ticket { return fa.CommitWAL(a.appendFrames(100, 3)) },
		func() durability.Ticket { return fb.CommitWAL(b.appendFrames(100, 4)) })
	if e.fileSyncs.Load() != 2 || e.journalSyncs.Load() != 1 {
		t.Fatalf("then a batch of two files: %d file syncs, %d journal syncs; want 2 and 1", e.fileSyncs.Load(), e.journalSyncs.Load())
	}
}

// descriptors counts this process's open descriptors of path, or skips
// the test where /proc/self/fd does not list them.
func descriptors(t *testing.T, path string) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd:", err)
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && l == path {
			n++
		}
	}
	return n
}

// TestJournal_CommitWithDataOpensNoDescriptor: a File whose commits hand
// over their bytes (CommitWALData) and go through the journal never opens
// the file; it does when it needs to (a batch of its commits alone is
// made durable by fsyncing the file), and Close closes it. A File opened
// again for the same file still knows its directory entry is durable.
func TestJournal_CommitWithDataOpensNoDescriptor(t *testing.T) {
	e := openCountingEnv(t, durability.Config{})
	a := newWAL(t, e.root, "a", 0x377f0682, 0, saltA)
	b := newWAL(t, e.root, "b", 0x377f0682, 0, saltA)
	c := newWAL(t, e.root, "c", 0x377f0682, 0, saltA)
	fa, fb, fc := e.file(t, a), e.file(t, b), e.file(t, c)
	commit := func(f *durability.File, w *walTestFile, n int, seed byte) durability.Ticket {
		r := w.appendFrames(n, seed)
		return f.CommitWALData(r, w.want[r.Off:r.End])
	}
	// Hold the writer in the directory sync of c's first commit while a
	// commit of a and one of b wait: they form a journaled batch.
	e.heldBatch(t, func() durability.Ticket { return commit(fc, c, 100, 1) },
		func() durability.Ticket { return commit(fa, a, 100, 2) },
		func() durability.Ticket { return commit(fb, b, 100, 3) })
	if e.journalSyncs.Load() != 1 {
		t.Fatalf("batch of a and b: %d journal syncs, want 1", e.journalSyncs.Load())
	}
	if na, nb := descriptors(t, a.path), descriptors(t, b.path); na != 0 || nb != 0 {
		t.Fatalf("after journaled commits with their bytes: a has %d descriptors, b %d; want none", na, nb)
	}
	files, dirs := e.fileSyncs.Load(), e.dirSyncs.Load()
	waitDurable(t, commit(fa, a, 100, 4))
	if got := e.fileSyncs.Load(); got != files+1 {
		t.Fatalf("a's commit alone: %d file syncs, want %d", got, files+1)
	}
	if n := descriptors(t, a.path); n != 1 {
		t.Fatalf("after a's commit alone: %d descriptors of a, want 1", n)
	}
	if err := fa.Close(); err != nil {
		t.Fatal(err)
	}
	if n := descriptors(t, a.path); n != 0 {
		t.Fatalf("after Close: %d descriptors of a, want 0", n)
	}
	fa2 := e.file(t, a)
	waitDurable(t, commit(fa2, a, 100, 5))
	if got := e.dirSyncs.Load(); got != dirs {
		t.Errorf("a opened again: %d directory syncs since, want none (its entry is durable)", got-dirs)
	}
}

// TestJournal_OneFileBatchWithMuchUnsyncedIsJournaled: a file whose WAL
// holds many journaled bytes not yet written back does not take the
// one-file path when its commits form a batch alone, since an fsync would
// write all of them inside that batch's sync: the batch goes through the
// journal. A file with little unsynced keeps the one-file path.
func TestJournal_OneFileBatchWithMuchUnsyncedIsJournaled(t *testing.T) {
	e := openCountingEnv(t, durability.Config{JournalSize: 4 << 20}) // room for a's big commit
	a := newWAL(t, e.root, "a", 0x377f0682, 0, saltA)
	b := newWAL(t, e.root, "b", 0x377f0682, 0, saltA)
	c := newWAL(t, e.root, "c", 0x377f0682, 0, saltA)
	fa, fb, fc := e.file(t, a), e.file(t, b), e.file(t, c)
	// A batch of a and b: 600 KiB of a's WAL journaled, not synced.
	var ra1 durability.WALRange
	e.heldBatch(t, func() durability.Ticket { return fc.CommitWAL(c.appendFrames(100, 1)) },
		func() durability.Ticket { ra1 = a.appendFrames(600<<10, 2); return fa.CommitWAL(ra1) },
		func() durability.Ticket { return fb.CommitWAL(b.appendFrames(100, 3)) })
	files0, journal0 := e.fileSyncs.Load(), e.journalSyncs.Load()
	if journal0 != 1 {
		t.Fatalf("batch of a and b: %d journal syncs, want 1", journal0)
	}

	ra2 := a.appendFrames(100, 4)
	waitDurable(t, fa.CommitWAL(ra2))
	if got, want := e.journalSyncs.Load(), journal0+1; got != want || e.fileSyncs.Load() != files0 {
		t.Fatalf("a alone, 600 KiB unsynced: %d file syncs, %d journal syncs; want %d and %d",
			e.fileSyncs.Load(), got, files0, want)
	}
	waitDurable(t, fb.CommitWAL(b.appendFrames(100, 5)))
	if got, want := e.fileSyncs.Load(), files0+1; got != want {
		t.Fatalf("b alone, little unsynced: %d file syncs, want %d", got, want)
	}

	// Both of a's commits were journaled: they come back after a crash.
	e.crash(t, fa, fb, fc)
	a.zeroFrames()
	e.open(t, false)
	for _, r := range []durability.WALRange{ra1, ra2} {
		if !a.checkRange(r) {
			t.Fatalf("a's bytes %d..%d were not replayed", r.Off, r.End)
		}
	}
}

// TestJournal_WritesNextBatchDuringSync: while one sync is in flight, the
// commits that arrive are written to the journal, ready for the next sync,
// and are not acknowledged before that sync.
func TestJournal_WritesNextBatchDuringSync(t *testing.T) {
	var syncs atomic.Int64
	entered, release := make(chan struct{}), make(chan struct{})
	e := openJournalEnv(t, durability.Config{SyncJournal: func(f *os.File) error {
		if syncs.Add(1) == 1 {
			close(entered)
			<-release
		}
		return f.Sync()
	}})
	a := newWAL(t, e.root, "a", 0x377f0682, 0, saltA)
	fa := e.file(t, a)
	unblock := sync.OnceFunc(func() { close(release) })
	t.Cleanup(unblock) // before fa's Close, which waits for the sync
	first := fa.CommitWAL(a.appendFrames(100, 1))
	<-entered
	r := a.appendFrames(3000, 2)
	second := fa.CommitWAL(r)
	deadline := time.Now().Add(10 * time.Second)
	for {
		snap := e.snapshot(t)
		if bytes.Contains(snap["journal-0"], a.want[r.Off:r.End]) || bytes.Contains(snap["journal-1"], a.want[r.Off:r.End]) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the second commit was not written to the journal while the first sync was in flight")
		}
		time.Sleep(time.Millisecond)
	}
	if first.Durable() || second.Durable() {
		t.Fatalf("durable before the sync returned: first %v, second %v", first.Durable(), second.Durable())
	}
	unblock()
	waitDurable(t, first, second)
	if got := syncs.Load(); got != 2 {
		t.Fatalf("SyncJournal called %d times, want 2", got)
	}
}
