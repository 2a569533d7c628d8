package storage

import (
	"sync"
	"unsafe"

	"modernc.org/libc"
	lib "modernc.org/sqlite/lib"
)

// SQLite's memory comes from the transpiled libc allocator, which gives
// every block above 16 KiB an mmap of its own and unmaps it when the block
// is freed. Opening a database allocates two such blocks: the 32 KiB page
// of the WAL index (kept in heap memory under exclusive locking) and the
// 36 KiB buffer that rebuilds it from the WAL; closing frees them. Each
// cost an mmap, eight page faults to zero it and an munmap: about 100 µs,
// 40% of opening an existing database here.
//
// So storage wraps SQLite's allocator (sqlite3_config SQLITE_CONFIG_MALLOC,
// before SQLite initializes) with a small cache of such blocks: a block of
// 16-256 KiB is rounded up to a multiple of 4 KiB, and when freed it is
// kept, up to bigCachePerClass blocks of each size and bigCacheBytes in
// all, for the next allocation of its size. Everything else, and every
// block the cache does not keep, goes to the default allocator unchanged.

const (
	bigMin           = 16<<10 - 8 // larger requests (plus SQLite's 8-byte size prefix) leave the libc slab pages
	bigMax           = 256 << 10
	bigUnit          = 4 << 10
	bigCachePerClass = 16
	bigCacheBytes    = 4 << 20
)

// bigBlockCache is the wrapper's state (one, bigBlocks).
type bigBlockCache struct {
	orig      lib.Tsqlite3_mem_methods // SQLite's default allocator
	installed bool                     // SQLite allocates through bigMalloc and bigFree

	mu    sync.Mutex
	kept  [bigMax/bigUnit + 1][]uintptr // by size in bigUnits
	bytes int                           // in kept
	hits  int64                         // allocations served from kept
}

var bigBlocks bigBlockCache

// funcPointer returns the C function pointer of a top-level Go function, as
// the transpiled SQLite represents it (the func value's pointer).
func funcPointer(f any) uintptr { return (*[2]uintptr)(unsafe.Pointer(&f))[1] }

// installBigBlockCache wraps SQLite's allocator; config is sqlite3_config.
// It reports whether SQLite took the wrapper (it does not once
// initialized).
func installBigBlockCache(tls *libc.TLS, config func(op int32, args ...any) bool) bool {
	b := &bigBlocks
	// SQLite reads and writes the methods through C pointers: they go
	// through C memory (SQLite copies them; Go memory would fail the
	// race detector's pointer checks).
	size := unsafe.Sizeof(lib.Tsqlite3_mem_methods{})
	m := libc.Xcalloc(tls, 1, libc.Tsize_t(size))
	if m == 0 {
		return false
	}
	defer libc.Xfree(tls, m)
	cm := cAt[lib.Tsqlite3_mem_methods](m)
	if !config(lib.SQLITE_CONFIG_GETMALLOC, m) || cm.FxMalloc == 0 {
		return false
	}
	b.orig = *cm
	cm.FxMalloc = funcPointer(bigMalloc)
	cm.FxFree = funcPointer(bigFree)
	b.installed = config(lib.SQLITE_CONFIG_MALLOC, m)
	return b.installed
}

func bigClass(n int64) int {
	if n <= bigMin || n > bigMax {
		return 0
	}
	return int((n + bigUnit - 1) / bigUnit)
}

func bigMalloc(tls *libc.TLS, n int32) uintptr {
	b := &bigBlocks
	if c := bigClass(int64(n)); c != 0 {
		b.mu.Lock()
		if k := len(b.kept[c]); k > 0 {
			p := b.kept[c][k-1]
			b.kept[c] = b.kept[c][:k-1]
			b.bytes -= c * bigUnit
			b.hits++
			b.mu.Unlock()
			return p
		}
		b.mu.Unlock()
		n = int32(c * bigUnit)
	}
	return (*(*func(*libc.TLS, int32) uintptr)(unsafe.Pointer(&b.orig.FxMalloc)))(tls, n)
}

func bigFree(tls *libc.TLS, p uintptr) {
	b := &bigBlocks
	size := b.size(tls, p)
	if size == handles.size.Load() && keepHandle(p) {
		return // a connection's handle, freed by CloseConn (conn.go)
	}
	b.free(tls, p, size)
}

// size returns the size of block p, as SQLite's default allocator
// recorded it.
func (b *bigBlockCache) size(tls *libc.TLS, p uintptr) int32 {
	return (*(*func(*libc.TLS, uintptr) int32)(unsafe.Pointer(&b.orig.FxSize)))(tls, p)
}

// free frees p, a block of size bytes, keeping it for reuse if it is of a
// cached size.
func (b *bigBlockCache) free(tls *libc.TLS, p uintptr, size int32) {
	if c := bigClass(int64(size)); c != 0 && int(size) == c*bigUnit {
		b.mu.Lock()
		if len(b.kept[c]) < bigCachePerClass && b.bytes+int(size) <= bigCacheBytes {
			b.kept[c] = append(b.kept[c], p)
			b.bytes += int(size)
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
	}
	(*(*func(*libc.TLS, uintptr))(unsafe.Pointer(&b.orig.FxFree)))(tls, p)
}

// bigBlockStats reports the bytes the cache holds and the allocations it
// has served, for tests.
func bigBlockStats() (bytes int, hits int64) {
	bigBlocks.mu.Lock()
	defer bigBlocks.mu.Unlock()
	return bigBlocks.bytes, bigBlocks.hits
}
