package storage_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

// Ensure nothing in the module calls the driver's Conn.SetDefensive.
// zombiezen.com/go/sqlite v1.4.2 hands sqlite3_db_config a one-word
// va_list, and SQLite stores 1 through the int* it then reads past the
// end: the allocator's free-list link, that is, into the block the next
// small malloc anywhere in the process gets. Under load that corrupted
// SQL text and statement handles of other connections (found with 64
// goroutines opening, writing and closing databases). storage.SetDefensive
// is the safe replacement.
func TestNoSetDefensive(t *testing.T) {
	root := filepath.Join("..", "..")
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "node_modules" || strings.HasPrefix(d.Name(), ".")) && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if sel, ok := n.(*ast.SelectorExpr); ok && sel.Sel.Name == "SetDefensive" {
				if id, ok := sel.X.(*ast.Ident); !ok || id.Name != "storage" {
					t.Errorf("%s: calls %s.SetDefensive; use storage.SetDefensive", fset.Position(sel.Pos()), exprString(sel.X))
				}
			}
			// The driver's OpenConn and Conn.Close race with each other
			// (its global authorizer table): every connection, tests
			// included, opens and closes through storage.OpenConn/CloseConn.
			if sel, ok := n.(*ast.SelectorExpr); ok && sel.Sel.Name == "OpenConn" && filepath.Base(path) != "conn.go" {
				if id, ok := sel.X.(*ast.Ident); ok && id.Name == "sqlite" {
					t.Errorf("%s: calls sqlite.OpenConn; use storage.OpenConn and storage.CloseConn", fset.Position(sel.Pos()))
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func exprString(e ast.Expr) string {
	if id, ok := e.(*ast.Ident); ok {
		return id.Name
	}
	return "(expression)"
}
