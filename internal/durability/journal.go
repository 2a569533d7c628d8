package durability

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// # The node journal
//
// In Fsync mode a Group with Config.Journal set does not fsync the WAL
// file of each object that committed. It copies the frames each commit
// added to its WAL into one node-wide journal and makes the journal
// durable with one fdatasync per batch: one sequential write to one file,
// however many objects the batch touched. (Measured
// here: 5 KiB commits spread over 1,000 files reach about 25,000/s when
// every 64 are made durable with one syncfs, and 47,000/s through the
// journal.) The WAL files themselves reach the disk later, when the
// kernel writes them back or when the journal rotates.
//
// The journal is two files of up to Config.JournalSize bytes, used in turn
// (appended to the first time through, overwritten after). When
// the current one is full the Group switches to the other and, in the
// background, makes every file of the file system durable with one
// syncfs; after that the records in the old file are not needed, and it
// may be reused at the next switch.
//
// A record holds a WAL file's path (relative to Config.Root), an offset
// and the bytes written there, and the salts of the WAL header they belong
// to. Records carry the file's epoch and a sequence number and end a file
// at the first one that is torn, from an older epoch or out of sequence.
//
// Recover replays the records after a crash. SQLite makes a new WAL
// header durable (it fsyncs the WAL) before it writes the first frame
// after it, and it writes a new header only after checkpointing every
// frame of the old one into the database file and fsyncing that. So the
// header on disk names the WAL's current generation, every frame of older
// generations is in the database file already, and Recover writes back
// only the records of the generation on disk. Within one generation SQLite
// never rewrites a committed frame, so writing back a record already on
// disk changes nothing, and the order of replay is the order of commits.
//
// The frames a commit adds follow, in SQLite's checksum chain, every frame
// before them in the same generation; all of those must be durable too.
// They are: committed through this Group (journaled), synced by a rotation
// or by Recover (which syncs the file system after an unclean stop), or
// synced by SQLite itself (the header). Storage must therefore pass every
// commit that writes a WAL through File.CommitWAL.

const (
	journalMagic = 0x4e524a44 // "DJRN", little-endian
	// recordHeaderSize is the fixed part of a record:
	//
	//	 0 magic   u32
	//	 4 crc     u32  CRC-32C of bytes 8..end of the record
	//	 8 epoch   u64
	//	16 seq     u64  0, 1, 2, ... within the epoch
	//	24 offset  i64  where data goes in the file
	//	32 ckpt    u32  checkpoint sequence of the WAL header
	//	36 salt1   u32
	//	40 salt2   u32
	//	44 pathLen u16
	//	46 flags   u16
	//	48 dataLen u32
	//	52 path, then data
	recordHeaderSize = 52
	// flagClean marks a record with no path or data that opens a journal
	// file whose previous contents are all durable elsewhere: written when
	// a Group closes after a final syncfs.
	flagClean = 1
	// flagZeroRuns marks a record whose data is packed (see packZeros).
	flagZeroRuns = 2
	// maxPath bounds a record's path.
	maxPath = 4096
	// maxRecordData is the largest WAL range copied into the journal. A
	// commit that wrote more (a bulk load) is made durable by a syncfs of
	// the file system instead.
	maxRecordData = 1 << 20
	// writebackAfter is how many bytes a file's commits add before the
	// journal asks the kernel to start writing them back (see kick).
	writebackAfter = 1 << 20
)

// ErrJournalBroken wraps the error of every commit after a write or sync
// of the journal failed: the kernel may have dropped pages the journal
// needed, so nothing more is acknowledged until the process restarts and
// Recover replays what the journal holds.
var ErrJournalBroken = errors.New("durability: the journal failed; restart to recover")

// JournalDir is the name of the journal's folder in a data folder.
const JournalDir = ".journal"

// DefaultJournalSize is the size of each of a Group's two journal files:
// the most that a recovery replays.
const DefaultJournalSize = 32 << 20

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// WALRange locates the frames that one commit added to a SQLite WAL file:
// bytes Off to End, which belong to the WAL generation whose header has
// checkpoint sequence Ckpt and salts Salt. Off is 0 when the range starts
// with the header.
type WALRange struct {
	Off, End int64
	Ckpt     uint32
	Salt     [2]uint32
}

// record is one decoded journal record.
type record struct {
	epoch, seq uint64
	off        int64
	ckpt       uint32
	salt       [2]uint32
	flags      uint16
	path       string
	data       []byte
}

// appendRecordHeader appends the header of a record and its path, leaving
// room for data; stampRecord fills in epoch, sequence and checksum.
func appendRecordHeader(b []byte, path string, r WALRange, flags uint16) []byte {
	var h [recordHeaderSize]byte
	binary.LittleEndian.PutUint32(h[0:], journalMagic)
	binary.LittleEndian.PutUint64(h[24:], uint64(r.Off))
	binary.LittleEndian.PutUint32(h[32:], r.Ckpt)
	binary.LittleEndian.PutUint32(h[36:], r.Salt[0])
	binary.LittleEndian.PutUint32(h[40:], r.Salt[1])
	binary.LittleEndian.PutUint16(h[44:], uint16(len(path)))
	binary.LittleEndian.PutUint16(h[46:], flags)
	binary.LittleEndian.PutUint32(h[48:], uint32(r.End-r.Off))
	b = append(b, h[:]...)
	return append(b, path...)
}

// stampRecord sets the epoch and sequence of the record that rec holds
// entirely, and its checksum.
func stampRecord(rec []byte, epoch, seq uint64) {
	binary.LittleEndian.PutUint64(rec[8:], epoch)
	binary.LittleEndian.PutUint64(rec[16:], seq)
	binary.LittleEndian.PutUint32(rec[4:], crc32.Checksum(rec[8:], castagnoli))
}

// cleanMarker returns the record that opens a journal file of the given
// epoch whose earlier records are all durable elsewhere.
func cleanMarker(epoch uint64) []byte {
	rec := appendRecordHeader(nil, "", WALRange{}, flagClean)
	stampRecord(rec, epoch, 0)
	return rec
}

// errEndOfJournal ends the valid records of a journal file.
var errEndOfJournal = errors.New("end of journal")

// readRecord decodes the record at the start of r. It returns
// errEndOfJournal where the file's valid records end: zeros, a torn or
// foreign record, or one longer than the limits allow.
func readRecord(r io.Reader, buf []byte) (record, []byte, error) {
	var h [recordHeaderSize]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return record{}, buf, errEndOfJournal
	}
	if binary.LittleEndian.Uint32(h[0:]) != journalMagic {
		return record{}, buf, errEndOfJournal
	}
	pathLen := int(binary.LittleEndian.Uint16(h[44:]))
	dataLen := int64(binary.LittleEndian.Uint32(h[48:]))
	if pathLen > maxPath || dataLen > maxRecordData {
		return record{}, buf, errEndOfJournal
	}
	n := pathLen + int(dataLen)
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		return record{}, buf, errEndOfJournal
	}
	crc := crc32.Update(crc32.Checksum(h[8:], castagnoli), castagnoli, buf)
	if crc != binary.LittleEndian.Uint32(h[4:]) {
		return record{}, buf, errEndOfJournal
	}
	rec := record{
		epoch: binary.LittleEndian.Uint64(h[8:]),
		seq:   binary.LittleEndian.Uint64(h[16:]),
		off:   int64(binary.LittleEndian.Uint64(h[24:])),
		ckpt:  binary.LittleEndian.Uint32(h[32:]),
		salt:  [2]uint32{binary.LittleEndian.Uint32(h[36:]), binary.LittleEndian.Uint32(h[40:])},
		flags: binary.LittleEndian.Uint16(h[46:]),
		path:  string(buf[:pathLen]),
	}
	if rec.off < 0 {
		return record{}, buf, errEndOfJournal
	}
	if rec.flags&flagZeroRuns != 0 {
		data, err := unpackZeros(buf[pathLen:], maxRecordData)
		if err != nil {
			return record{}, buf, errEndOfJournal
		}
		rec.data = data
	} else {
		rec.data = append([]byte(nil), buf[pathLen:]...)
	}
	return rec, buf, nil
}

// readJournalFile returns the epoch of a journal file and its valid
// records. A missing or empty file has epoch 0 and no records.
func readJournalFile(path string) (epoch uint64, recs []record, clean bool, err error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil, false, nil
	}
	if err != nil {
		return 0, nil, false, err
	}
	defer f.Close()
	return parseJournal(bufio.NewReaderSize(f, 1<<20))
}

// parseJournal reads records from r until the first invalid one.
func parseJournal(r io.Reader) (epoch uint64, recs []record, clean bool, err error) {
	var buf []byte
	for i := uint64(0); ; i++ {
		var rec record
		rec, buf, err = readRecord(r, buf)
		if err != nil {
			return epoch, recs, clean, nil
		}
		if i == 0 {
			if rec.seq != 0 {
				return 0, nil, false, nil
			}
			epoch = rec.epoch
			clean = rec.flags&flagClean != 0
		}
		if rec.epoch != epoch || rec.seq != i {
			return epoch, recs, clean, nil
		}
		if rec.flags&flagClean == 0 {
			recs = append(recs, rec)
		}
	}
}

// journalNames are the two files of a journal, in its directory.
var journalNames = [2]string{"journal-0", "journal-1"}

// Recovery reports what Recover found.
type Recovery struct {
	// Clean is true if the journal recorded a clean stop (or there was
	// none): nothing needed replaying.
	Clean bool
	// Records is the number of records in the journal files.
	Records int
	// Replayed is the number of records written back into WAL files.
	Replayed int
	// Files is the number of WAL files written to.
	Files int
	// Skipped is the number of records of a WAL generation that is not
	// the one on disk (already checkpointed into its database) or of a
	// WAL file that is gone.
	Skipped int
	// Epoch is the highest epoch found.
	Epoch uint64
}

// walHeaderSize is the size of a SQLite WAL header.
const walHeaderSize = 32

// readWALHeader returns the checkpoint sequence and salts of the WAL file
// at path, or ok false if it has no valid header.
func readWALHeader(path string) (ckpt uint32, salt [2]uint32, ok bool) {
	f, err := os.Open(path)
	if err != nil {
		return 0, salt, false
	}
	defer f.Close()
	var h [walHeaderSize]byte
	if _, err := f.ReadAt(h[:], 0); err != nil {
		return 0, salt, false
	}
	magic := binary.BigEndian.Uint32(h[0:])
	if magic&^1 != 0x377f0682 || binary.BigEndian.Uint32(h[4:]) != 3007000 {
		return 0, salt, false
	}
	// SQLite copies the salts into its WAL index with memcpy, so the
	// values a WALRange carries are the header's bytes in native order.
	return binary.BigEndian.Uint32(h[12:]), [2]uint32{binary.NativeEndian.Uint32(h[16:]), binary.NativeEndian.Uint32(h[20:])}, true
}

// Recover replays the journal in dir into the WAL files under root, makes
// them durable, and marks the journal clean. It must run before any
// database under root is opened. A dir without a journal is clean.
func Recover(dir, root string) (Recovery, error) {
	var out Recovery
	type file struct {
		epoch uint64
		recs  []record
		clean bool
	}
	var files []file
	for _, name := range journalNames {
		epoch, recs, clean, err := readJournalFile(filepath.Join(dir, name))
		if err != nil {
			return out, fmt.Errorf("durability: recover: %w", err)
		}
		files = append(files, file{epoch, recs, clean})
		out.Epoch = max(out.Epoch, epoch)
	}
	// Oldest epoch first; a clean marker in the newest file means every
	// record before it is durable.
	if files[0].epoch > files[1].epoch {
		files[0], files[1] = files[1], files[0]
	}
	newest := files[1]
	if newest.epoch == 0 && newest.recs == nil {
		out.Clean = true
		return out, nil
	}
	if newest.clean && len(newest.recs) == 0 {
		out.Clean = true
		return out, nil
	}
	var recs []record
	for _, f := range files {
		if f.clean && f.epoch == newest.epoch {
			recs = nil // everything before the marker is durable
		}
		recs = append(recs, f.recs...)
	}
	out.Records = len(recs)
	// Group by file, keeping commit order.
	byPath := map[string][]record{}
	var order []string
	for _, r := range recs {
		if _, ok := byPath[r.path]; !ok {
			order = append(order, r.path)
		}
		byPath[r.path] = append(byPath[r.path], r)
	}
	for _, rel := range order {
		if !filepath.IsLocal(filepath.FromSlash(rel)) {
			// Only a corrupt record whose checksum still matches could
			// name a file outside root.
			out.Skipped += len(byPath[rel])
			continue
		}
		path := filepath.Join(root, filepath.FromSlash(rel))
		_, salt, ok := readWALHeader(path)
		if !ok {
			// SQLite makes a WAL's header durable before its first frame,
			// and the first commit of a file is acknowledged only after
			// its directory entry is durable: a WAL without a header had
			// no acknowledged commit.
			out.Skipped += len(byPath[rel])
			continue
		}
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			return out, fmt.Errorf("durability: recover %s: %w", rel, err)
		}
		wrote := false
		for _, r := range byPath[rel] {
			if r.salt != salt {
				out.Skipped++
				continue
			}
			if _, err := f.WriteAt(r.data, r.off); err != nil {
				f.Close()
				return out, fmt.Errorf("durability: recover %s: %w", rel, err)
			}
			out.Replayed++
			wrote = true
		}
		if wrote && !hasSyncFS {
			// No syncfs below: each replayed file is synced itself.
			if err := fdatasync(f.Fd()); err != nil {
				f.Close()
				return out, fmt.Errorf("durability: recover %s: %w", rel, err)
			}
		}
		if err := f.Close(); err != nil {
			return out, fmt.Errorf("durability: recover %s: %w", rel, err)
		}
		if wrote {
			out.Files++
		}
	}
	// Make the replayed records durable, and with them any frame a
	// crashed process left in the page cache without journaling it (an
	// unacknowledged commit), which later commits would chain onto.
	if err := SyncFS(dir); err != nil {
		return out, fmt.Errorf("durability: recover: %w", err)
	}
	if err := writeClean(dir, out.Epoch+1); err != nil {
		return out, err
	}
	out.Epoch++
	return out, nil
}

// SyncFS runs syncfs(2) on the file system that holds path, making every
// file on it durable. Where syncfs(2) is missing (outside Linux) it syncs
// the regular files directly in the directory path, and path itself.
func SyncFS(path string) error {
	d, err := os.Open(path)
	if err != nil {
		return err
	}
	defer d.Close()
	if hasSyncFS {
		return syncfsFD(d.Fd())
	}
	ents, err := d.ReadDir(-1)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		f, err := os.OpenFile(filepath.Join(path, e.Name()), os.O_RDWR, 0)
		if err != nil {
			return err
		}
		err = fdatasync(f.Fd())
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	return d.Sync()
}

// writeClean writes a clean marker of the given epoch at the start of the
// newest journal file, the one that epoch selects, and makes it durable.
func writeClean(dir string, epoch uint64) error {
	f, err := os.OpenFile(filepath.Join(dir, journalNames[epoch%2]), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("durability: journal: %w", err)
	}
	defer f.Close()
	if _, err := f.WriteAt(cleanMarker(epoch), 0); err != nil {
		return fmt.Errorf("durability: journal: %w", err)
	}
	if err := fdatasync(f.Fd()); err != nil {
		return fmt.Errorf("durability: journal: %w", err)
	}
	return nil
}

// jack is a commit waiting in a journal batch.
type jack struct {
	f     *File
	seq   uint64
	bytes int64 // the commit's WAL bytes
}

// jbatch is the commits gathered while the writer was busy.
type jbatch struct {
	buf  []byte // records, not yet stamped
	recs []int  // start of each record in buf
	acks []jack
	big  bool // a commit was too big to copy: make this batch durable with syncfs

	// Set by the writer for the syncer.
	one  *File // make the batch durable by fsyncing this file, not the journal
	file int   // the journal file the records were written to
}

func (b *jbatch) reset() {
	b.buf, b.recs, b.acks, b.big, b.one = b.buf[:0], b.recs[:0], b.acks[:0], false, nil
}

// journal is a Group's node journal. Two goroutines run it, so that the
// disk always has a sync to work on: the writer takes the batch gathered
// from commits, copies its records into the current journal file and
// hands it to the syncer; the syncer makes it durable with one fdatasync
// and releases its commits. While the syncer syncs one batch, the writer
// writes the next as soon as the syncer is ready to take it, and commits
// gather into the one after.
type journal struct {
	g    *Group
	dir  string
	root string
	size int64

	mu      sync.Mutex // guards pending, free, closed
	pending *jbatch
	free    []*jbatch // batches the syncer is done with
	closed  bool      // the writer has stopped: add fails
	signal  chan struct{}

	// smu guards next, queued, stopping and broken; scond, on smu,
	// signals a change to any of them.
	smu      sync.Mutex
	scond    *sync.Cond
	next     *jbatch // written, for the syncer to take
	queued   int     // handed to the syncer and not yet released (at most 2)
	stopping bool    // the writer has handed over its last batch
	broken   error   // sticky: a journal write or sync failed

	quick quickSync // used by whichever goroutine syncs

	// growMu guards alloc and ends, and is held by whoever writes to a
	// file beyond its alloc: the writer appending, or the grower filling
	// zeros ahead of it.
	growMu  sync.Mutex
	alloc   [2]int64      // bytes of each file the grower filled (or found)
	ends    [2]int64      // end of the writer's writes beyond alloc
	growing chan struct{} // closed when the grower in flight is done; nil if none

	// Owned by the writer goroutine. The syncer reads files, which do
	// not change after openJournal.
	files  [2]*os.File
	cur    int // index into files
	epoch  uint64
	seq    uint64
	off    int64
	retire chan error // result of the background syncfs that retires the other file; nil if none runs
}

// openJournal opens (creating if needed) the journal files in dir for
// writing, starting after epoch, which Recover returned.
func openJournal(g *Group, dir, root string, size int64, epoch uint64) (*journal, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("durability: journal: %w", err)
	}
	j := &journal{g: g, dir: dir, root: root, size: size, signal: make(chan struct{}, 1),
		pending: &jbatch{}}
	j.scond = sync.NewCond(&j.smu)
	for i, name := range journalNames {
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			j.closeFiles()
			return nil, fmt.Errorf("durability: journal: %w", err)
		}
		j.files[i] = f
		st, err := f.Stat()
		if err != nil {
			j.closeFiles()
			return nil, fmt.Errorf("durability: journal: %w", err)
		}
		j.alloc[i] = min(st.Size(), size)
	}
	// The files are not preallocated at once (writing and syncing their
	// whole size would slow a folder's first start): a grower fills zeros
	// ahead of the writer, a step at a time (see writeAt), and once a file
	// is full size its fdatasyncs need no metadata.
	if err := SyncDir(dir); err != nil {
		j.closeFiles()
		return nil, fmt.Errorf("durability: journal: %w", err)
	}
	// Continue in the file of the next epoch, after the clean marker
	// Recover left in the current one.
	j.epoch = epoch + 1
	j.cur = int(j.epoch % 2)
	return j, nil
}

// start runs the writer and the syncer, owned by the Group.
func (j *journal) start() {
	j.g.wg.Add(2)
	go j.run()
	go j.syncer()
}

func (j *journal) closeFiles() {
	for _, f := range j.files {
		if f != nil {
			f.Close()
		}
	}
}

// packBufs are add's scratch buffers: the WAL bytes read back, and the
// packed record data.
type packBufs struct{ raw, packed []byte }

var packScratch = sync.Pool{New: func() any { return new(packBufs) }}

// add appends the record of one commit to the pending batch, copying its
// bytes from data if it holds them all, else reading them from fd; packed
// (see packZeros) if that saves a quarter or more.
func (j *journal) add(f *File, seq uint64, fd *os.File, r WALRange, data []byte) error {
	n := r.End - r.Off
	var pb *packBufs
	if n <= maxRecordData {
		// Read and pack outside the journal's lock: the caller keeps the
		// WAL's range as it is until this returns.
		pb = packScratch.Get().(*packBufs)
		defer packScratch.Put(pb)
		if int64(len(data)) != n {
			pb.raw = slices.Grow(pb.raw[:0], int(n))[:n]
			if err := preadAll(fd, pb.raw, r.Off); err != nil {
				return fmt.Errorf("durability: journal: read %s: %w", f.path, err)
			}
			data = pb.raw
		}
		pb.packed = pb.packed[:0]
		if worthPacking(data) {
			pb.packed = packZeros(pb.packed, data)
		}
	}
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return ErrClosed
	}
	b := j.pending
	if n > maxRecordData {
		b.big = true
	} else {
		start := len(b.buf)
		if packed := pb.packed; len(packed) > 0 && len(packed) < len(data)*3/4 {
			b.buf = appendRecordHeader(b.buf, f.rel, WALRange{Off: r.Off, End: r.Off + int64(len(packed)), Ckpt: r.Ckpt, Salt: r.Salt}, flagZeroRuns)
			b.buf = append(b.buf, packed...)
		} else {
			b.buf = appendRecordHeader(b.buf, f.rel, r, 0)
			b.buf = append(b.buf, data...)
		}
		b.recs = append(b.recs, start)
	}
	b.acks = append(b.acks, jack{f, seq, n})
	j.mu.Unlock()
	select {
	case j.signal <- struct{}{}:
	default:
	}
	return nil
}

// run is the writer goroutine.
func (j *journal) run() {
	defer j.g.wg.Done()
	for {
		select {
		case <-j.signal:
		case <-j.g.done:
			for j.writePending() {
			}
			j.mu.Lock()
			j.closed = true
			left := j.pending
			j.mu.Unlock()
			for _, a := range left.acks {
				a.f.fail(ErrClosed)
			}
			j.smu.Lock()
			j.stopping = true
			j.scond.Broadcast()
			j.smu.Unlock()
			j.drain()
			j.finish()
			return
		}
		j.writePending()
	}
}

// writePending writes the pending batch, if any, and reports whether there
// was one.
func (j *journal) writePending() bool {
	// Hold the batch open until the syncer has taken the one written
	// before: commits keep joining it meanwhile, so that each write and
	// each sync covers as many as the disk's pace allows.
	j.smu.Lock()
	for j.next != nil {
		j.scond.Wait()
	}
	j.smu.Unlock()
	j.mu.Lock()
	b := j.pending
	if len(b.acks) == 0 {
		j.mu.Unlock()
		return false
	}
	if n := len(j.free); n > 0 {
		j.pending = j.free[n-1]
		j.free = j.free[:n-1]
	} else {
		j.pending = &jbatch{}
	}
	j.mu.Unlock()
	j.write(b)
	return true
}

// oneFileMax is the most WAL bytes a file may hold unsynced for a batch of
// its commits alone to be made durable by fsyncing it rather than through
// the journal. An object that commits alone keeps its WAL synced that way
// (one sync either way, and no copy); a WAL the journal has covered for a
// while would have all it holds unsynced written by that fsync.
const oneFileMax = 256 << 10

// write prepares batch b for the syncer: it writes b's records to the
// journal, or marks b to be made durable by an fsync of the one file its
// commits belong to. A batch that does not fit in the journal file is
// made durable here, by a rotation.
func (j *journal) write(b *jbatch) {
	err := j.fault()
	if err == nil {
		err = j.syncNewDirs(b)
	}
	if err == nil {
		switch f := b.onlyFile(); {
		case f != nil && !b.big && !j.g.cfg.JournalAlways && f.unsyncedBytes() <= oneFileMax:
			b.one = f
		case b.big || j.off+int64(len(b.buf)) > j.size:
			j.drain()
			start := time.Now()
			err = j.rotate(b)
			j.release(b, time.Since(start), err)
			j.recycle(b)
			return
		default:
			j.stamp(b)
			if err = j.writeAt(j.cur, b.buf, j.off); err != nil {
				err = fmt.Errorf("durability: journal write: %w", err)
			}
			j.off += int64(len(b.buf))
			b.file = j.cur
		}
	}
	if err != nil {
		j.release(b, 0, err)
		j.recycle(b)
		return
	}
	j.smu.Lock()
	j.next = b
	j.queued++
	j.scond.Broadcast()
	j.smu.Unlock()
}

// drain waits until every batch handed to the syncer is released.
func (j *journal) drain() {
	j.smu.Lock()
	for j.queued > 0 {
		j.scond.Wait()
	}
	j.smu.Unlock()
}

// fault returns the error that broke the journal, or nil.
func (j *journal) fault() error {
	j.smu.Lock()
	defer j.smu.Unlock()
	return j.broken
}

// syncer is the goroutine that makes written batches durable.
func (j *journal) syncer() {
	defer j.g.wg.Done()
	for {
		j.smu.Lock()
		for j.next == nil && !j.stopping {
			j.scond.Wait()
		}
		b := j.next
		j.next = nil
		j.scond.Broadcast() // the writer may write the batch after
		j.smu.Unlock()
		if b == nil {
			return
		}
		err := j.fault()
		start := time.Now()
		if err == nil {
			if b.one != nil {
				err = j.syncOne(b.one)
			} else if err = j.syncJournal(j.files[b.file]); err != nil {
				err = fmt.Errorf("durability: journal sync: %w", err)
			}
		}
		j.release(b, time.Since(start), err)
		j.recycle(b)
		j.smu.Lock()
		j.queued--
		j.scond.Broadcast()
		j.smu.Unlock()
	}
}

// recycle gives a released batch back for the commits to fill.
func (j *journal) recycle(b *jbatch) {
	b.reset()
	j.mu.Lock()
	j.free = append(j.free, b)
	j.mu.Unlock()
}

// release ends batch b, made durable by a sync that took elapsed and
// returned err: its commits become durable, or fail.
func (j *journal) release(b *jbatch, elapsed time.Duration, err error) {
	g := j.g
	g.syncNs.Add(int64(elapsed))
	g.syncs.Add(1)
	if err != nil {
		j.smu.Lock()
		if j.broken == nil {
			j.broken = fmt.Errorf("%w: %w", ErrJournalBroken, err)
		}
		err = j.broken
		g.fails.Add(1)
		j.smu.Unlock()
		for _, a := range b.acks {
			a.f.fail(err)
		}
		return
	}
	covered := 0
	for _, a := range b.acks {
		covered += a.f.markJournaled(a.seq)
	}
	if obs := g.cfg.Observer; obs != nil && covered > 0 {
		obs.Synced(elapsed, covered)
	}
	for _, a := range b.acks {
		a.f.kick(a.bytes)
	}
}

// kick counts n more bytes written to f's WAL and not synced, and once
// there are writebackAfter of them asks the kernel to start writing them
// back, without waiting. A WAL the journal covers is never synced for a
// commit, but SQLite fsyncs it before each checkpoint, inside a turn:
// started early, that fsync finds little left to write instead of the
// whole WAL (megabytes for a busy object, tens of milliseconds).
func (f *File) kick(n int64) {
	f.mu.Lock()
	f.unsynced += n
	if f.unsynced < writebackAfter || f.closed {
		f.mu.Unlock()
		return
	}
	f.unsynced = 0
	f.mu.Unlock()
	// Advice only: an error changes nothing durability depends on. The
	// descriptor stays open for the next time. Close does not wait for
	// kicks, but it takes fd out under f.mu before closing it: holding
	// f.mu with f.fd still set, the descriptor is open.
	fd, err := f.open()
	if err != nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fd == fd {
		startWriteback(fd.Fd())
	}
}

// unsyncedBytes returns the WAL bytes journaled and not yet synced or
// handed to writeback.
func (f *File) unsyncedBytes() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.unsynced
}

// syncNewDirs makes durable the directory entries of the files in b that
// have not been made durable before (a new object's database and WAL).
func (j *journal) syncNewDirs(b *jbatch) error {
	var dirs map[string]bool
	for _, a := range b.acks {
		a.f.mu.Lock()
		need := !a.f.dirSynced
		a.f.mu.Unlock()
		if !need {
			continue
		}
		if dirs == nil {
			dirs = map[string]bool{}
		}
		if !dirs[a.f.dir] {
			dirs[a.f.dir] = true
			if err := j.g.cfg.SyncDir(a.f.dir); err != nil {
				return fmt.Errorf("durability: sync %s: %w", a.f.dir, err)
			}
		}
		a.f.mu.Lock()
		a.f.dirSynced = true
		a.f.mu.Unlock()
		j.g.rememberNamed(a.f.key)
	}
	return nil
}

// onlyFile returns the File all of b's commits belong to, or nil if they
// belong to several.
func (b *jbatch) onlyFile() *File {
	f := b.acks[0].f
	for _, a := range b.acks[1:] {
		if a.f != f {
			return nil
		}
	}
	return f
}

// syncOne makes a batch whose commits all belong to f durable by fsyncing
// f, which covers every frame of its WAL: when one object is the only one
// writing, that is one sync either way, and it spares the journal write
// and keeps the WAL synced for SQLite's checkpoints.
func (j *journal) syncOne(f *File) error {
	fd, err := f.open() // Close waits for the commits this syncs
	if err != nil {
		return fmt.Errorf("durability: sync %s: %w", f.path, err)
	}
	if err := j.syncFile(fd); err != nil {
		return fmt.Errorf("durability: sync %s: %w", f.path, err)
	}
	f.mu.Lock()
	f.unsynced = 0
	f.mu.Unlock()
	return nil
}

// growStep is how far ahead of the flusher the grower fills a journal
// file with zeros.
const growStep = 4 << 20

// writeAt writes buf at off in journal file i. Below the file's alloc it
// overwrites blocks that exist (no metadata to sync); past it, it appends,
// under growMu so that the grower never zeroes what it wrote. As the
// flusher nears the end of what is allocated it starts the grower.
func (j *journal) writeAt(i int, buf []byte, off int64) error {
	end := off + int64(len(buf))
	j.growMu.Lock()
	alloc := j.alloc[i]
	if end <= alloc {
		j.growMu.Unlock()
		return pwriteAll(j.files[i], buf, off)
	}
	err := pwriteAll(j.files[i], buf, off)
	j.ends[i] = max(j.ends[i], end)
	if j.growing == nil && alloc < j.size {
		done := make(chan struct{})
		j.growing = done
		j.g.wg.Add(1)
		go j.grow(i, done)
	}
	j.growMu.Unlock()
	return err
}

// quickSyncMax is the longest a sync may take, on average, for the
// journal to wait for it holding its P (see quickSync).
const quickSyncMax = time.Millisecond

// quickSync makes a file durable. A goroutine that waits in a system call
// lets the scheduler hand its P to other goroutines; when the call
// returns it must wait for a P again, and on a busy node that wait is
// often longer than the sync (measured here: 0.2 ms in fdatasync, 0.4 ms
// more before the flusher ran again, and a quarter fewer commits per
// second). So while syncs are quick, and there is more than one P, the
// journal holds its P through them. A slow disk (over quickSyncMax on
// average) gets the ordinary call, so that the P is not kept from the
// other goroutines for long; so does a program with one P. One cost
// remains: a stop-the-world of the garbage collector waits for a sync in
// flight.
type quickSync struct {
	avg atomic.Int64 // moving average of the sync time, in nanoseconds
}

// holdP reports whether the next sync keeps its P.
func (q *quickSync) holdP() bool {
	return time.Duration(q.avg.Load()) <= quickSyncMax && runtime.GOMAXPROCS(0) > 1
}

// sync runs fsync(2), or fdatasync(2) if data is set, on fd.
func (q *quickSync) sync(fd uintptr, data bool) error {
	start := time.Now()
	err := rawSync(fd, data, q.holdP())
	d := int64(time.Since(start))
	avg := q.avg.Load()
	q.avg.Store(avg + (d-avg)/8)
	return err
}

// syncJournal makes the writes to a journal file durable.
func (j *journal) syncJournal(f *os.File) error {
	if sync := j.g.cfg.SyncJournal; sync != nil {
		return sync(f)
	}
	if err := j.quick.sync(f.Fd(), true); err != nil {
		return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: err}
	}
	return nil
}

// syncFile fsyncs the file of a one-file batch.
func (j *journal) syncFile(f *os.File) error {
	if !j.g.defaultSyncFile {
		return j.g.cfg.SyncFile(f)
	}
	if err := j.quick.sync(f.Fd(), false); err != nil {
		return &os.PathError{Op: "fsync", Path: f.Name(), Err: err}
	}
	return nil
}

// pwriteAll writes buf at off in f without handing the goroutine's P to
// the scheduler for the call, as the os package would: writing to the page
// cache is work for the CPU, not a wait, and a writer that gave up its P
// would queue behind every goroutine the last sync released before it
// could hand the next batch over.
func pwriteAll(f *os.File, buf []byte, off int64) error {
	return rawIO(true, f, buf, off)
}

// preadAll fills buf from off in f, as pwriteAll writes: reading a WAL's
// newest frames is a copy from the page cache, done under the journal's
// lock, which a goroutine waiting for a P would hold for everyone.
func preadAll(f *os.File, buf []byte, off int64) error {
	return rawIO(false, f, buf, off)
}

// rawIO runs pwrite(2), if write is set, or pread(2) until all of buf is
// done.
func rawIO(write bool, f *os.File, buf []byte, off int64) error {
	op := "read"
	if write {
		op = "write"
	}
	for len(buf) > 0 {
		n, err := rawRW(write, f, buf, off)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return &os.PathError{Op: op, Path: f.Name(), Err: err}
		case n == 0:
			return &os.PathError{Op: op, Path: f.Name(), Err: io.ErrUnexpectedEOF}
		}
		buf = buf[n:]
		off += int64(n)
	}
	return nil
}

// grow fills file i with zeros from where the flusher's writes end to a
// growStep beyond, and makes them durable. An error only leaves the file
// to be appended to.
func (j *journal) grow(i int, done chan struct{}) {
	defer j.g.wg.Done()
	defer func() {
		j.growMu.Lock()
		j.growing = nil
		j.growMu.Unlock()
		close(done)
	}()
	j.growMu.Lock()
	start := max(j.alloc[i], j.ends[i])
	target := min(j.size, start+growStep)
	var err error
	if target > start {
		_, err = j.files[i].WriteAt(make([]byte, target-start), start)
	}
	j.growMu.Unlock()
	if err == nil && target > start {
		err = fdatasync(j.files[i].Fd())
	}
	if err == nil {
		j.growMu.Lock()
		j.alloc[i] = max(j.alloc[i], target)
		j.growMu.Unlock()
	}
}

// waitGrown waits for the grower in flight, if any.
func (j *journal) waitGrown() {
	j.growMu.Lock()
	ch := j.growing
	j.growMu.Unlock()
	if ch != nil {
		<-ch
	}
}

// writeSync appends b's records to the current journal file and syncs it.
func (j *journal) writeSync(b *jbatch) error {
	j.stamp(b)
	if err := j.writeAt(j.cur, b.buf, j.off); err != nil {
		return fmt.Errorf("durability: journal write: %w", err)
	}
	j.off += int64(len(b.buf))
	if err := j.syncJournal(j.files[j.cur]); err != nil {
		return fmt.Errorf("durability: journal sync: %w", err)
	}
	return nil
}

func (j *journal) stamp(b *jbatch) {
	for i, start := range b.recs {
		end := len(b.buf)
		if i+1 < len(b.recs) {
			end = b.recs[i+1]
		}
		stampRecord(b.buf[start:end], j.epoch, j.seq)
		j.seq++
	}
}

// rotate switches to the other journal file, with a new epoch, once the
// records in it are durable elsewhere, and starts retiring the current
// one. A batch too big for the journal is made durable by a syncfs of its
// own.
func (j *journal) rotate(b *jbatch) error {
	if err := j.waitRetired(); err != nil {
		return err
	}
	old := j.files[j.cur]
	j.cur = 1 - j.cur
	j.epoch++
	j.seq = 0
	j.off = 0
	if b.big || int64(len(b.buf)) > j.size {
		// One syncfs makes this batch and everything before it durable;
		// only then may a clean marker say so. (Without the marker, a
		// recovery replays records that are durable already: harmless.)
		j.g.batches.Add(1)
		if err := j.g.cfg.SyncFS([]*os.File{j.files[j.cur]}); err != nil {
			return fmt.Errorf("durability: syncfs: %w", err)
		}
		rec := cleanMarker(j.epoch)
		j.seq = 1
		j.off = int64(len(rec))
		if err := j.writeAt(j.cur, rec, 0); err != nil {
			return fmt.Errorf("durability: journal write: %w", err)
		}
		if err := j.syncJournal(j.files[j.cur]); err != nil {
			return fmt.Errorf("durability: journal sync: %w", err)
		}
		return nil
	}
	if err := j.writeSync(b); err != nil {
		return err
	}
	// Retire the old file in the background: the next rotation waits.
	ch := make(chan error, 1)
	j.retire = ch
	j.g.batches.Add(1)
	j.g.wg.Add(1)
	go func() {
		defer j.g.wg.Done()
		ch <- j.g.cfg.SyncFS([]*os.File{old})
	}()
	return nil
}

// waitRetired waits for the background syncfs of the last rotation.
func (j *journal) waitRetired() error {
	if j.retire != nil {
		err := <-j.retire
		j.retire = nil
		if err != nil {
			return fmt.Errorf("durability: syncfs: %w", err)
		}
	}
	return nil
}

// finish runs when the Group closes, after the last batch: it makes
// everything durable and leaves a clean marker, so that the next start
// replays nothing.
func (j *journal) finish() {
	defer j.closeFiles()
	defer j.waitGrown()
	if j.waitRetired() != nil || j.fault() != nil {
		return
	}
	next := j.epoch + 1
	if err := j.g.cfg.SyncFS([]*os.File{j.files[j.cur]}); err != nil {
		return
	}
	f := j.files[next%2]
	if err := j.writeAt(int(next%2), cleanMarker(next), 0); err != nil {
		return
	}
	_ = j.syncJournal(f)
}
