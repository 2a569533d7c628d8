package main

import (
	"fmt"
	"go/ast"
	"go/types"
	"slices"
	"strings"
)

// reserved are the handler names that the runtime never treats as RPC
// methods (see durable.Register).
var reserved = map[string]bool{
	"Fetch": true, "ServeHTTP": true, "Alarm": true, "WebSocketMessage": true,
	"WebSocketClose": true, "WebSocketError": true, "Hibernatable": true,
}

// method is one method in the method set of *T.
type method struct {
	name string
	typ  *ast.FuncType
	// file is the file that declares the method: its imports give the
	// meaning of the package names in the signature.
	file *srcFile
	// via is the path of embedded fields the method is promoted through,
	// such as "Base" or "Base.Inner"; empty for a method declared on T.
	via string
}

// objectType checks that name is a type the generator can write a stub
// for and returns its declaration.
func (p *pkg) objectType(name string) (*typeDecl, error) {
	td := p.types[name]
	switch {
	case td == nil:
		return nil, fmt.Errorf("type %s not found in package %s (%s)", name, p.name, p.dir)
	case td.spec.Assign.IsValid():
		return nil, fmt.Errorf("%s: %s is a type alias; name the type it stands for", p.position(td.spec.Name.Pos()), name)
	case name == "s" || name == "ctx":
		return nil, fmt.Errorf("%s: durable-stub cannot write a stub for a type named %s: the stub's methods use that name for a variable", p.position(td.spec.Name.Pos()), name)
	case td.spec.TypeParams != nil:
		return nil, fmt.Errorf("%s: %s is generic; durable-stub does not support generic object types", p.position(td.spec.Name.Pos()), name)
	}
	if u, _ := p.underlying(name); isInterface(u) {
		return nil, fmt.Errorf("%s: %s is an interface type; an object type must be concrete", p.position(td.spec.Name.Pos()), name)
	}
	return td, nil
}

// underlying returns the type literal under the named type, following
// definitions and aliases within the package (type T Base, type T = Base),
// and the declaration that holds it. It returns the last type expression
// found when that is not a type literal of this package, such as
// pkg.Other, and nil for unknown names.
func (p *pkg) underlying(name string) (ast.Expr, *typeDecl) {
	var x ast.Expr
	var holder *typeDecl
	for range 100 { // bound: a cycle is a compile error, but do not hang on one
		td := p.types[name]
		if td == nil {
			return x, holder
		}
		x, holder = td.spec.Type, td
		id, ok := x.(*ast.Ident)
		if !ok {
			return x, holder
		}
		name = id.Name
	}
	return x, holder
}

// isInterface reports whether x is an interface type literal.
func isInterface(x ast.Expr) bool {
	_, ok := x.(*ast.InterfaceType)
	return ok
}

// declarer returns the type whose declared methods a named type has: the
// type itself, or for an alias the type it stands for.
func (p *pkg) declarer(name string) string {
	for range 100 {
		td := p.types[name]
		if td == nil || !td.spec.Assign.IsValid() {
			return name
		}
		id, ok := td.spec.Type.(*ast.Ident)
		if !ok {
			return name
		}
		name = id.Name
	}
	return name
}

// methodSet returns the methods in the method set of *T that the package's
// source shows, sorted by name, following Go's rules for promotion through
// embedded fields: a shallower field or method hides deeper ones, and two
// at the same depth hide each other. Methods promoted from types of other
// packages cannot be seen; notes says which embedded fields those are.
func (p *pkg) methodSet(typeName string) (ms []*method, notes []string) {
	type level struct {
		typ   string
		via   string
		count int // times the type is embedded at this depth
	}
	cur := []*level{{typ: typeName, count: 1}}
	seen := map[string]bool{typeName: true}
	hidden := make(map[string]bool) // names found at a shallower depth
	for len(cur) > 0 {
		found := make(map[string][]*method) // a nil entry is a field
		var next []*level
		byType := make(map[string]*level)
		embed := func(x ast.Expr, via string) {
			name, local := p.embeddedName(x)
			if name == "" {
				return
			}
			found[name] = append(found[name], nil)
			if !local {
				notes = append(notes, fmt.Sprintf("methods promoted from embedded field %s (not read: durable-stub reads only this package's source)", types.ExprString(x)))
				return
			}
			if l := byType[name]; l != nil {
				l.count++
				return
			}
			if seen[name] {
				return
			}
			seen[name] = true
			l := &level{typ: name, via: joinVia(via, name), count: 1}
			byType[name] = l
			next = append(next, l)
		}
		for _, l := range cur {
			for range l.count {
				for _, md := range p.methods[p.declarer(l.typ)] {
					found[md.decl.Name.Name] = append(found[md.decl.Name.Name], &method{
						name: md.decl.Name.Name, typ: md.decl.Type, file: md.file, via: l.via,
					})
				}
				u, holder := p.underlying(l.typ)
				switch u := u.(type) {
				case *ast.StructType:
					for _, f := range u.Fields.List {
						if len(f.Names) == 0 {
							embed(f.Type, l.via)
						}
						for _, n := range f.Names {
							found[n.Name] = append(found[n.Name], nil)
						}
					}
				case *ast.InterfaceType:
					for _, f := range u.Methods.List {
						ft, ok := f.Type.(*ast.FuncType)
						if !ok {
							embed(f.Type, l.via)
							continue
						}
						for _, n := range f.Names {
							found[n.Name] = append(found[n.Name], &method{name: n.Name, typ: ft, file: holder.file, via: l.via})
						}
					}
				case *ast.SelectorExpr:
					notes = append(notes, fmt.Sprintf("methods promoted from the fields of %s, the underlying type of %s (not read)", types.ExprString(u), l.typ))
				}
			}
		}
		for name, list := range found {
			if hidden[name] {
				continue
			}
			hidden[name] = true
			switch {
			case len(list) == 1 && list[0] != nil:
				ms = append(ms, list[0])
			case len(list) > 1 && slices.ContainsFunc(list, func(m *method) bool { return m != nil }):
				notes = append(notes, fmt.Sprintf("%s: ambiguous (promoted through more than one embedded field at the same depth)", name))
			}
		}
		cur = next
	}
	slices.SortFunc(ms, func(a, b *method) int { return strings.Compare(a.name, b.name) })
	slices.Sort(notes)
	return ms, slices.Compact(notes)
}

// embeddedName returns the field name of an embedded field type and
// whether it names a type of this package whose methods can be read.
// Embedded instances of generic types count as unreadable.
func (p *pkg) embeddedName(x ast.Expr) (name string, local bool) {
	if s, ok := x.(*ast.StarExpr); ok {
		x = s.X
	}
	switch t := x.(type) {
	case *ast.Ident:
		return t.Name, p.types[t.Name] != nil
	case *ast.SelectorExpr:
		return t.Sel.Name, false
	case *ast.IndexExpr:
		n, _ := p.embeddedName(t.X)
		return n, false
	case *ast.IndexListExpr:
		n, _ := p.embeddedName(t.X)
		return n, false
	}
	return "", false // a union or ~T element of a constraint interface
}

// joinVia appends an embedded field name to a promotion path.
func joinVia(via, name string) string {
	if via == "" {
		return name
	}
	return via + "." + name
}

// shape is an RPC method's signature, split into the parts the generator
// uses.
type shape struct {
	params []*ast.Field // fields after ctx; the first may have lost its ctx name
	nargs  int
	result ast.Expr // nil for a method that returns only an error
}

// rpcShape returns the shape of m, or why m is not an RPC method.
func (p *pkg) rpcShape(m *method) (*shape, string) {
	switch {
	case !ast.IsExported(m.name):
		return nil, "unexported"
	case reserved[m.name]:
		return nil, "reserved handler name"
	case m.name == "Stub":
		return nil, "the name is taken by the stub's embedded *durable.Stub field; call it with durable.CallN"
	}
	params := m.typ.Params.List
	if len(params) == 0 || !p.isContext(params[0].Type, m.file) {
		return nil, "first parameter is not a context.Context"
	}
	if _, ok := params[len(params)-1].Type.(*ast.Ellipsis); ok {
		return nil, "variadic"
	}
	s := &shape{}
	if first := params[0]; len(first.Names) > 1 {
		// func(ctx, other context.Context, ...): keep the other names.
		s.params = append(s.params, &ast.Field{Names: first.Names[1:], Type: first.Type})
	}
	s.params = append(s.params, params[1:]...)
	for _, f := range s.params {
		s.nargs += max(1, len(f.Names))
	}
	var results []ast.Expr
	if m.typ.Results != nil {
		for _, f := range m.typ.Results.List {
			for range max(1, len(f.Names)) {
				results = append(results, f.Type)
			}
		}
	}
	switch {
	case len(results) == 1 && p.isError(results[0]):
	case len(results) == 2 && p.isError(results[1]):
		s.result = results[0]
	default:
		return nil, "results are not (R, error) or error"
	}
	return s, ""
}

// isContext reports whether x, in file f, is context.Context.
func (p *pkg) isContext(x ast.Expr, f *srcFile) bool {
	sel, ok := x.(*ast.SelectorExpr)
	if !ok || sel.Sel.Name != "Context" {
		return false
	}
	id, ok := sel.X.(*ast.Ident)
	if !ok {
		return false
	}
	path, ok := p.resolve(f, id.Name)
	return ok && path == "context"
}

// isError reports whether x is the predeclared error type.
func (p *pkg) isError(x ast.Expr) bool {
	id, ok := x.(*ast.Ident)
	_, shadowed := p.scope["error"]
	return ok && id.Name == "error" && !shadowed
}
