package durability

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// buildRecord returns one stamped record of path and data.
func buildRecord(epoch, seq uint64, path string, r WALRange, data []byte, flags uint16) []byte {
	r.End = r.Off + int64(len(data))
	rec := appendRecordHeader(nil, path, r, flags)
	rec = append(rec, data...)
	stampRecord(rec, epoch, seq)
	return rec
}

// validJournal is a journal file of epoch 5 with two records.
func validJournal() []byte {
	b := buildRecord(5, 0, "a/wal", WALRange{Off: 0, Ckpt: 1, Salt: [2]uint32{7, 8}}, []byte("header and frame"), 0)
	return append(b, buildRecord(5, 1, "b/wal", WALRange{Off: 4128, Ckpt: 2, Salt: [2]uint32{9, 10}}, []byte("next frame"), 0)...)
}

func TestParseJournal(t *testing.T) {
	valid := validJournal()
	clean := buildRecord(6, 0, "", WALRange{}, nil, flagClean)
	after := buildRecord(6, 1, "c/wal", WALRange{Off: 32}, []byte("after the marker"), 0)
	for _, tc := range []struct {
		name      string
		in        []byte
		epoch     uint64
		n         int
		wantClean bool
	}{
		{"empty", nil, 0, 0, false},
		{"zeros", make([]byte, 4096), 0, 0, false},
		{"two records", valid, 5, 2, false},
		{"two records then zeros", append(append([]byte(nil), valid...), make([]byte, 100)...), 5, 2, false},
		{"truncated second record", valid[:len(valid)-1], 5, 1, false},
		{"other epoch after", append(append([]byte(nil), valid...), buildRecord(4, 2, "c", WALRange{}, []byte("x"), 0)...), 5, 2, false},
		{"sequence gap", append(append([]byte(nil), valid...), buildRecord(5, 3, "c", WALRange{}, []byte("x"), 0)...), 5, 2, false},
		{"first not seq 0", buildRecord(5, 1, "c", WALRange{}, []byte("x"), 0), 5, 0, false},
		{"clean marker", clean, 6, 0, true},
		{"clean marker then a record", append(append([]byte(nil), clean...), after...), 6, 1, true},
		{"negative offset", buildRecord(5, 0, "c", WALRange{Off: -1}, []byte("x"), 0), 0, 0, false},
		{"packed record", append(append([]byte(nil), valid...), buildRecord(5, 2, "c/wal", WALRange{Off: 32}, packZeros(nil, make([]byte, 4120)), flagZeroRuns)...), 5, 3, false},
		{"malformed packed record", append(append([]byte(nil), valid...), buildRecord(5, 2, "c/wal", WALRange{Off: 32}, []byte{9, 0, 0, 0, 5}, flagZeroRuns)...), 5, 2, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			epoch, recs, isClean, err := parseJournal(bytes.NewReader(tc.in))
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			if len(recs) != tc.n || isClean != tc.wantClean || (tc.n > 0 && epoch != tc.epoch) {
				t.Fatalf("parseJournal = epoch %d, %d records, clean %v; want epoch %d, %d records, clean %v",
					epoch, len(recs), isClean, tc.epoch, tc.n, tc.wantClean)
			}
		})
	}

	_, recs, _, _ := parseJournal(bytes.NewReader(valid))
	want := record{epoch: 5, seq: 1, off: 4128, ckpt: 2, salt: [2]uint32{9, 10}, path: "b/wal", data: []byte("next frame")}
	got := recs[1]
	if got.epoch != want.epoch || got.seq != want.seq || got.off != want.off || got.ckpt != want.ckpt ||
		got.salt != want.salt || got.path != want.path || !bytes.Equal(got.data, want.data) || got.flags != 0 {
		t.Fatalf("record = %+v, want %+v", got, want)
	}

	// Any flipped byte of a record ends the journal there.
	for i := range valid {
		b := append([]byte(nil), valid...)
		b[i] ^= 0x01
		_, recs, _, _ := parseJournal(bytes.NewReader(b))
		first := recordLen(valid)
		wantN := 0
		if i >= first {
			wantN = 1
		}
		if len(recs) != wantN {
			t.Fatalf("byte %d flipped: %d records, want %d", i, len(recs), wantN)
		}
	}
}

// TestParseJournal_Limits checks that a record longer than the limits
// ends the journal, even with a valid checksum.
func TestParseJournal_Limits(t *testing.T) {
	long := string(bytes.Repeat([]byte("p"), maxPath+1))
	if _, recs, _, _ := parseJournal(bytes.NewReader(buildRecord(1, 0, long, WALRange{}, []byte("x"), 0))); len(recs) != 0 {
		t.Fatalf("a path of %d bytes was accepted", len(long))
	}
	big := make([]byte, maxRecordData+1)
	if _, recs, _, _ := parseJournal(bytes.NewReader(buildRecord(1, 0, "a", WALRange{}, big, 0))); len(recs) != 0 {
		t.Fatalf("data of %d bytes was accepted", len(big))
	}
	okData := make([]byte, maxRecordData)
	okPath := string(bytes.Repeat([]byte("p"), maxPath))
	if _, recs, _, _ := parseJournal(bytes.NewReader(buildRecord(1, 0, okPath, WALRange{}, okData, 0))); len(recs) != 1 {
		t.Fatal("a record at the limits was refused")
	}
}

func FuzzParseJournal(f *testing.F) {
	valid := validJournal()
	f.Add(valid)
	f.Add(valid[:len(valid)-3])
	f.Add(append(buildRecord(2, 0, "", WALRange{}, nil, flagClean), buildRecord(2, 1, "x/wal", WALRange{Off: 32}, []byte{1, 2, 3}, 0)...))
	f.Add([]byte{})
	f.Add(make([]byte, recordHeaderSize))
	hdr := appendRecordHeader(nil, "", WALRange{End: maxRecordData + 1}, 0)
	f.Add(hdr) // an oversized length
	_, validRecs, _, _ := parseJournal(bytes.NewReader(valid))

	f.Fuzz(func(t *testing.T, data []byte) {
		check := func(in []byte) (uint64, []record, bool) {
			epoch, recs, clean, err := parseJournal(bytes.NewReader(in))
			if err != nil {
				t.Fatalf("parseJournal returned an error: %v", err)
			}
			// A clean marker is record 0 and is not returned.
			seq := uint64(0)
			if clean {
				seq = 1
			}
			for i, r := range recs {
				if len(r.path) > maxPath || len(r.data) > maxRecordData {
					t.Fatalf("record %d: path %d bytes, data %d bytes: over the limits", i, len(r.path), len(r.data))
				}
				if r.epoch != epoch {
					t.Fatalf("record %d: epoch %d in a journal of epoch %d", i, r.epoch, epoch)
				}
				if r.seq != seq {
					t.Fatalf("record %d: seq %d, want %d", i, r.seq, seq)
				}
				if r.off < 0 {
					t.Fatalf("record %d: offset %d", i, r.off)
				}
				if r.flags&flagClean != 0 {
					t.Fatalf("record %d: a clean marker returned as a record", i)
				}
				seq++
			}
			return epoch, recs, clean
		}
		check(data)

		// Bytes after valid records cannot change them.
		epoch, recs, clean := check(append(append([]byte(nil), valid...), data...))
		if epoch != 5 || clean || len(recs) < len(validRecs) {
			t.Fatalf("valid journal + fuzz bytes: epoch %d, clean %v, %d records", epoch, clean, len(recs))
		}
		for i, r := range validRecs {
			g := recs[i]
			if g.seq != r.seq || g.off != r.off || g.path != r.path || !bytes.Equal(g.data, r.data) || g.salt != r.salt {
				t.Fatalf("record %d changed by the bytes after it", i)
			}
		}
		if len(recs) > len(validRecs) && binary.LittleEndian.Uint32(data) != journalMagic {
			t.Fatalf("a record parsed from bytes that do not start with the magic")
		}
	})
}

// recordLen returns the length of the record whose header starts b.
func recordLen(b []byte) int {
	return recordHeaderSize + int(binary.LittleEndian.Uint16(b[44:])) + int(binary.LittleEndian.Uint32(b[48:]))
}

// TestQuickSync: syncs keep their P while they are quick on average and
// there is more than one P; a slow disk, or a single P, gets the ordinary
// call, and a disk that turns quick again gets the quick one back.
func TestQuickSync(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var q quickSync
	if err := q.sync(f.Fd(), true); err != nil {
		t.Fatalf("fdatasync: %v", err)
	}
	if err := q.sync(f.Fd(), false); err != nil {
		t.Fatalf("fsync: %v", err)
	}
	if runtime.GOMAXPROCS(0) > 1 && time.Duration(q.avg.Load()) <= quickSyncMax && !q.holdP() {
		t.Fatal("quick syncs with several Ps: holdP = false")
	}
	q.avg.Store(int64(10 * quickSyncMax))
	if q.holdP() {
		t.Fatal("after slow syncs: holdP = true")
	}
	for range 100 {
		if err := q.sync(f.Fd(), true); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Duration(q.avg.Load()); d > quickSyncMax {
		t.Skipf("this disk's syncs average %v, slower than %v", d, quickSyncMax)
	}
	if runtime.GOMAXPROCS(0) > 1 && !q.holdP() {
		t.Fatal("quick again: holdP = false")
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	if q.holdP() {
		t.Fatal("one P: holdP = true")
	}
	if err := q.sync(^uintptr(0), true); err == nil {
		t.Fatal("sync of a bad descriptor: no error")
	}
}
