package storage

import (
	"bytes"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"

	"zombiezen.com/go/sqlite"
)

// TestBind: text and blobs of every size bound through bindText and
// bindBytes read back exactly, on either side of bindCopyMax (values up to
// it are copied through the connection's C stack, which the next bind
// reuses: each parameter gets different bytes); a parameter out of range
// is an error, not a panic or a leak.
func TestBind(t *testing.T) {
	open := memConns(t)
	c := open()
	defer CloseConn(c)
	s, _, err := c.PrepareTransient("SELECT ?, typeof(?), ?, typeof(?)")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Finalize()
	for _, n := range []int{0, 1, 100, bindCopyMax - 1, bindCopyMax, bindCopyMax + 1, 4088, 20000, 300000} {
		v := bytes.Repeat([]byte{'x'}, n)
		b := bytes.Repeat([]byte{'b'}, n)
		if n > 0 {
			v[n-1] = 'y'
			b[0] = 'c'
		}
		for _, err := range []error{
			bindText(s, 1, string(v)), bindText(s, 2, "type"),
			bindBytes(s, 3, b), bindBytes(s, 4, []byte("of")),
		} {
			if err != nil {
				t.Fatalf("bind %d bytes: %v", n, err)
			}
		}
		if row, err := s.Step(); err != nil || !row {
			t.Fatalf("Step: %v, %v", row, err)
		}
		if got := s.ColumnText(0); got != string(v) || s.ColumnText(1) != "text" {
			t.Errorf("text of %d bytes: got %d bytes (%s)", n, len(got), s.ColumnText(1))
		}
		got := make([]byte, s.ColumnLen(2))
		s.ColumnBytes(2, got)
		if !bytes.Equal(got, b) || s.ColumnText(3) != "blob" {
			t.Errorf("blob of %d bytes: got %d bytes (%s)", n, len(got), s.ColumnText(3))
		}
		s.Reset()
	}
	var se *SQLError
	if err := bindText(s, 5, "x"); !errors.As(err, &se) || se.Code != int(sqlite.ResultRange) {
		t.Errorf("bind of parameter 5 of 4: got %v, want a SQLITE_RANGE *SQLError", err)
	}
	if err := bindBytes(s, 0, []byte("x")); !errors.As(err, &se) || se.Code != int(sqlite.ResultRange) {
		t.Errorf("bind of parameter 0: got %v, want a SQLITE_RANGE *SQLError", err)
	}
}

// TestNoDriverBinds: storage binds text and blobs through bindText and
// bindBytes, never through the driver's BindText and BindBytes (see
// bind.go).
func TestNoDriverBinds(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if sel, ok := n.(*ast.SelectorExpr); ok && (sel.Sel.Name == "BindText" || sel.Sel.Name == "BindBytes") {
				t.Errorf("%s: calls %s; use bindText or bindBytes", fset.Position(sel.Pos()), sel.Sel.Name)
			}
			return true
		})
	}
}
