package storage

import (
	"math/bits"
	"runtime"
	"sync"
	"unsafe" // and go:linkname

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
// before SQLite initializes) with a cache of freed blocks by size class:
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
//
// The cache is split in one shard per P (GOMAXPROCS when the package
// initializes; a P beyond those shares a shard),
// each with its own mutex and its share of the bounds: a goroutine uses
// the shard of the P it runs on, so the two cores of a busy machine do not
// pass the cache lines of shared mutexes back and forth on every
// allocation (which cost 5-10% of the CPU time of the alarm benchmark,
// where every delivery allocates and frees hundreds of blocks). A
// goroutine that moves to another P between choosing a shard and locking
// it only shares that mutex for a moment; a block freed on one P and
// wanted on another is served by the default allocator meanwhile.

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
	shards    []cacheShard             // one per P (see shard)
}

// cacheShard is the part of the cache that goroutines running on one P
// use: its mutex is uncontended unless a goroutine moved to another P
// between choosing the shard and locking it, and its cache line stays with
// the core that runs the P.
type cacheShard struct {
	mu    sync.Mutex
	small [smallMaxLog + 1][]uintptr    // kept blocks up to 16 KiB, by log2 of their slot
	big   [bigMax/bigUnit + 1][]uintptr // kept larger blocks, by size in bigUnits
	bytes int                           // in big
	hits  [2]int64                      // allocations served: small, big
	_     [64]byte
}

//go:linkname procPin runtime.procPin
func procPin() int

//go:linkname procUnpin runtime.procUnpin
func procUnpin()

// shard returns the shard of the P the calling goroutine runs on.
func (b *blockCache) shard() *cacheShard {
	p := procPin()
	procUnpin()
	return &b.shards[p%len(b.shards)]
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
	b.shards = make([]cacheShard, max(runtime.GOMAXPROCS(0), 1))
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
		sh := b.shard()
		sh.mu.Lock()
		if k := len(sh.small[l]); k > 0 {
			p := sh.small[l][k-1]
			sh.small[l] = sh.small[l][:k-1]
			sh.hits[0]++
			sh.mu.Unlock()
			return p
		}
		sh.mu.Unlock()
		n = 1<<l - sizePrefix
	} else if c := bigClass(int64(n)); c != 0 {
		sh := b.shard()
		sh.mu.Lock()
		if k := len(sh.big[c]); k > 0 {
			p := sh.big[c][k-1]
			sh.big[c] = sh.big[c][:k-1]
			sh.bytes -= c * bigUnit
			sh.hits[1]++
			sh.mu.Unlock()
			return p
		}
		sh.mu.Unlock()
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
			sh := b.shard()
			sh.mu.Lock()
			if len(sh.small[l]) < smallCacheBytes>>l/len(b.shards) {
				sh.small[l] = append(sh.small[l], p)
				sh.mu.Unlock()
				return
			}
			sh.mu.Unlock()
		}
	} else if c := bigClass(int64(size)); c != 0 && int(size) == c*bigUnit {
		sh := b.shard()
		sh.mu.Lock()
		if len(sh.big[c]) < bigCachePerClass && sh.bytes+int(size) <= bigCacheBytes/len(b.shards) {
			sh.big[c] = append(sh.big[c], p)
			sh.bytes += int(size)
			sh.mu.Unlock()
			return
		}
		sh.mu.Unlock()
	}
	(*(*func(*libc.TLS, uintptr))(unsafe.Pointer(&b.orig.FxFree)))(tls, p)
}

// bigBlockStats reports the bytes the cache of blocks over 16 KiB holds and
// the allocations it has served, for tests.
func bigBlockStats() (bytes int, hits int64) {
	for i := range blocks.shards {
		sh := &blocks.shards[i]
		sh.mu.Lock()
		bytes += sh.bytes
		hits += sh.hits[1]
		sh.mu.Unlock()
	}
	return bytes, hits
}

// smallBlockStats reports the bytes the cache of blocks up to 16 KiB holds
// and the allocations it has served, for tests.
func smallBlockStats() (bytes int, hits int64) {
	for i := range blocks.shards {
		sh := &blocks.shards[i]
		sh.mu.Lock()
		for l := smallMinLog; l <= smallMaxLog; l++ {
			bytes += len(sh.small[l]) << l
		}
		hits += sh.hits[0]
		sh.mu.Unlock()
	}
	return bytes, hits
}
