package durable_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/durable-go/durable"
)

func TestID_FromName(t *testing.T) {
	rt := openRuntime(t, durable.Options{Durability: durable.NoSync})
	a := durable.MustRegister(rt, "A", newCounter, &env{})
	b := durable.MustRegister(rt, "B", newCounter, &env{})

	t.Run("Deterministic", func(t *testing.T) {
		id1, err := a.IDFromName("room-1")
		if err != nil {
			t.Fatal(err)
		}
		id2, _ := a.IDFromName("room-1")
		if !id1.Equal(id2) || id1.String() != id2.String() {
			t.Fatalf("same name gave %s and %s", id1, id2)
		}
		other, _ := a.IDFromName("room-2")
		if other.Equal(id1) {
			t.Fatal("different names gave the same ID")
		}
		if s := id1.String(); len(s) != 64 || strings.ToLower(s) != s {
			t.Fatalf("String() = %q, want 64 lowercase hex", s)
		}
	})
	t.Run("NameCarried", func(t *testing.T) {
		id, _ := a.IDFromName("héllo wörld")
		if got, ok := id.Name(); !ok || got != "héllo wörld" {
			t.Fatalf("Name() = %q, %v", got, ok)
		}
		if id.Namespace() != "A" {
			t.Fatalf("Namespace() = %q", id.Namespace())
		}
		u := a.NewUniqueID()
		if _, ok := u.Name(); ok {
			t.Fatal("unique ID has a name")
		}
		parsed, _ := a.IDFromString(id.String())
		if _, ok := parsed.Name(); ok {
			t.Fatal("parsed ID has a name")
		}
		if !parsed.Equal(id) {
			t.Fatal("parsed ID differs")
		}
	})
	t.Run("NamespaceSeparation", func(t *testing.T) {
		ia, _ := a.IDFromName("x")
		ib, _ := b.IDFromName("x")
		if ia.String() == ib.String() {
			t.Fatal("same name in two namespaces gave the same ID")
		}
		_, err := b.IDFromString(ia.String())
		if !errors.Is(err, durable.ErrForeignID) {
			t.Fatalf("foreign ID: err = %v, want ErrForeignID", err)
		}
		var ide *durable.IDError
		if !errors.As(err, &ide) || ide.Namespace != "B" {
			t.Fatalf("err = %#v, want *IDError for B", err)
		}
		u := a.NewUniqueID()
		if _, err := b.IDFromString(u.String()); !errors.Is(err, durable.ErrForeignID) {
			t.Fatalf("foreign unique ID: err = %v", err)
		}
		if _, err := a.IDFromString(u.String()); err != nil {
			t.Fatalf("own unique ID: %v", err)
		}
	})
	t.Run("Unique", func(t *testing.T) {
		seen := map[string]bool{}
		for range 1000 {
			s := a.NewUniqueID().String()
			if seen[s] {
				t.Fatal("NewUniqueID repeated")
			}
			seen[s] = true
		}
	})
	t.Run("Malformed", func(t *testing.T) {
		good := a.NewUniqueID().String()
		for _, tc := range []struct{ name, in string }{
			{"Empty", ""},
			{"Short", good[:63]},
			{"Long", good + "0"},
			{"Upper", strings.ToUpper(good)},
			{"NonHex", "g" + good[1:]},
			{"Space", " " + good[1:]},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, err := a.IDFromString(tc.in)
				if !errors.Is(err, durable.ErrMalformedID) {
					t.Fatalf("err = %v, want ErrMalformedID", err)
				}
			})
		}
		// One flipped hex digit keeps the form but breaks the MAC.
		flipped := []byte(good)
		if flipped[0] == 'a' {
			flipped[0] = 'b'
		} else {
			flipped[0] = 'a'
		}
		if _, err := a.IDFromString(string(flipped)); !errors.Is(err, durable.ErrForeignID) {
			t.Fatalf("flipped digit: err = %v, want ErrForeignID", err)
		}
	})
	t.Run("Names", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			in   string
			ok   bool
		}{
			{"Empty", "", false},
			{"AtLimit", strings.Repeat("x", durable.MaxNameLength), true},
			{"PastLimit", strings.Repeat("x", durable.MaxNameLength+1), false},
			{"NUL", "a\x00b", false},
			{"BadUTF8", "a\xffb", false},
			{"Unicode", "😀", true},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, err := a.IDFromName(tc.in)
				if tc.ok != (err == nil) {
					t.Fatalf("IDFromName err = %v, want ok=%v", err, tc.ok)
				}
				if !tc.ok && !errors.Is(err, durable.ErrInvalidName) {
					t.Fatalf("err = %v, want ErrInvalidName", err)
				}
			})
		}
	})
	t.Run("StubOfForeignID", func(t *testing.T) {
		ia, _ := a.IDFromName("x")
		_, err := durable.Call0(t.Context(), b.Get(ia), (*Counter).Get)
		if !errors.Is(err, durable.ErrForeignID) {
			t.Fatalf("err = %v, want ErrForeignID", err)
		}
		_, err = durable.Call0(t.Context(), b.GetByName(""), (*Counter).Get)
		if !errors.Is(err, durable.ErrInvalidName) {
			t.Fatalf("err = %v, want ErrInvalidName", err)
		}
	})
}

func FuzzIDFromString(f *testing.F) {
	rt, err := durable.Open(durable.Options{Dir: f.TempDir(), Durability: durable.NoSync})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { rt.Close() })
	ns := durable.MustRegister(rt, "Fuzz", newCounter, &env{})
	good := ns.NewUniqueID().String()
	named, _ := ns.IDFromName("seed")
	for _, s := range []string{"", good, named.String(), strings.ToUpper(good), good[:10], good + "00", "zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ns.IDFromString(s)
		if err != nil {
			if !errors.Is(err, durable.ErrMalformedID) && !errors.Is(err, durable.ErrForeignID) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if id.String() != s {
			t.Fatalf("round trip: %q -> %q", s, id.String())
		}
		again, err := ns.IDFromString(id.String())
		if err != nil || !again.Equal(id) {
			t.Fatalf("reparse failed: %v", err)
		}
	})
}
