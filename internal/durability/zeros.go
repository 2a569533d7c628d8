package durability

import (
	"encoding/binary"
	"errors"
)

// A journal record's data is a copy of the WAL bytes a commit wrote:
// whole SQLite pages, which for small objects are mostly free space, that
// is zeros (98% of the bytes of the alarm benchmark's commits). Since the
// disk's bandwidth is what a node spends first on many small commits (the
// kernel writes each WAL page back as well), a record whose data packs
// well is stored with its runs of zero 8-byte words left out
// (flagZeroRuns):
//
//	u32 length of the unpacked data
//	repeated until length/8 words are covered:
//	    uvarint n, then n literal words (8 bytes each)
//	    uvarint z, z zero words
//	the last length%8 bytes, verbatim

// worthPacking reports whether a quarter or more of src is zero words, a
// quick count that spares packing data that would not shrink enough.
func worthPacking(src []byte) bool {
	zeros := 0
	for i := 0; i+8 <= len(src); i += 8 {
		if binary.LittleEndian.Uint64(src[i:]) == 0 {
			zeros++
		}
	}
	return zeros*8*4 >= len(src)
}

// packZeros appends the packed form of src to dst.
func packZeros(dst, src []byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(src)))
	words := len(src) / 8
	for i := 0; i < words; {
		j := i
		for j < words && binary.LittleEndian.Uint64(src[j*8:]) != 0 {
			j++
		}
		dst = binary.AppendUvarint(dst, uint64(j-i))
		dst = append(dst, src[i*8:j*8]...)
		k := j
		for k < words && binary.LittleEndian.Uint64(src[k*8:]) == 0 {
			k++
		}
		dst = binary.AppendUvarint(dst, uint64(k-j))
		i = k
	}
	return append(dst, src[words*8:]...)
}

var errPacked = errors.New("durability: malformed packed record")

// unpackZeros returns the data src packs (see packZeros); max bounds its
// length.
func unpackZeros(src []byte, max int) ([]byte, error) {
	if len(src) < 4 {
		return nil, errPacked
	}
	n := int(binary.LittleEndian.Uint32(src))
	if n > max {
		return nil, errPacked
	}
	src = src[4:]
	out := make([]byte, n)
	words := n / 8
	for pos := 0; pos < words; {
		lit, k := binary.Uvarint(src)
		if k <= 0 || lit > uint64(words-pos) || uint64(len(src)-k) < lit*8 {
			return nil, errPacked
		}
		src = src[k:]
		copy(out[pos*8:], src[:lit*8])
		src, pos = src[lit*8:], pos+int(lit)
		z, k := binary.Uvarint(src)
		if k <= 0 || z > uint64(words-pos) || lit+z == 0 {
			return nil, errPacked
		}
		src, pos = src[k:], pos+int(z)
	}
	if len(src) != n%8 {
		return nil, errPacked
	}
	copy(out[words*8:], src)
	return out, nil
}
