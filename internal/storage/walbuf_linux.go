package storage

import (
	"bytes"
	"errors"
	"sync"
	"unsafe"

	"github.com/durable-go/durable/internal/durability"
	"golang.org/x/sys/unix"
	"modernc.org/libc"
	lib "modernc.org/sqlite/lib"
)

// SQLite writes each WAL frame with two system calls, its 24-byte header
// and then its page, so a commit of two pages costs four pwrites (about
// 5 µs each with thousands of files open here), and the journal then
// reads the frames back with a fifth. Object databases are therefore
// opened through a VFS of our own, "durable", which is SQLite's unix-none
// with one change: writes to a WAL file are gathered in memory and
// written with one pwrite when the transaction's commit frame is complete
// (or before anything else touches the file: a read, a sync, a truncate,
// its size, a file control, a close, or a write that does not extend or
// fall inside the gathered bytes).
//
// So the WAL file is exactly as SQLite would have left it whenever SQLite
// or anyone else looks at it, and a failed write is reported to SQLite by
// the call that wrote the commit frame, which then rolls the transaction
// back as it would for its own failed write. The one exception: after a
// commit whose pages were already in the WAL, SQLite rewrites the
// checksums of the frames from the first such page on, and the last
// rewritten header can stay gathered when the commit returns; DB.Commit
// flushes it (flushWAL) before the journal reads the frames, and a
// failure there fails the commit and the object is reset. A file whose
// write failed fails every later call and never writes the bytes it held.

const (
	walVFSName = "durable"
	// walGatherMax bounds the bytes gathered for one file; past it they
	// are written and gathering starts again.
	walGatherMax = 1 << 20
	// SQLite's frame header is 24 bytes; bytes 4-7 hold the database size
	// after a commit, zero for a frame that is not a commit's last.
	walFrameHdr = 24
	// walHdr is the size of the WAL header, the first read of a scan.
	walHdr = 32
	// walReadAhead is what one read of a scan of the WAL reads (see
	// walRead).
	walReadAhead = 256 << 10
)

var walVFS struct {
	err      error   // why the VFS is not registered; then unix-none is used
	origOpen uintptr // unix-none's xOpen
	// unix-none's xFullPathname
	origFullPathname uintptr
	unixVFS          uintptr // the unix-none sqlite3_vfs
	methods          uintptr // C memory: the io methods of a WAL file
	orig             lib.Tsqlite3_io_methods1

	// files maps the sqlite3_file address of each open WAL to its
	// *walFile. Every call on a WAL looks it up: a sync.Map reads
	// without a lock (a map behind a mutex bounced the mutex's cache
	// line between cores on every WAL read and write).
	files sync.Map
}

// walFile is the gathering state of one open WAL file.
type walFile struct {
	fd     int
	off    int64   // file offset of buf[0]
	buf    []byte  // gathered bytes, nil when none
	bp     *[]byte // buf's pool entry
	kept   bool    // buf is written already, kept for the journal (see walData)
	commit int64   // offset of the page of a commit frame whose header was gathered; -1 if none
	err    error   // a write failed: the file fails every call

	// A scan's read-ahead (see walRead): ra holds the file's bytes from
	// raOff, nil when none; scanEnd is where the scan's next read starts.
	ra      []byte
	raOff   int64
	rap     *[]byte // ra's pool entry
	scanEnd int64
}

// walPwrite writes the gathered bytes; tests replace it to inject faults.
var walPwrite = unix.Pwrite

// walPread reads ahead for a scan; tests replace it to count and fail reads.
var walPread = unix.Pread

// walReadAheadPool holds read-ahead buffers (*[]byte of walReadAhead
// bytes): a database holds one only while it scans its WAL.
var walReadAheadPool = sync.Pool{New: func() any { b := make([]byte, walReadAhead); return &b }}

// walBufPool holds gathering buffers (*[]byte) between transactions, so
// that an idle database holds none.
var walBufPool = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

// gather starts gathering data at off in a buffer from the pool.
func (w *walFile) gather(data []byte, off int64) {
	w.bp = walBufPool.Get().(*[]byte)
	w.buf = append((*w.bp)[:0], data...)
	w.off = off
}

// release returns the buffer to the pool.
func (w *walFile) release() {
	if w.bp != nil {
		if cap(w.buf) <= walGatherMax {
			*w.bp = w.buf[:0]
			walBufPool.Put(w.bp)
		}
		w.bp = nil
	}
	w.buf = nil
	w.kept = false
}

// registerWALVFS registers the "durable" VFS once, before the first Open.
func registerWALVFS() error {
	walVFSOnce.Do(func() { walVFS.err = doRegisterWALVFS() })
	return walVFS.err
}

var walVFSOnce sync.Once

func doRegisterWALVFS() error {
	tls := libc.NewTLS()
	defer tls.Close()
	name, err := libc.CString("unix-none")
	if err != nil {
		return err
	}
	defer libc.Xfree(tls, name)
	unixNone := lib.Xsqlite3_vfs_find(tls, name)
	if unixNone == 0 {
		return errors.New("storage: SQLite has no unix-none VFS")
	}
	// The io methods of a file opened through unix-none, taken from a
	// file of its own (a temporary one) rather than from a symbol.
	nolock, err := unixNoneMethods(tls, unixNone)
	if err != nil {
		return err
	}
	walVFS.orig = *cAt[lib.Tsqlite3_io_methods1](nolock)
	if walVFS.orig.FiVersion < 1 || walVFS.orig.FxWrite == 0 {
		return errors.New("storage: unexpected unix-none io methods")
	}

	m := libc.Xcalloc(tls, 1, libc.Tsize_t(unsafe.Sizeof(lib.Tsqlite3_io_methods1{})))
	v := libc.Xcalloc(tls, 1, libc.Tsize_t(unsafe.Sizeof(lib.Tsqlite3_vfs1{})))
	vname, err := libc.CString(walVFSName)
	if m == 0 || v == 0 || err != nil {
		return errors.New("storage: register the WAL VFS: out of memory")
	}
	methods := cAt[lib.Tsqlite3_io_methods1](m)
	*methods = walVFS.orig
	methods.FxClose = funcPointer(walClose)
	methods.FxRead = funcPointer(walRead)
	methods.FxWrite = funcPointer(walWrite)
	methods.FxTruncate = funcPointer(walTruncate)
	methods.FxSync = funcPointer(walSync)
	methods.FxFileSize = funcPointer(walFileSize)
	methods.FxFileControl = funcPointer(walFileControl)

	vfs := cAt[lib.Tsqlite3_vfs1](v)
	*vfs = *cAt[lib.Tsqlite3_vfs1](unixNone)
	vfs.FpNext = 0
	vfs.FzName = vname
	vfs.FxOpen = funcPointer(walVFSOpen)
	walVFS.origFullPathname = vfs.FxFullPathname
	vfs.FxFullPathname = funcPointer(walFullPathname)

	walVFS.origOpen = cAt[lib.Tsqlite3_vfs1](unixNone).FxOpen
	walVFS.unixVFS = unixNone
	walVFS.methods = m
	if rc := lib.Xsqlite3_vfs_register(tls, v, 0); rc != lib.SQLITE_OK {
		return errors.New("storage: register the WAL VFS failed")
	}
	deferredVFS.Store(v) // ext.go
	return nil
}

// unixNoneMethods opens a temporary file through unix-none and returns its
// io methods.
func unixNoneMethods(tls *libc.TLS, vfs uintptr) (uintptr, error) {
	v := cAt[lib.Tsqlite3_vfs1](vfs)
	f := libc.Xcalloc(tls, 1, libc.Tsize_t(v.FszOsFile))
	if f == 0 {
		return 0, errors.New("storage: out of memory")
	}
	defer libc.Xfree(tls, f)
	flags := int32(lib.SQLITE_OPEN_TEMP_JOURNAL | lib.SQLITE_OPEN_READWRITE | lib.SQLITE_OPEN_CREATE | lib.SQLITE_OPEN_EXCLUSIVE | lib.SQLITE_OPEN_DELETEONCLOSE)
	open := *(*func(*libc.TLS, uintptr, uintptr, uintptr, int32, uintptr) int32)(unsafe.Pointer(&v.FxOpen))
	if rc := open(tls, vfs, 0, f, flags, 0); rc != lib.SQLITE_OK {
		return 0, errors.New("storage: open a temporary file through unix-none failed")
	}
	file := cAt[lib.Tsqlite3_file](f)
	m := file.FpMethods
	if m != 0 {
		close := *(*func(*libc.TLS, uintptr) int32)(unsafe.Pointer(&cAt[lib.Tsqlite3_io_methods1](m).FxClose))
		close(tls, f)
	}
	if m == 0 {
		return 0, errors.New("storage: unix-none gave a temporary file no methods")
	}
	return m, nil
}

func walVFSOpen(tls *libc.TLS, pVfs, zName, pFile uintptr, flags int32, pOutFlags uintptr) int32 {
	open := *(*func(*libc.TLS, uintptr, uintptr, uintptr, int32, uintptr) int32)(unsafe.Pointer(&walVFS.origOpen))
	rc := open(tls, walVFS.unixVFS, zName, pFile, flags, pOutFlags)
	if rc != lib.SQLITE_OK || flags&lib.SQLITE_OPEN_WAL == 0 {
		return rc
	}
	file := cAt[lib.Tsqlite3_file](pFile)
	if file.FpMethods == 0 {
		return rc
	}
	w := &walFile{fd: int(cAt[lib.TunixFile](pFile).Fh), commit: -1}
	walVFS.files.Store(pFile, w)
	file.FpMethods = walVFS.methods
	return rc
}

// walFullPathname is the VFS's xFullPathname. Unix-none's resolves every
// symbolic link along the path, with an lstat per component (19 µs of an
// activation's 230 in the alarm benchmark), so that a database
// opened through a link finds its WAL beside the file linked to. Open
// names databases by absolute, clean paths (connName) of files it
// created, never links, so a path of that form is returned as it is, and
// the WAL is the file durability journals, path+"-wal", whatever links
// the folders above it are. Any other path goes to unix-none's.
func walFullPathname(tls *libc.TLS, pVfs, zPath uintptr, nOut int32, zOut uintptr) int32 {
	if zPath != 0 && nOut > 0 {
		n := int(libc.Xstrlen(tls, zPath))
		if path := libc.GoBytes(zPath, n); n < int(nOut) && cleanAbs(path) {
			copy(libc.GoBytes(zOut, n+1), libc.GoBytes(zPath, n+1))
			return lib.SQLITE_OK
		}
	}
	full := *(*func(*libc.TLS, uintptr, uintptr, int32, uintptr) int32)(unsafe.Pointer(&walVFS.origFullPathname))
	return full(tls, walVFS.unixVFS, zPath, nOut, zOut)
}

// cleanAbs reports whether path is absolute and clean: no empty, "." or
// ".." component and no trailing slash.
func cleanAbs(path []byte) bool {
	if len(path) < 2 || path[0] != '/' || path[len(path)-1] == '/' {
		return false
	}
	for elem := range bytes.SplitSeq(path[1:], []byte{'/'}) {
		if len(elem) == 0 || string(elem) == "." || string(elem) == ".." {
			return false
		}
	}
	return true
}

func walFileOf(pFile uintptr) *walFile {
	w, _ := walVFS.files.Load(pFile)
	f, _ := w.(*walFile)
	return f
}

// flush writes the gathered bytes, if any.
func (w *walFile) flush() int32 { return w.write(false) }

// write writes the gathered bytes, if any, and then releases the buffer,
// or keeps it (and its bytes) for walData if keep is set.
func (w *walFile) write(keep bool) int32 {
	if w.err != nil {
		return lib.SQLITE_IOERR_WRITE
	}
	if w.kept || len(w.buf) == 0 {
		return lib.SQLITE_OK
	}
	buf, off := w.buf, w.off
	w.commit = -1
	if keep {
		defer func() { w.kept = w.err == nil }()
	} else {
		defer w.release()
	}
	for len(buf) > 0 {
		n, err := walPwrite(w.fd, buf, off)
		if err == unix.EINTR {
			continue
		}
		if err == nil && n == 0 {
			err = unix.EIO
		}
		if err != nil {
			w.err = err
			if errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) {
				return lib.SQLITE_FULL
			}
			return lib.SQLITE_IOERR_WRITE
		}
		buf, off = buf[n:], off+int64(n)
	}
	return lib.SQLITE_OK
}

func walWrite(tls *libc.TLS, pFile, pBuf uintptr, amt int32, off int64) int32 {
	w := walFileOf(pFile)
	if w == nil {
		return lib.SQLITE_IOERR_WRITE
	}
	if w.err != nil {
		return lib.SQLITE_IOERR_WRITE
	}
	w.endScan()
	if w.kept {
		w.release()
	}
	data := unsafe.Slice(cAt[byte](pBuf), amt)
	end := w.off + int64(len(w.buf))
	switch {
	case w.buf != nil && off == end && len(w.buf)+len(data) <= walGatherMax:
		w.buf = append(w.buf, data...)
	case w.buf != nil && off >= w.off && off+int64(amt) <= end:
		copy(w.buf[off-w.off:], data)
	default:
		if rc := w.flush(); rc != lib.SQLITE_OK {
			return rc
		}
		if len(data) > walGatherMax {
			write := *(*func(*libc.TLS, uintptr, uintptr, int32, int64) int32)(unsafe.Pointer(&walVFS.orig.FxWrite))
			return write(tls, pFile, pBuf, amt, off)
		}
		w.gather(data, off)
	}
	switch {
	case amt == walFrameHdr && (data[4]|data[5]|data[6]|data[7]) != 0:
		w.commit = off + walFrameHdr // the commit frame's page comes next
	case off == w.commit:
		return w.write(true)
	}
	return lib.SQLITE_OK
}

// flushFirst flushes pFile's gathered bytes, and ends a scan, before
// another operation.
func flushFirst(pFile uintptr) int32 {
	if w := walFileOf(pFile); w != nil {
		w.endScan()
		return w.flush()
	}
	return lib.SQLITE_OK
}

// walRead reads the WAL. When a database opens, SQLite rebuilds the WAL
// index by reading the WAL's header and then every frame, each with a
// read of its own (a busy object's WAL holds up to a thousand frames
// between checkpoints: a thousand preads per activation). A read of the
// header starts a scan, served from reads of walReadAhead bytes; the scan
// ends, and the buffer goes back to its pool, at the first read that does
// not continue it, or at any write, truncation, sync or close. A read the
// scan cannot serve whole (past the end of the file, a failed read) goes
// to unix-none's read, which reports it as SQLite expects.
func walRead(tls *libc.TLS, pFile, pBuf uintptr, amt int32, off int64) int32 {
	w := walFileOf(pFile)
	if w != nil {
		if w.flush() != lib.SQLITE_OK {
			return lib.SQLITE_IOERR_READ
		}
		if w.scanRead(unsafe.Slice(cAt[byte](pBuf), amt), off) {
			return lib.SQLITE_OK
		}
	}
	return (*(*func(*libc.TLS, uintptr, uintptr, int32, int64) int32)(unsafe.Pointer(&walVFS.orig.FxRead)))(tls, pFile, pBuf, amt, off)
}

// scanRead serves a read of a scan (see walRead) into dst, and reports
// whether it did.
func (w *walFile) scanRead(dst []byte, off int64) bool {
	switch {
	case off == 0 && len(dst) == walHdr:
		w.endScan() // a new scan
		w.rap = walReadAheadPool.Get().(*[]byte)
	case w.rap != nil && off == w.scanEnd:
	default:
		w.endScan()
		return false
	}
	end := off + int64(len(dst))
	if off < w.raOff || end > w.raOff+int64(len(w.ra)) {
		n, err := w.preadFull(*w.rap, off)
		if err != nil || int64(n) < int64(len(dst)) {
			w.endScan()
			return false
		}
		w.ra, w.raOff = (*w.rap)[:n], off
	}
	copy(dst, w.ra[off-w.raOff:end-w.raOff])
	w.scanEnd = end
	return true
}

// preadFull reads buf at off until it is full or the file ends.
func (w *walFile) preadFull(buf []byte, off int64) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := walPread(w.fd, buf[n:], off+int64(n))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return n, err
		}
		if m == 0 {
			break
		}
		n += m
	}
	return n, nil
}

// endScan ends a scan, if any, and returns its buffer.
func (w *walFile) endScan() {
	if w.rap == nil {
		return // no scan: every write and flush passes here
	}
	walReadAheadPool.Put(w.rap)
	w.ra, w.raOff, w.rap, w.scanEnd = nil, 0, nil, 0
}

func walTruncate(tls *libc.TLS, pFile uintptr, size int64) int32 {
	if flushFirst(pFile) != lib.SQLITE_OK {
		return lib.SQLITE_IOERR_TRUNCATE
	}
	return (*(*func(*libc.TLS, uintptr, int64) int32)(unsafe.Pointer(&walVFS.orig.FxTruncate)))(tls, pFile, size)
}

func walSync(tls *libc.TLS, pFile uintptr, flags int32) int32 {
	if flushFirst(pFile) != lib.SQLITE_OK {
		return lib.SQLITE_IOERR_FSYNC
	}
	return (*(*func(*libc.TLS, uintptr, int32) int32)(unsafe.Pointer(&walVFS.orig.FxSync)))(tls, pFile, flags)
}

func walFileSize(tls *libc.TLS, pFile, pSize uintptr) int32 {
	if flushFirst(pFile) != lib.SQLITE_OK {
		return lib.SQLITE_IOERR_FSTAT
	}
	return (*(*func(*libc.TLS, uintptr, uintptr) int32)(unsafe.Pointer(&walVFS.orig.FxFileSize)))(tls, pFile, pSize)
}

func walFileControl(tls *libc.TLS, pFile uintptr, op int32, pArg uintptr) int32 {
	if rc := flushFirst(pFile); rc != lib.SQLITE_OK {
		return rc
	}
	return (*(*func(*libc.TLS, uintptr, int32, uintptr) int32)(unsafe.Pointer(&walVFS.orig.FxFileControl)))(tls, pFile, op, pArg)
}

func walClose(tls *libc.TLS, pFile uintptr) int32 {
	v, _ := walVFS.files.LoadAndDelete(pFile)
	w, _ := v.(*walFile)
	rc := int32(lib.SQLITE_OK)
	if w != nil {
		rc = w.flush()
		w.release()
		w.endScan()
	}
	if crc := (*(*func(*libc.TLS, uintptr) int32)(unsafe.Pointer(&walVFS.orig.FxClose)))(tls, pFile); rc == lib.SQLITE_OK {
		rc = crc
	}
	return rc
}

// walData writes the WAL bytes the connection still has gathered (see
// above), and returns the bytes at [rg.Off, rg.End) of the file if the
// last commit's written bytes, kept, cover them: the journal copies them
// instead of reading them back. Call releaseWAL once done with them. An
// error means the WAL lacks frames SQLite counts as written.
func (r rawConn) walData(rg durability.WALRange) ([]byte, error) {
	w := r.walFile()
	if w == nil {
		return nil, nil
	}
	if rc := w.flush(); rc != lib.SQLITE_OK {
		return nil, &walWriteError{err: w.err}
	}
	if w.kept && w.off <= rg.Off && rg.End <= w.off+int64(len(w.buf)) {
		return w.buf[rg.Off-w.off : rg.End-w.off], nil
	}
	return nil, nil
}

// releaseWAL lets go of the bytes walData returned.
func (r rawConn) releaseWAL() {
	if w := r.walFile(); w != nil && w.kept {
		w.release()
	}
}

// walFile returns the gathering state of the connection's open WAL, or
// nil.
func (r rawConn) walFile() *walFile {
	if wal := r.wal(); wal != nil {
		return walFileOf(wal.FpWalFd)
	}
	return nil
}

// walDiskFull reports whether the gathered WAL write failed for lack of
// space (see diskFull).
func (r rawConn) walDiskFull() bool {
	w := r.walFile()
	return w != nil && (errors.Is(w.err, unix.ENOSPC) || errors.Is(w.err, unix.EDQUOT))
}

// walWriteError reports a WAL write that failed after SQLite counted it.
type walWriteError struct{ err error }

func (e *walWriteError) Error() string { return "storage: write the WAL: " + e.err.Error() }
func (e *walWriteError) Unwrap() error { return e.err }
