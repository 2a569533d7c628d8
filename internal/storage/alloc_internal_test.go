package storage

import (
	"bytes"
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
		_, hits := smallBlockStats()
		cachedFree(tls, p)
		q := cachedMalloc(tls, n)
		if _, after := smallBlockStats(); q != p || after != hits+1 {
			t.Errorf("cachedMalloc(%d) after freeing %#x = %#x (%d hits), want the freed block from the cache", n, p, q, after-hits)
		}
		cachedFree(tls, q)
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
	for l := smallMinLog; l <= smallMaxLog; l++ {
		c := &blocks.small[l]
		c.mu.Lock()
		n := len(c.kept) << l
		c.mu.Unlock()
		if n > smallCacheBytes {
			t.Errorf("class %d holds %d bytes, bound %d", l, n, smallCacheBytes)
		}
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
