package main

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/format"
	"go/printer"
	"go/types"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"unicode"
	"unicode/utf8"
)

// durablePath is the import path of the durable package.
const durablePath = "github.com/durable-go/durable"

// maxTyped is the largest argument count that durable.CallN and DoN take.
const maxTyped = 4

// object is one object type with its RPC methods and skipped methods.
type object struct {
	name    string
	rpc     []*rpcMethod
	skipped []string
}

// rpcMethod is an RPC method with its shape.
type rpcMethod struct {
	*method
	*shape
}

// generator turns the object types of one package into a stub file.
type generator struct {
	p *pkg
	// names maps the import paths of the output file to their names.
	names map[string]string
	// dots holds the paths the output imports with a dot.
	dots map[string]bool
	// taken holds the identifiers an import name must not be: the
	// package's names, the generated ones and the predeclared ones.
	taken map[string]bool
}

// generate returns the stub file for the named object types of p, and
// warnings about types that have no RPC methods.
func generate(p *pkg, typeNames []string) (src []byte, warnings []string, err error) {
	g := &generator{
		p:     p,
		names: make(map[string]string),
		dots:  make(map[string]bool),
		taken: make(map[string]bool),
	}
	for name := range p.scope {
		g.taken[name] = true
	}
	for _, name := range types.Universe.Names() {
		g.taken[name] = true
	}

	var objs []*object
	dynamicResult := false
	for _, name := range typeNames {
		if _, err := p.objectType(name); err != nil {
			return nil, nil, err
		}
		o := &object{name: name}
		ms, notes := p.methodSet(name)
		for _, m := range ms {
			sh, why := p.rpcShape(m)
			if sh == nil {
				label := m.name
				if m.via != "" {
					label += " (promoted from " + m.via + ")"
				}
				o.skipped = append(o.skipped, label+": "+why)
				continue
			}
			o.rpc = append(o.rpc, &rpcMethod{m, sh})
			if sh.nargs > maxTyped && sh.result != nil {
				dynamicResult = true
			}
		}
		o.skipped = append(o.skipped, notes...)
		if len(o.rpc) == 0 {
			warnings = append(warnings, fmt.Sprintf("%s has no RPC methods, so %s has no methods of its own", name, names(name).stub))
		}
		objs = append(objs, o)
	}
	if err := g.checkNames(typeNames); err != nil {
		return nil, nil, err
	}

	// Name the imports: the generator's own first, then those the
	// signatures use, under the names their files give them.
	g.importName("context", "context")
	g.importName(durablePath, "durable")
	if dynamicResult {
		g.importName("fmt", "fmt")
	}
	for _, o := range objs {
		for _, m := range o.rpc {
			for _, f := range m.params {
				if err := g.useImports(f.Type, m); err != nil {
					return nil, nil, err
				}
			}
			if m.result != nil {
				if err := g.useImports(m.result, m); err != nil {
					return nil, nil, err
				}
			}
		}
	}

	data := &fileData{
		Package: p.name,
		Imports: g.importSpecs(),
		Context: g.names["context"],
		Durable: g.names[durablePath],
		Fmt:     g.names["fmt"],
	}
	for _, o := range objs {
		data.Types = append(data.Types, g.stubType(o))
	}
	var buf bytes.Buffer
	if err := stubTemplate.Execute(&buf, data); err != nil {
		return nil, nil, fmt.Errorf("internal error: %w", err)
	}
	src, err = format.Source(buf.Bytes())
	if err != nil {
		return nil, nil, fmt.Errorf("internal error: generated code does not parse: %w", err)
	}
	return src, warnings, nil
}

// stubNames are the generated identifiers for one object type.
type stubNames struct {
	stub, ctor, byName, byID string
}

// names returns the generated identifiers for object type t: for Counter,
// CounterStub, NewCounterStub, CounterByName and CounterByID; for an
// unexported type counter, counterStub, newCounterStub, counterByName and
// counterByID.
func names(t string) stubNames {
	r, size := utf8.DecodeRuneInString(t)
	upper := string(unicode.ToUpper(r)) + t[size:]
	n := stubNames{stub: t + "Stub", ctor: "New" + upper + "Stub", byName: t + "ByName", byID: t + "ByID"}
	if !ast.IsExported(t) {
		n.ctor = "new" + upper + "Stub"
	}
	return n
}

// checkNames fails if a generated identifier is already declared in the
// package (or is an import name in one of its files), and reserves the
// generated identifiers.
func (g *generator) checkNames(typeNames []string) error {
	fileScope := make(map[string]bool)
	for _, f := range g.p.files {
		for _, is := range f.ast.Imports {
			if is.Name != nil {
				fileScope[is.Name.Name] = true
			} else {
				fileScope[guessName(importPath(is))] = true
			}
		}
	}
	generated := make(map[string]string) // identifier -> object type
	for _, t := range typeNames {
		n := names(t)
		for _, id := range []string{n.stub, n.ctor, n.byName, n.byID} {
			if pos, ok := g.p.scope[id]; ok {
				return fmt.Errorf("%s: %s is declared here, but durable-stub would generate it for %s", g.p.position(pos), id, t)
			}
			if fileScope[id] {
				return fmt.Errorf("%s is the name of an import in package %s, but durable-stub would generate it for %s", id, g.p.name, t)
			}
			if other, dup := generated[id]; dup {
				return fmt.Errorf("durable-stub would generate %s for both %s and %s", id, other, t)
			}
			generated[id] = t
			g.taken[id] = true
		}
	}
	return nil
}

// importName gives path a name in the output, want if it is free, and
// returns it. A path keeps the first name it gets.
func (g *generator) importName(path, want string) string {
	if name, ok := g.names[path]; ok {
		return name
	}
	name := want
	for i := 2; g.taken[name]; i++ {
		name = fmt.Sprintf("%s%d", want, i)
	}
	g.taken[name] = true
	g.names[path] = name
	return name
}

// useImports adds the imports that type expression x, from the signature
// of m, refers to.
func (g *generator) useImports(x ast.Expr, m *rpcMethod) error {
	var err error
	ast.Inspect(x, func(n ast.Node) bool {
		if err != nil {
			return false
		}
		switch n := n.(type) {
		case *ast.Field:
			// Skip the names of struct fields and interface methods.
			if n.Type != nil {
				err = g.useImports(n.Type, m)
			}
			return false
		case *ast.SelectorExpr:
			id, ok := n.X.(*ast.Ident)
			if !ok {
				return true
			}
			path, ok := g.p.resolve(m.file, id.Name)
			switch {
			case !ok:
				err = fmt.Errorf("%s: %s: cannot tell which import %s refers to", g.p.position(n.Pos()), m.name, id.Name)
			case path == "C":
				err = fmt.Errorf("%s: %s: cgo types cannot appear in a stub", g.p.position(n.Pos()), m.name)
			default:
				g.importName(path, id.Name)
			}
			return false
		case *ast.Ident:
			if _, ok := g.p.scope[n.Name]; ok || types.Universe.Lookup(n.Name) != nil {
				return false
			}
			switch len(m.file.dots) {
			case 0:
				err = fmt.Errorf("%s: %s: cannot tell where %s is declared", g.p.position(n.Pos()), m.name, n.Name)
				return false
			case 1:
			default:
				err = fmt.Errorf("%s: %s: cannot tell which of the file's dot imports declares %s", g.p.position(n.Pos()), m.name, n.Name)
				return false
			}
			g.dots[m.file.dots[0]] = true
		}
		return true
	})
	return err
}

// importSpecs returns the output's import specs: standard library first.
func (g *generator) importSpecs() []string {
	var std, other []string
	add := func(path, spec string) {
		if isStd(path) {
			std = append(std, spec)
		} else {
			other = append(other, spec)
		}
	}
	for path, name := range g.names {
		if name == guessName(path) {
			add(path, strconv.Quote(path))
		} else {
			add(path, name+" "+strconv.Quote(path))
		}
	}
	for path := range g.dots {
		add(path, ". "+strconv.Quote(path))
	}
	byPath := func(a, b string) int {
		return strings.Compare(a[strings.IndexByte(a, '"'):], b[strings.IndexByte(b, '"'):])
	}
	slices.SortFunc(std, byPath)
	slices.SortFunc(other, byPath)
	if len(std) > 0 && len(other) > 0 {
		std = append(std, "")
	}
	return append(std, other...)
}

// typeString prints type expression x from file f, with the package
// names the output gives its imports.
func (g *generator) typeString(x ast.Expr, f *srcFile) string {
	type rename struct {
		id  *ast.Ident
		old string
	}
	var renamed []rename
	ast.Inspect(x, func(n ast.Node) bool {
		sel, ok := n.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		id, ok := sel.X.(*ast.Ident)
		if !ok {
			return true
		}
		if path, ok := g.p.resolve(f, id.Name); ok && g.names[path] != id.Name {
			renamed = append(renamed, rename{id, id.Name})
			id.Name = g.names[path]
		}
		return false
	})
	var b strings.Builder
	printer.Fprint(&b, g.p.fset, x)
	for _, r := range renamed {
		r.id.Name = r.old
	}
	return b.String()
}

// stubType returns the template data for object o.
func (g *generator) stubType(o *object) *typeData {
	n := names(o.name)
	td := &typeData{
		Name:    o.name,
		Stub:    n.stub,
		New:     n.ctor,
		ByName:  n.byName,
		ByID:    n.byID,
		Skipped: o.skipped,
	}
	for _, m := range o.rpc {
		td.Methods = append(td.Methods, g.stubMethod(o.name, m))
	}
	return td
}

// stubMethod returns the template data for the wrapper of m, a method of
// object type t.
func (g *generator) stubMethod(t string, m *rpcMethod) *methodData {
	md := &methodData{
		Name:    m.name,
		N:       m.nargs,
		Dynamic: m.nargs > maxTyped,
	}
	if m.result != nil {
		md.Result = g.typeString(m.result, m.file)
	}

	// The wrapper's body refers to these names, so parameters must not
	// shadow them.
	forbidden := map[string]bool{"s": true, "ctx": true, t: true, g.names[durablePath]: true}
	if md.Dynamic {
		for _, name := range g.names {
			forbidden[name] = true
		}
		for _, name := range []string{"v", "r", "ok", "err", "zero"} {
			forbidden[name] = true
		}
		if m.result != nil {
			ast.Inspect(m.result, func(n ast.Node) bool {
				if id, ok := n.(*ast.Ident); ok {
					forbidden[id.Name] = true
				}
				return true
			})
		}
	}
	names := paramNames(m.params, forbidden)

	var params, args, argTypes []string
	for i, f := range m.params {
		typ := g.typeString(f.Type, m.file)
		params = append(params, strings.Join(names[i], ", ")+" "+typ)
		args = append(args, names[i]...)
		for range names[i] {
			argTypes = append(argTypes, typ)
		}
	}
	md.Params = strings.Join(params, ", ")
	md.Args = strings.Join(args, ", ")

	if md.Dynamic {
		ctx := g.names["context"]
		md.FuncType = fmt.Sprintf("func(%s) error", strings.Join(slices.Concat([]string{"*" + t, ctx + ".Context"}, argTypes), ", "))
		if m.result != nil {
			md.FuncType = fmt.Sprintf("func(%s) (%s, error)", strings.Join(slices.Concat([]string{"*" + t, ctx + ".Context"}, argTypes), ", "), md.Result)
			md.ErrFormat = strconv.Quote(fmt.Sprintf("%%w: %s.%s returned %%T, want %s", t, m.name, strings.ReplaceAll(md.Result, "%", "%%")))
		}
	}
	return md
}

// paramNames names the parameters of fields (one list per field): each
// keeps its source name unless it is unnamed, blank, forbidden or a
// duplicate; the others get a1, a2… by position (arg1… if taken).
func paramNames(fields []*ast.Field, forbidden map[string]bool) [][]string {
	kept := make(map[string]bool)
	var out [][]string
	for _, f := range fields {
		var list []string
		for _, id := range f.Names {
			name := id.Name
			if name == "_" || forbidden[name] || kept[name] {
				name = ""
			} else {
				kept[name] = true
			}
			list = append(list, name)
		}
		if len(f.Names) == 0 {
			list = []string{""}
		}
		out = append(out, list)
	}
	pos := 0
	for _, list := range out {
		for j, name := range list {
			pos++
			if name != "" {
				continue
			}
			name = fmt.Sprintf("a%d", pos)
			if forbidden[name] || kept[name] {
				name = fmt.Sprintf("arg%d", pos)
			}
			for forbidden[name] || kept[name] {
				name += "_"
			}
			kept[name] = true
			list[j] = name
		}
	}
	return out
}

// fileData is the data of stubTemplate.
type fileData struct {
	Package string
	Imports []string
	// Context, Durable and Fmt are the names of those imports.
	Context, Durable, Fmt string
	Types                 []*typeData
}

// typeData describes the stub of one object type.
type typeData struct {
	Name, Stub, New, ByName, ByID string
	Skipped                       []string
	Methods                       []*methodData
}

// methodData describes one wrapper method.
type methodData struct {
	Name   string
	Params string // after ctx, with types
	Args   string // after ctx
	Result string // empty for a method that returns only an error
	N      int
	// Dynamic methods take more than maxTyped arguments and call
	// Stub.Call; FuncType is the method expression's type, and ErrFormat
	// the quoted format of the error for a result of the wrong type.
	Dynamic   bool
	FuncType  string
	ErrFormat string
}

// stubTemplate writes the stub file; go/format tidies its output.
var stubTemplate = template.Must(template.New("stub").Parse(`// Code generated by durable-stub; DO NOT EDIT.

package {{.Package}}

import (
{{- range .Imports}}
	{{.}}
{{- end}}
)
{{range $t := .Types}}
{{- if .Skipped}}

// durable-stub wrote no wrapper for these methods of *{{.Name}}, which are
// not RPC methods:
{{- range .Skipped}}
//   - {{.}}
{{- end}}
{{- end}}

// {{.Stub}} is a typed client for {{.Name}} objects: each method calls the
// object's method of the same name. The embedded *durable.Stub gives the
// object's ID and calls by name.
type {{.Stub}} struct{ *{{$.Durable}}.Stub[{{.Name}}] }

// {{.New}} wraps s.
func {{.New}}(s *{{$.Durable}}.Stub[{{.Name}}]) {{.Stub}} { return {{.Stub}}{s} }

// {{.ByName}} returns a stub for the {{.Name}} object called name in ns.
// It creates nothing; an invalid name gives a stub whose calls fail (see
// durable.Namespace.GetByName).
func {{.ByName}}(ns *{{$.Durable}}.Namespace[{{.Name}}], name string) {{.Stub}} {
	return {{.Stub}}{ns.GetByName(name)}
}

// {{.ByID}} returns a stub for the {{.Name}} object with the given ID in ns.
// It creates nothing; an ID of another namespace gives a stub whose calls
// fail (see durable.Namespace.Get).
func {{.ByID}}(ns *{{$.Durable}}.Namespace[{{.Name}}], id {{$.Durable}}.ID) {{.Stub}} {
	return {{.Stub}}{ns.Get(id)}
}
{{- range .Methods}}
{{- if .Dynamic}}

// (*{{$t.Name}}).{{.Name}} must keep this signature: {{$t.Stub}}.{{.Name}} calls it by name.
var _ {{.FuncType}} = (*{{$t.Name}}).{{.Name}}

// {{.Name}} calls (*{{$t.Name}}).{{.Name}} on the object. It has more arguments
// than durable.{{if .Result}}Call4{{else}}Do4{{end}} takes, so it calls the method by name with
// Stub.Call.
{{- if .Result}}
func (s {{$t.Stub}}) {{.Name}}(ctx {{$.Context}}.Context, {{.Params}}) ({{.Result}}, error) {
	v, err := s.Stub.Call(ctx, {{printf "%q" .Name}}, {{.Args}})
	if err != nil {
		var zero {{.Result}}
		return zero, err
	}
	r, ok := v.({{.Result}})
	if !ok && v != nil {
		return r, {{$.Fmt}}.Errorf({{.ErrFormat}}, {{$.Durable}}.ErrBadArgument, v)
	}
	return r, nil
}
{{- else}}
func (s {{$t.Stub}}) {{.Name}}(ctx {{$.Context}}.Context, {{.Params}}) error {
	_, err := s.Stub.Call(ctx, {{printf "%q" .Name}}, {{.Args}})
	return err
}
{{- end}}
{{- else}}

// {{.Name}} calls (*{{$t.Name}}).{{.Name}} on the object.
{{- if .Result}}
func (s {{$t.Stub}}) {{.Name}}(ctx {{$.Context}}.Context{{if .Params}}, {{.Params}}{{end}}) ({{.Result}}, error) {
	return {{$.Durable}}.Call{{.N}}(ctx, s.Stub, (*{{$t.Name}}).{{.Name}}{{if .Args}}, {{.Args}}{{end}})
}
{{- else}}
func (s {{$t.Stub}}) {{.Name}}(ctx {{$.Context}}.Context{{if .Params}}, {{.Params}}{{end}}) error {
	return {{$.Durable}}.Do{{.N}}(ctx, s.Stub, (*{{$t.Name}}).{{.Name}}{{if .Args}}, {{.Args}}{{end}})
}
{{- end}}
{{- end}}
{{- end}}
{{end}}`))
