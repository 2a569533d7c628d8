package storage

import (
	"testing"

	"zombiezen.com/go/sqlite"
)

// TestCloseConn_HoldsHandle: while a connection is closing, no connection
// opened meanwhile is given its handle's address (the driver still has the
// address in its tables until Close returns), and the handle is freed
// once the close is done.
//
// The allocator hands out the most recently freed block of a size first,
// so without holding, an open right after the close gets the very same
// address: the first part checks that, so that the test would notice if
// the second part could not fail.
func TestCloseConn_HoldsHandle(t *testing.T) {
	open := memConns(t)

	// Not held: the address comes back at once.
	a := open()
	pa := rawOf(a).db
	if err := a.Close(); err != nil { // the driver's Close, without holding
		t.Fatal(err)
	}
	b := open()
	if pb := rawOf(b).db; pb != pa {
		CloseConn(b)
		t.Skipf("the allocator did not reuse the freed handle (%#x, then %#x): this test cannot tell holding from luck", pa, pb)
	}

	// Held: a connection opened while b is closing gets another address,
	// and b's block is freed when the close is done.
	pb := rawOf(b).db
	holdHandle(pb)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	openWhileHeld(t, open, pb, "during a close")
}

// TestCloseConn_SecondCloseOfClosedConn: CloseConn on a connection closed
// already holds an address that may belong to a newer connection by then;
// that newer connection's close must still keep its handle until every
// closer is done.
func TestCloseConn_SecondCloseOfClosedConn(t *testing.T) {
	open := memConns(t)
	a := open()
	pa := rawOf(a).db
	if err := CloseConn(a); err != nil {
		t.Fatal(err)
	}
	b := open()
	if pb := rawOf(b).db; pb != pa {
		CloseConn(b)
		t.Skipf("the allocator did not reuse the freed handle (%#x, then %#x)", pa, pb)
	}
	// a's second close starts (it holds a's old address, now b's) ...
	holdHandle(pa)
	// ... and b closes meanwhile.
	if err := CloseConn(b); err != nil {
		t.Fatal(err)
	}
	openWhileHeld(t, open, pa, "before every closer was done") // then a's second close ends
}

// openWhileHeld opens a connection while handle p is held, then ends the
// last hold: the new connection must not have p's address, ending the
// hold must free p, and no handle may stay held once it is closed. when
// says when the connection opened, for the failure message.
func openWhileHeld(t *testing.T, open func() *sqlite.Conn, p uintptr, when string) {
	t.Helper()
	c := open()
	pc := rawOf(c).db
	freed := releaseHandle(p)
	if pc == p {
		t.Fatalf("a connection opened %s got the held handle's address %#x", when, p)
	}
	if !freed {
		t.Errorf("the handle %#x was not freed when its last hold ended", p)
	}
	if err := CloseConn(c); err != nil {
		t.Error(err)
	}
	if n := handles.n.Load(); n != 0 {
		t.Errorf("%d handles still held after every close", n)
	}
}

// memConns returns a function opening in-memory connections with
// OpenConn, or skips the test where closes cannot hold handles.
func memConns(t *testing.T) func() *sqlite.Conn {
	t.Helper()
	if err := checkLayout(); err != nil {
		t.Fatal(err)
	}
	if handles.size.Load() == 0 {
		t.Skip("allocator wrapper not installed: closes serialise on connMu")
	}
	return func() *sqlite.Conn {
		t.Helper()
		c, err := OpenConn(":memory:", sqlite.OpenReadWrite|sqlite.OpenCreate|sqlite.OpenMemory)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
}
