package storage

import (
	"math/bits"
	"sync"
	"unsafe"

	"modernc.org/libc"
	lib "modernc.org/sqlite/lib"
)

// SQLite's memory comes from the transpiled libc allocator, which serves
// blocks of up to 16 KiB from 64 KiB pages of one size class each, mapped
// with mmap and unmapped as soon as their last block is freed, gives every
// larger block an mmap of its own, unmapped when freed, and does all of it
// under one process-wide mutex. Opening a database allocates some hundreds
// of blocks (the connection, its schema, statements, the page cache, the
// 32 KiB page of the WAL index kept in heap memory under exclusive locking
// and the 36 KiB buffer that rebuilds it from the WAL), and closing frees
// them all: with objects activated and evicted all the time, pages were
// mapped, faulted in and unmapped over and over (27,000 mmaps and 57,000
// munmaps per 100,000 alarms delivered to 10,000 objects), and every
// allocation queued on that mutex.
//
// So storage wraps SQLite's allocator (sqlite3_config SQLITE_CONFIG_MALLOC,
// before SQLite initializes) with a cache of freed blocks by size class,
// one mutex per class:
//
//   - a block of up to 16 KiB is rounded up to fill the allocator's slot
//     (a power of two, SQLite's 8-byte size prefix included), and up to
//     smallCacheBytes of each class are kept when freed; a kept block also
//     keeps its page mapped;
//   - a block of 16-256 KiB is rounded up to a multiple of 4 KiB, and up
//     to bigCachePerClass blocks of each size, bigCacheBytes in all, are
//     kept.
//
// Everything else, and every block the cache does not keep, goes to the
// default allocator unchanged. The cache is bounded (about 10 MiB), whatever
// the number of objects.

const (
	bigMin           = 16<<10 - 8 // larger requests (plus SQLite's 8-byte size prefix) leave the libc slab pages
	bigMax           = 256 << 10
	bigUnit          = 4 << 10
	bigCachePerClass = 16
	bigCacheBytes    = 4 << 20

	smallMinLog     = 4  // the allocator's smallest slot: 16 bytes
	smallMaxLog     = 14 // its largest: 16 KiB
	smallCacheBytes = 512 << 10
	sizePrefix      = 8 // SQLite's default allocator stores each block's size before it
)

// blockCache is the wrapper's state (one, blocks).
type blockCache struct {
	orig      lib.Tsqlite3_mem_methods // SQLite's default allocator
	installed bool                     // SQLite allocates through cachedMalloc and cachedFree

	small [smallMaxLog + 1]smallClass

	mu    sync.Mutex
	kept  [bigMax/bigUnit + 1][]uintptr // by size in bigUnits
	bytes int                           // in kept
	hits  int64                         // allocations served from kept
}

// smallClass holds the kept blocks of one slot size.
type smallClass struct {
	mu   sync.Mutex
	kept []uintptr
	hits int64
	_    [24]byte // a cache line of its own
}

var blocks blockCache

// funcPointer returns the C function pointer of a top-level Go function, as
// the transpiled SQLite represents it (the func value's pointer).
func funcPointer(f any) uintptr { return (*[2]uintptr)(unsafe.Pointer(&f))[1] }

// installBlockCache wraps SQLite's allocator; config is sqlite3_config.
// It reports whether SQLite took the wrapper (it does not once
// initialized).
func installBlockCache(tls *libc.TLS, config func(op int32, args ...any) bool) bool {
	b := &blocks
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
	cm.FxMalloc = funcPointer(cachedMalloc)
	cm.FxFree = funcPointer(cachedFree)
	b.installed = config(lib.SQLITE_CONFIG_MALLOC, m)
	return b.installed
}

// smallLog returns the size class of a request of n bytes served from the
// allocator's shared pages: the log2 of its slot, prefix included; 0 for
// other sizes.
func smallLog(n int64) int {
	if n <= 0 || n > bigMin {
		return 0
	}
	slot := (n + sizePrefix + 15) &^ 15
	return max(bits.Len64(uint64(slot-1)), smallMinLog)
}

func bigClass(n int64) int {
	if n <= bigMin || n > bigMax {
		return 0
	}
	return int((n + bigUnit - 1) / bigUnit)
}

func cachedMalloc(tls *libc.TLS, n int32) uintptr {
	b := &blocks
	if l := smallLog(int64(n)); l != 0 {
		c := &b.small[l]
		c.mu.Lock()
		if k := len(c.kept); k > 0 {
			p := c.kept[k-1]
			c.kept = c.kept[:k-1]
			c.hits++
			c.mu.Unlock()
			return p
		}
		c.mu.Unlock()
		n = 1<<l - sizePrefix
	} else if c := bigClass(int64(n)); c != 0 {
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

func cachedFree(tls *libc.TLS, p uintptr) {
	b := &blocks
	size := b.size(tls, p)
	if size == handles.size.Load() && keepHandle(p) {
		return // a connection's handle, freed by CloseConn (conn.go)
	}
	b.free(tls, p, size)
}

// size returns the size of block p, as SQLite's default allocator
// recorded it.
func (b *blockCache) size(tls *libc.TLS, p uintptr) int32 {
	return (*(*func(*libc.TLS, uintptr) int32)(unsafe.Pointer(&b.orig.FxSize)))(tls, p)
}

// free frees p, a block of size bytes, keeping it for reuse if it is of a
// cached size.
func (b *blockCache) free(tls *libc.TLS, p uintptr, size int32) {
	if l := smallLog(int64(size)); l != 0 {
		if int(size) == 1<<l-sizePrefix {
			c := &b.small[l]
			c.mu.Lock()
			if len(c.kept) < smallCacheBytes>>l {
				c.kept = append(c.kept, p)
				c.mu.Unlock()
				return
			}
			c.mu.Unlock()
		}
	} else if c := bigClass(int64(size)); c != 0 && int(size) == c*bigUnit {
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

// bigBlockStats reports the bytes the cache of blocks over 16 KiB holds and
// the allocations it has served, for tests.
func bigBlockStats() (bytes int, hits int64) {
	blocks.mu.Lock()
	defer blocks.mu.Unlock()
	return blocks.bytes, blocks.hits
}

// smallBlockStats reports the bytes the cache of blocks up to 16 KiB holds
// and the allocations it has served, for tests.
func smallBlockStats() (bytes int, hits int64) {
	for l := smallMinLog; l <= smallMaxLog; l++ {
		c := &blocks.small[l]
		c.mu.Lock()
		bytes += len(c.kept) << l
		hits += c.hits
		c.mu.Unlock()
	}
	return bytes, hits
}
