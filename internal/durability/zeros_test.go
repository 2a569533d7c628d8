package durability

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// sparse returns n bytes that are zero except for runs of random bytes.
func sparse(rng *rand.Rand, n int, density float64) []byte {
	b := make([]byte, n)
	for i := 0; i < n; {
		run := 1 + rng.IntN(64)
		if rng.Float64() < density {
			for j := i; j < min(i+run, n); j++ {
				b[j] = byte(rng.IntN(256))
			}
		}
		i += run
	}
	return b
}

func TestPackZeros(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	cases := [][]byte{nil, {}, {1}, make([]byte, 7), make([]byte, 8), make([]byte, 4120), bytes.Repeat([]byte{0xff}, 4121)}
	for _, n := range []int{1, 8, 9, 24, 4120, 8240 + 3, 65536} {
		for _, d := range []float64{0, 0.02, 0.3, 0.9, 1} {
			cases = append(cases, sparse(rng, n, d))
		}
	}
	for i, src := range cases {
		packed := packZeros(nil, src)
		got, err := unpackZeros(packed, len(src))
		if err != nil || !bytes.Equal(got, src) || len(got) != len(src) {
			t.Fatalf("case %d (%d bytes): unpack(pack) = %d bytes, %v", i, len(src), len(got), err)
		}
		if _, err := unpackZeros(packed, len(src)-1); len(src) > 0 && err == nil {
			t.Errorf("case %d: unpacking past max succeeded", i)
		}
	}
	// A page of an object with a few small rows packs to a fraction.
	page := make([]byte, 4120)
	copy(page[24:], "header and a few cells")
	copy(page[4000:], bytes.Repeat([]byte{7}, 100))
	if n := len(packZeros(nil, page)); n > 200 {
		t.Errorf("a mostly empty 4,120-byte frame packs to %d bytes", n)
	}
	if !worthPacking(page) || worthPacking(bytes.Repeat([]byte{1}, 4120)) || worthPacking(sparse(rng, 4120, 0.95)) {
		t.Error("worthPacking: want true for a mostly empty page, false for full ones")
	}
	for _, bad := range [][]byte{nil, {1, 0, 0}, {8, 0, 0, 0}, {8, 0, 0, 0, 2, 1}, {16, 0, 0, 0, 0, 0}, {8, 0, 0, 0, 0, 1, 9}} {
		if _, err := unpackZeros(bad, 1<<20); err == nil {
			t.Errorf("unpackZeros(%v) succeeded", bad)
		}
	}
}

// FuzzUnpackZeros: unpacking never panics or exceeds its bound, and what
// it returns packs back to data that unpacks the same.
func FuzzUnpackZeros(f *testing.F) {
	rng := rand.New(rand.NewPCG(3, 4))
	f.Add(packZeros(nil, sparse(rng, 4120, 0.1)))
	f.Add(packZeros(nil, sparse(rng, 33, 0.5)))
	f.Add([]byte{8, 0, 0, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := unpackZeros(in, 1<<16)
		if err != nil {
			return
		}
		if len(out) > 1<<16 {
			t.Fatalf("unpacked %d bytes past the bound", len(out))
		}
		again, err := unpackZeros(packZeros(nil, out), 1<<16)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("repacking: %v", err)
		}
	})
}
