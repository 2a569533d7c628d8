package storage

import (
	"bytes"
	"runtime"
	"sync"
	"testing"

	"modernc.org/libc"
)

// TestBigBlockCache: opening and closing a database reuses the blocks of
// the WAL index instead of mapping new ones, the cache stays within its
// bound, and values of the sizes it serves round-trip intact.
func TestBigBlockCache(t *testing.T) {
	if err := checkLayout(); err != nil {
		t.Fatal(err)
	}
	// Values from 16 KiB to 300 KiB: SQLite allocates blocks of about
	// their size to build and read the records.
	before, after := reopenCycles(t, bigBlockStats, 16<<10, 20<<10+5, 33<<10, 100<<10, 255<<10, 300<<10)
	cached, _ := bigBlockStats()
	if after-before < 5 {
		t.Errorf("5 opens served %d blocks from the cache, want at least one each", after-before)
	}
	if cached > bigCacheBytes {
		t.Errorf("cache holds %d bytes, bound %d", cached, bigCacheBytes)
	}
}

// TestSmallBlockCache: requests up to 16 KiB are rounded up to fill the
// allocator's slot, a freed block of a class serves the next request of
// that class, the cache stays within its bound, and databases opened and
// closed over it read back what they wrote.
func TestSmallBlockCache(t *testing.T) {
	if err := checkLayout(); err != nil {
		t.Fatal(err)
	}
	if !blocks.installed {
		t.Fatal("the allocator wrapper is not installed")
	}
	for _, c := range []struct {
		n    int64
		want int
	}{
		{0, 0}, {1, 4}, {8, 4}, {9, 5}, {24, 5}, {25, 6}, {1000, 10},
		{1016, 10}, {1017, 11}, {bigMin, smallMaxLog}, {bigMin + 1, 0},
	} {
		if got := smallLog(c.n); got != c.want {
			t.Errorf("smallLog(%d) = %d, want %d", c.n, got, c.want)
		}
	}

	tls := libc.NewTLS()
	defer tls.Close()
	for _, n := range []int32{1, 100, 1000, 5000, bigMin} {
		p := cachedMalloc(tls, n)
		if p == 0 {
			t.Fatalf("cachedMalloc(%d) = 0", n)
		}
		l := smallLog(int64(n))
		if got, want := blocks.size(tls, p), int32(1<<l-sizePrefix); got != want {
			t.Errorf("cachedMalloc(%d): block of %d bytes, want the whole slot, %d", n, got, want)
		}
		// The whole block is usable.
		clear(libc.GoBytes(p, 1<<l-sizePrefix))
		// The cache is per P: the goroutine may move to another P
		// between the free and the malloc, so allow a few tries.
		reused := false
		for try := 0; try < 5 && !reused; try++ {
			_, hits := smallBlockStats()
			cachedFree(tls, p)
			q := cachedMalloc(tls, n)
			_, after := smallBlockStats()
			reused = q == p && after == hits+1
			p = q
		}
		if !reused {
			t.Errorf("cachedMalloc(%d) did not reuse the block just freed", n)
		}
		cachedFree(tls, p)
	}

	before, after := reopenCycles(t, smallBlockStats, 1, 100, 3000, 9000, 16000)
	cached, _ := smallBlockStats()
	// An open allocates hundreds of small blocks; the closes before
	// freed as many.
	if after-before < 5*100 {
		t.Errorf("5 opens served %d small blocks from the cache, want at least 100 each", after-before)
	}
	if bound := (smallMaxLog - smallMinLog + 1) * smallCacheBytes; cached > bound {
		t.Errorf("cache holds %d bytes, bound %d", cached, bound)
	}
	for i := range blocks.shards {
		sh := &blocks.shards[i]
		sh.mu.Lock()
		for l := smallMinLog; l <= smallMaxLog; l++ {
			if n, bound := len(sh.small[l])<<l, smallCacheBytes/len(blocks.shards); n > bound {
				t.Errorf("shard %d: class %d holds %d bytes, bound %d", i, l, n, bound)
			}
		}
		sh.mu.Unlock()
	}
}

// reopenCycles writes values of the given sizes to a new database, then
// opens it, reads them back and closes it five times. It returns the hits
// stats reported before and after those five cycles.
func reopenCycles(t *testing.T, stats func() (int, int64), sizes ...int) (before, after int64) {
	t.Helper()
	open := reopener(t)
	db := open()
	var want [][]byte
	for i, n := range sizes {
		v := bytes.Repeat([]byte{byte('a' + i)}, n)
		want = append(want, v)
		if err := db.Put(string(rune('a'+i)), v); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Commit(); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, before = stats()
	for range 5 {
		db = open()
		for i, v := range want {
			got, ok, err := db.Get(string(rune('a' + i)))
			if err != nil || !ok || !bytes.Equal(got, v) {
				t.Fatalf("Get %c: %d bytes, %v, %v; want %d bytes", 'a'+i, len(got), ok, err, len(v))
			}
		}
		db.Close()
	}
	_, after = stats()
	return before, after
}

// TestBlockCache_Concurrent: goroutines on every P allocate, fill, check
// and free blocks of every cached size at once; no block is handed out
// twice (each goroutine's pattern survives until it frees the block) and
// the cache has one shard per P.
func TestBlockCache_Concurrent(t *testing.T) {
	if err := checkLayout(); err != nil {
		t.Fatal(err)
	}
	if got, want := len(blocks.shards), runtime.GOMAXPROCS(0); got != want {
		t.Errorf("%d shards, want one per P (%d)", got, want)
	}
	sizes := []int32{1, 40, 100, 500, 3000, 9000, 16000, bigMin + 1, 40 << 10, 200 << 10}
	var wg sync.WaitGroup
	for g := range 4 * runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			tls := libc.NewTLS()
			defer tls.Close()
			held := make([]uintptr, 0, 8)
			for i := range 3000 {
				n := sizes[(g+i)%len(sizes)]
				p := cachedMalloc(tls, n)
				if p == 0 {
					t.Errorf("cachedMalloc(%d) = 0", n)
					return
				}
				b := libc.GoBytes(p, int(n))
				for j := range b {
					b[j] = byte(g)
				}
				held = append(held, p)
				if len(held) == cap(held) || i == 2999 {
					for _, p := range held {
						if b := libc.GoBytes(p, 1); b[0] != byte(g) {
							t.Errorf("goroutine %d: block %#x holds %d: handed out twice", g, p, b[0])
						}
						cachedFree(tls, p)
					}
					held = held[:0]
				}
			}
		})
	}
	wg.Wait()
}
