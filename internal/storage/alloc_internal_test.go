package storage

import (
	"bytes"
	"testing"
)

// TestBigBlockCache: opening and closing a database reuses the blocks of
// the WAL index instead of mapping new ones, the cache stays within its
// bound, and values of the sizes it serves round-trip intact.
func TestBigBlockCache(t *testing.T) {
	if err := checkLayout(); err != nil {
		t.Fatal(err)
	}
	open := reopener(t)
	db := open()
	// Values from 16 KiB to 300 KiB: SQLite allocates blocks of about
	// their size to build and read the records.
	var want [][]byte
	for i, n := range []int{16 << 10, 20<<10 + 5, 33 << 10, 100 << 10, 255 << 10, 300 << 10} {
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
	_, before := bigBlockStats()
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
	cached, after := bigBlockStats()
	if after-before < 5 {
		t.Errorf("5 opens served %d blocks from the cache, want at least one each", after-before)
	}
	if cached > bigCacheBytes {
		t.Errorf("cache holds %d bytes, bound %d", cached, bigCacheBytes)
	}
}
