package durable

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/tailscale/hujson"
)

// ConfigFile is the conventional name of a runtime's config file; see
// LoadConfig.
const ConfigFile = "durable.jsonc"

// Limits of a Config.
const (
	// MaxConfigSize is the largest config file, in bytes.
	MaxConfigSize = 1 << 20
	// MaxTagLength is the longest migration tag, in bytes.
	MaxTagLength = 128
	// MaxFromDirLength is the longest TransferredClass.FromDir, in bytes.
	MaxFromDirLength = 4096
	// maxConfigDepth bounds the nesting of brackets in a config file (the
	// schema needs 5), so that the recursive parser cannot be made to
	// overflow the stack.
	maxConfigDepth = 32
)

// Errors of configs and migrations, wrapped by *ConfigError.
var (
	// ErrInvalidConfig means the config itself is wrong: a syntax error, an
	// unknown or unsupported field, a bad value, migrations that contradict
	// each other, a binding to a class that does not exist.
	ErrInvalidConfig = errors.New("durable: invalid config")
	// ErrMigrationHistory means the config's migrations disagree with those
	// the data folder has applied: one was edited, reordered or removed.
	// Applied migrations are history; change things with a new migration.
	ErrMigrationHistory = errors.New("durable: migrations differ from those applied to the data folder")
	// ErrUndeclaredClass means a class that no migration declares has
	// stored data or is registered, or a class was registered under a name
	// a migration renamed, deleted or transferred away.
	ErrUndeclaredClass = errors.New("durable: class not declared by the migrations")
	// ErrMigration means a migration could not be applied to the data
	// folder (its data conflicts with it, or a file operation failed). The
	// data folder is as it was before that migration.
	ErrMigration = errors.New("durable: migration failed")
	// ErrNoBinding means Lookup found no binding of that name.
	ErrNoBinding = errors.New("durable: no such binding")
)

// Config declares a runtime's Durable Object bindings and class
// migrations, like the durable_objects and migrations sections of a
// Cloudflare wrangler config. Load one from a durable.jsonc file with
// LoadConfig, or build it in Go: the two are equivalent. Pass it to Open in
// Options.Config.
//
// In this package a class is a namespace: the class_name of a binding and
// the class names of migrations are the names given to Register, and the
// namespace's folder in the data folder. A binding is the name a program
// uses to find a namespace (see Lookup).
//
// Without migrations (and in a data folder where none was ever applied),
// any namespace may be registered, as if there were no config. Once there
// are migrations, they are in force: only the classes they declare may be
// registered and hold data. See docs/config.md.
type Config struct {
	// Bindings name namespaces for Lookup. Names are unique; several may
	// name the same class. Once there are migrations, each must name a
	// class they leave existing.
	Bindings []Binding
	// Migrations change the set of classes, in order. Each is applied to
	// the data folder once, at Open, and recorded there; applied migrations
	// may not be edited, reordered or removed afterwards.
	Migrations []Migration

	file string              // the file it was loaded from; "" if built in Go
	pos  map[string]position // line and column of each JSON path, for errors
}

// Binding is a name under which a program finds a namespace: the file's
// {"name": ..., "class_name": ...}.
type Binding struct {
	Name      string `json:"name"`
	ClassName string `json:"class_name"`
}

// Migration is one step of a data folder's history of classes. Within a
// migration a class may appear only once; the actions run together,
// atomically: after a crash the data folder is either before or after the
// whole migration.
type Migration struct {
	// Tag names the migration; tags are unique. Applied migrations are
	// recognised by their tag and content.
	Tag string `json:"tag"`
	// NewSQLiteClasses creates classes. A class whose folder already holds
	// objects (created by a program running without migrations) is
	// adopted with its data and IDs.
	NewSQLiteClasses []string `json:"new_sqlite_classes,omitempty"`
	// RenamedClasses renames classes, keeping every object's data, alarms
	// and ID: ID strings of the old name stay valid under the new one.
	RenamedClasses []RenamedClass `json:"renamed_classes,omitempty"`
	// DeletedClasses deletes classes and every object's data and alarms.
	// No binding may still name a deleted class.
	DeletedClasses []string `json:"deleted_classes,omitempty"`
	// TransferredClasses moves classes, with their objects' data, alarms
	// and IDs, out of another program's data folder into this one.
	TransferredClasses []TransferredClass `json:"transferred_classes,omitempty"`
}

// RenamedClass renames class From to To.
type RenamedClass struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// TransferredClass moves class From of the data folder FromDir into this
// data folder as class To (which may be the same name). FromDir is
// another program's data folder, on the same file system; that program must
// not be running during the transfer. A relative FromDir is relative to
// the config file's folder (to the working directory for a Config built in
// Go). Afterwards FromDir records the class as transferred: its program
// can no longer register it.
type TransferredClass struct {
	From    string `json:"from"`
	FromDir string `json:"from_dir"`
	To      string `json:"to"`
}

// ConfigError reports a problem with a config or with applying its
// migrations: where it is (the file, line and column of a durable.jsonc;
// the Go field of a Config built in code), what is wrong, and what to do.
// errors.Is matches ErrInvalidConfig, ErrMigrationHistory,
// ErrUndeclaredClass or ErrMigration, and the underlying error if any.
type ConfigError struct {
	File   string // the config file; "" for a Config built in Go
	Line   int    // 1-based; 0 if the position is unknown
	Column int    // 1-based byte column; 0 if unknown
	Field  string // JSON path (migrations[1].renamed_classes[0].to) or Go path (Config.Migrations[1]...)
	Msg    string // what is wrong
	Hint   string // what to do
	Err    error  // the sentinel, possibly joined with an underlying error
}

// Error formats the error as "durable: file:line:col: field: what is wrong;
// what to do".
func (e *ConfigError) Error() string {
	var b strings.Builder
	b.WriteString("durable: ")
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d:%d", e.Line, e.Column)
		}
		b.WriteString(": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	if e.Hint != "" {
		b.WriteString("; ")
		b.WriteString(e.Hint)
	}
	return b.String()
}

// Unwrap returns the sentinel (and the underlying error, if any).
func (e *ConfigError) Unwrap() error { return e.Err }

// position is a 1-based line and byte column.
type position struct{ line, col int }

// LoadConfig reads and validates the config file at path (conventionally
// ConfigFile, "durable.jsonc"): JSON with comments and trailing commas,
// shaped like the Durable Object parts of a wrangler config:
//
//	{
//	  "durable_objects": {
//	    "bindings": [{"name": "ROOMS", "class_name": "ChatRoom"}],
//	  },
//	  "migrations": [
//	    {"tag": "v1", "new_sqlite_classes": ["Room"]},
//	    {"tag": "v2", "renamed_classes": [{"from": "Room", "to": "ChatRoom"}]},
//	  ],
//	}
//
// Unknown fields are errors. Errors are *ConfigErrors naming the file, line
// and column. A missing file gives an error matching fs.ErrNotExist.
func LoadConfig(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("durable: load config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("durable: load config: %w", err)
	}
	return ParseConfig(path, data)
}

// ParseConfig parses and validates a config file's contents, as LoadConfig
// does; name is the file's name, used in errors and to resolve relative
// TransferredClass.FromDir paths.
func ParseConfig(name string, data []byte) (*Config, error) {
	data = bytes.TrimPrefix(data, []byte("\ufeff")) // a byte order mark, as some editors write
	p := &parser{file: name, data: data, pos: map[string]position{}}
	cfg, err := p.parse()
	if err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// parser turns a config file into a Config, remembering where each value
// is.
type parser struct {
	file string
	data []byte
	pos  map[string]position
}

func (p *parser) errAt(off int, field, msg, hint string) *ConfigError {
	line, col := lineCol(p.data, off)
	return &ConfigError{File: p.file, Line: line, Column: col, Field: field, Msg: msg, Hint: hint, Err: ErrInvalidConfig}
}

func (p *parser) parse() (*Config, error) {
	if len(p.data) > MaxConfigSize {
		return nil, p.errAt(0, "", fmt.Sprintf("the file is over %d bytes", MaxConfigSize), "keep only bindings and migrations in it")
	}
	if off := tooDeep(p.data, maxConfigDepth); off >= 0 {
		return nil, p.errAt(off, "", fmt.Sprintf("values are nested more than %d deep", maxConfigDepth), "check the brackets: a config nests 5 deep at most")
	}
	v, err := hujson.Parse(p.data)
	if err != nil {
		return nil, p.syntaxError(err)
	}
	if err := p.walk(v, configShape, ""); err != nil {
		return nil, err
	}
	v.Standardize() // comments and trailing commas become spaces: offsets stay
	var fc struct {
		DurableObjects struct {
			Bindings []Binding `json:"bindings"`
		} `json:"durable_objects"`
		Migrations []Migration `json:"migrations"`
	}
	dec := json.NewDecoder(bytes.NewReader(v.Pack()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&fc); err != nil {
		// walk checked the shape, so this is not expected; keep a position.
		off := 0
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			off = int(se.Offset)
		case errors.As(err, &te):
			off = int(te.Offset)
		}
		return nil, p.errAt(min(off, len(p.data)), "", err.Error(), "fix the value here")
	}
	return &Config{
		Bindings:   fc.DurableObjects.Bindings,
		Migrations: fc.Migrations,
		file:       p.file,
		pos:        p.pos,
	}, nil
}

// syntaxError converts a hujson error ("hujson: line L, column C: ...").
func (p *parser) syntaxError(err error) error {
	var line, col int
	if _, serr := fmt.Sscanf(err.Error(), "hujson: line %d, column %d:", &line, &col); serr != nil {
		line, col = 1, 1
	}
	inner := err
	if u := errors.Unwrap(err); u != nil {
		inner = u
	}
	hint := "check for a missing comma, quote, colon or bracket here"
	if errors.Is(inner, io.ErrUnexpectedEOF) {
		hint = "the file ends too early: close every string, { and ["
	}
	return &ConfigError{File: p.file, Line: line, Column: col, Msg: "syntax error: " + inner.Error(), Hint: hint, Err: ErrInvalidConfig}
}

// shape is the expected form of one JSON value of the config file.
type shape struct {
	kind   hujson.Kind       // '{', '[' or '"'
	what   string            // "a migration", for messages
	fields map[string]*shape // objects: the allowed members
	order  []string          // objects: the allowed members, in the documented order
	refuse map[string]string // objects: wrangler members that have no meaning here -> why and what to do
	elem   *shape            // arrays
}

func object(what string, refuse map[string]string, members ...any) *shape {
	s := &shape{kind: '{', what: what, fields: map[string]*shape{}, refuse: refuse}
	for i := 0; i < len(members); i += 2 {
		name := members[i].(string)
		s.fields[name] = members[i+1].(*shape)
		s.order = append(s.order, name)
	}
	return s
}

func array(what string, elem *shape) *shape { return &shape{kind: '[', what: what, elem: elem} }

func str(what string) *shape { return &shape{kind: '"', what: what} }

var configShape = object("the config", nil,
	"durable_objects", object("durable_objects", nil,
		"bindings", array("a list of bindings", object("a binding", map[string]string{
			"script_name": "bindings to another program's classes have no meaning here: every class is registered in this program; remove script_name",
			"environment": "bindings to another program's classes have no meaning here: every class is registered in this program; remove environment",
		},
			"name", str("a binding name"),
			"class_name", str("a class name"),
		)),
	),
	"migrations", array("a list of migrations", object("a migration", map[string]string{
		"new_classes": "new_classes declares classes with Cloudflare's legacy key-value backend; here every class is SQLite-backed (and has the key-value API too): use new_sqlite_classes",
	},
		"tag", str("a tag"),
		"new_sqlite_classes", array("a list of class names", str("a class name")),
		"renamed_classes", array("a list of renames", object("a rename", nil,
			"from", str("a class name"),
			"to", str("a class name"),
		)),
		"deleted_classes", array("a list of class names", str("a class name")),
		"transferred_classes", array("a list of transfers", object("a transfer", map[string]string{
			"from_script": "classes are transferred from another program's data folder, not from a script: give its path in from_dir instead of from_script",
		},
			"from", str("a class name"),
			"from_dir", str("a data folder path"),
			"to", str("a class name"),
		)),
	)),
)

var kindNames = map[hujson.Kind]string{
	'n': "null", 'f': "false", 't': "true", '"': "a string", '0': "a number", '{': "an object", '[': "a list",
}

// walk checks v against s (kinds, unknown, refused and duplicate members)
// and records the position of every value under its JSON path.
func (p *parser) walk(v hujson.Value, s *shape, path string) error {
	p.pos[path] = p.posOf(v.StartOffset)
	field := path
	if k := v.Value.Kind(); k != s.kind {
		return p.errAt(v.StartOffset, field, fmt.Sprintf("want %s, found %s", s.what, kindNames[k]),
			"write "+s.what+" here ("+example(s)+")")
	}
	switch s.kind {
	case '{':
		obj := v.Value.(*hujson.Object)
		seen := map[string]bool{}
		for _, m := range obj.Members {
			name := m.Name.Value.(hujson.Literal).String()
			sub := joinPath(path, name)
			if seen[name] {
				return p.errAt(m.Name.StartOffset, sub, fmt.Sprintf("%q appears twice in %s", name, s.what), "keep one")
			}
			seen[name] = true
			if why, ok := s.refuse[name]; ok {
				return p.errAt(m.Name.StartOffset, sub, fmt.Sprintf("%q is not supported", name), why)
			}
			ms := s.fields[name]
			if ms == nil {
				hint := "the fields of " + s.what + " are " + quoteList(s.order)
				if near := nearest(name, s.order); near != "" {
					hint = fmt.Sprintf("did you mean %q? (%s)", near, hint)
				}
				return p.errAt(m.Name.StartOffset, sub, fmt.Sprintf("unknown field %q in %s", name, s.what), hint)
			}
			if err := p.walk(m.Value, ms, sub); err != nil {
				return err
			}
		}
	case '[':
		arr := v.Value.(*hujson.Array)
		for i, e := range arr.Elements {
			if err := p.walk(e, s.elem, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	}
	return nil
}

func (p *parser) posOf(off int) position {
	l, c := lineCol(p.data, off)
	return position{l, c}
}

func joinPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func example(s *shape) string {
	switch s.kind {
	case '"':
		return `"..."`
	case '[':
		return "[" + example(s.elem) + ", ...]"
	default:
		parts := make([]string, len(s.order))
		for i, f := range s.order {
			parts[i] = strconv.Quote(f) + ": ..."
		}
		return "{" + strings.Join(parts, ", ") + "}"
	}
}

func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = strconv.Quote(n)
	}
	return strings.Join(q, ", ")
}

// nearest returns the candidate within edit distance 2 of s, if any.
func nearest(s string, candidates []string) string {
	best, bestD := "", 3
	for _, c := range candidates {
		if d := editDistance(strings.ToLower(s), c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 1 << 30
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// tooDeep returns the offset of the first '[' or '{' nested deeper than
// limit, outside strings and comments, or -1.
func tooDeep(data []byte, limit int) int {
	depth := 0
	for i := 0; i < len(data); i++ {
		switch c := data[i]; {
		case c == '"':
			for i++; i < len(data) && data[i] != '"'; i++ {
				if data[i] == '\\' {
					i++
				}
			}
		case c == '/' && i+1 < len(data) && data[i+1] == '/':
			for i < len(data) && data[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < len(data) && data[i+1] == '*':
			end := bytes.Index(data[i+2:], []byte("*/"))
			if end < 0 {
				return -1 // unterminated: the parser reports it
			}
			i += 2 + end + 1
		case c == '[' || c == '{':
			if depth++; depth > limit {
				return i
			}
		case c == ']' || c == '}':
			depth--
		}
	}
	return -1
}

// lineCol converts a byte offset of data to a 1-based line and byte column.
func lineCol(data []byte, off int) (line, col int) {
	off = max(0, min(off, len(data)))
	line = 1 + bytes.Count(data[:off], []byte("\n"))
	col = 1 + off - (bytes.LastIndexByte(data[:off], '\n') + 1)
	return line, col
}

// goFields maps the config file's member names to the Go field names.
var goFields = map[string]string{
	"durable_objects": "", "bindings": "Bindings", "name": "Name", "class_name": "ClassName",
	"migrations": "Migrations", "tag": "Tag", "new_sqlite_classes": "NewSQLiteClasses",
	"renamed_classes": "RenamedClasses", "deleted_classes": "DeletedClasses",
	"transferred_classes": "TransferredClasses", "from": "From", "to": "To", "from_dir": "FromDir",
}

// goPath converts a JSON path to the Go path of the same Config field.
func goPath(path string) string {
	var b strings.Builder
	b.WriteString("Config")
	for seg := range strings.SplitSeq(path, ".") {
		name, index, _ := strings.Cut(seg, "[")
		if f := goFields[name]; f != "" {
			b.WriteString(".")
			b.WriteString(f)
		}
		if index != "" {
			b.WriteString("[" + index)
		}
	}
	return b.String()
}

// errAt returns a *ConfigError for the value at the JSON path: the file
// position of it (or of its nearest parent) if the config came from a
// file, else the Go path.
func (c *Config) errAt(path string, sentinel error, msg, hint string) *ConfigError {
	e := &ConfigError{Msg: msg, Hint: hint, Err: sentinel}
	if c == nil {
		return e
	}
	if c.file == "" {
		e.Field = goPath(path)
		return e
	}
	e.File, e.Field = c.file, path
	for p := path; ; {
		if pos, ok := c.pos[p]; ok {
			e.Line, e.Column = pos.line, pos.col
			break
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			if pos, ok := c.pos[""]; ok {
				e.Line, e.Column = pos.line, pos.col
			}
			break
		}
		p = p[:i]
	}
	return e
}

// where describes the place of the value at path for use inside another
// message: "line 4" or "Config.Migrations[0]".
func (c *Config) where(path string) string {
	if c.file == "" {
		return goPath(path)
	}
	if pos, ok := c.pos[path]; ok {
		return fmt.Sprintf("line %d", pos.line)
	}
	return path
}

// classEvent is what a migration did to a class, as seen while validating.
type classEvent struct {
	how  string // "created", "renamed", "deleted", "transferred"
	to   string // renamed: the new name
	tag  string
	path string // JSON path of the action
}

// Validate checks the config on its own (the data folder is checked by
// Open): every name is well formed, tags are unique, each migration makes
// sense after the ones before it, bindings are unique and, once there are
// migrations, name classes that exist after them. It returns the first
// problem found as a *ConfigError wrapping ErrInvalidConfig.
func (c *Config) Validate() error {
	_, err := c.simulate()
	return err
}

// simulate validates the config and returns the classes existing after
// every migration.
func (c *Config) simulate() (map[string]classEvent, error) {
	bad := func(path, msg, hint string) (map[string]classEvent, error) {
		return nil, c.errAt(path, ErrInvalidConfig, msg, hint)
	}
	live := map[string]classEvent{} // class -> how it came to exist
	gone := map[string]classEvent{} // class -> how it went away
	tags := map[string]string{}     // tag -> path
	for i, m := range c.Migrations {
		mp := fmt.Sprintf("migrations[%d]", i)
		tp := mp + ".tag"
		if msg, hint := checkTag(m.Tag); msg != "" {
			return bad(tp, msg, hint)
		}
		if prev, dup := tags[m.Tag]; dup {
			return bad(tp, fmt.Sprintf("tag %q is already used by the migration at %s", m.Tag, c.where(prev)), "give each migration a unique tag")
		}
		tags[m.Tag] = tp
		inThis := map[string]string{} // class -> path, within this migration
		name := func(path, class string) error {
			if !namespaceName.MatchString(class) {
				return c.errAt(path, ErrInvalidConfig, fmt.Sprintf("class name %q is not valid", class),
					"use 1-63 letters, digits, '_' or '-', starting with a letter (the name given to durable.Register)")
			}
			if prev, dup := inThis[class]; dup {
				return c.errAt(path, ErrInvalidConfig, fmt.Sprintf("class %q already appears in this migration, at %s", class, c.where(prev)),
					"name each class once per migration; split the changes into two migrations")
			}
			inThis[class] = path
			return nil
		}
		existsHint := func(class string) string {
			if g, ok := gone[class]; ok {
				return fmt.Sprintf("class %q was %s by migration %q (%s)", class, g.how, g.tag, c.where(g.path))
			}
			return fmt.Sprintf("no earlier migration creates class %q", class)
		}
		for j, cl := range m.NewSQLiteClasses {
			p := fmt.Sprintf("%s.new_sqlite_classes[%d]", mp, j)
			if err := name(p, cl); err != nil {
				return nil, err
			}
			if ev, ok := live[cl]; ok {
				return bad(p, fmt.Sprintf("class %q already exists (%s by migration %q, %s)", cl, ev.how, ev.tag, c.where(ev.path)), "remove it from new_sqlite_classes")
			}
		}
		for j, r := range m.RenamedClasses {
			p := fmt.Sprintf("%s.renamed_classes[%d]", mp, j)
			if err := name(p+".from", r.From); err != nil {
				return nil, err
			}
			if err := name(p+".to", r.To); err != nil {
				return nil, err
			}
			if _, ok := live[r.From]; !ok {
				return bad(p+".from", fmt.Sprintf("cannot rename class %q: %s", r.From, existsHint(r.From)), "rename a class that exists at this point of the migrations")
			}
			if ev, ok := live[r.To]; ok {
				return bad(p+".to", fmt.Sprintf("cannot rename class %q to %q: %q already exists (%s by migration %q, %s)", r.From, r.To, r.To, ev.how, ev.tag, c.where(ev.path)),
					"pick a name no class has, or delete that class in an earlier migration")
			}
		}
		for j, cl := range m.DeletedClasses {
			p := fmt.Sprintf("%s.deleted_classes[%d]", mp, j)
			if err := name(p, cl); err != nil {
				return nil, err
			}
			if _, ok := live[cl]; !ok {
				return bad(p, fmt.Sprintf("cannot delete class %q: %s", cl, existsHint(cl)), "delete a class that exists at this point of the migrations")
			}
		}
		for j, t := range m.TransferredClasses {
			p := fmt.Sprintf("%s.transferred_classes[%d]", mp, j)
			if !namespaceName.MatchString(t.From) {
				return bad(p+".from", fmt.Sprintf("class name %q is not valid", t.From), "use the name the class has in the other data folder")
			}
			if err := name(p+".to", t.To); err != nil {
				return nil, err
			}
			switch {
			case t.FromDir == "":
				return bad(p+".from_dir", "from_dir is missing or empty", "give the path of the data folder the class comes from")
			case len(t.FromDir) > MaxFromDirLength:
				return bad(p+".from_dir", fmt.Sprintf("from_dir is %d bytes, over the limit of %d", len(t.FromDir), MaxFromDirLength), "use a shorter path")
			case strings.ContainsRune(t.FromDir, 0):
				return bad(p+".from_dir", "from_dir contains a NUL byte", "give a valid path")
			}
			if ev, ok := live[t.To]; ok {
				return bad(p+".to", fmt.Sprintf("cannot transfer into class %q: it already exists (%s by migration %q, %s)", t.To, ev.how, ev.tag, c.where(ev.path)),
					"transfer into a name no class has here")
			}
		}
		// All actions of a migration happen together; each class appears
		// once, so their order does not matter.
		for j, cl := range m.NewSQLiteClasses {
			live[cl] = classEvent{how: "created", tag: m.Tag, path: fmt.Sprintf("%s.new_sqlite_classes[%d]", mp, j)}
			delete(gone, cl)
		}
		for j, r := range m.RenamedClasses {
			p := fmt.Sprintf("%s.renamed_classes[%d]", mp, j)
			delete(live, r.From)
			gone[r.From] = classEvent{how: "renamed", to: r.To, tag: m.Tag, path: p}
			live[r.To] = classEvent{how: "renamed from " + strconv.Quote(r.From), tag: m.Tag, path: p}
			delete(gone, r.To)
		}
		for j, cl := range m.DeletedClasses {
			delete(live, cl)
			gone[cl] = classEvent{how: "deleted", tag: m.Tag, path: fmt.Sprintf("%s.deleted_classes[%d]", mp, j)}
		}
		for j, t := range m.TransferredClasses {
			live[t.To] = classEvent{how: "transferred in", tag: m.Tag, path: fmt.Sprintf("%s.transferred_classes[%d]", mp, j)}
			delete(gone, t.To)
		}
	}

	names := map[string]string{} // binding name -> path
	for i, b := range c.Bindings {
		p := fmt.Sprintf("durable_objects.bindings[%d]", i)
		if !namespaceName.MatchString(b.Name) {
			return bad(p+".name", fmt.Sprintf("binding name %q is not valid", b.Name), "use 1-63 letters, digits, '_' or '-', starting with a letter")
		}
		if prev, dup := names[b.Name]; dup {
			return bad(p+".name", fmt.Sprintf("binding %q is already defined at %s", b.Name, c.where(prev)), "give each binding a unique name")
		}
		names[b.Name] = p
		if !namespaceName.MatchString(b.ClassName) {
			return bad(p+".class_name", fmt.Sprintf("class name %q is not valid", b.ClassName),
				"use 1-63 letters, digits, '_' or '-', starting with a letter (the name given to durable.Register)")
		}
		if len(c.Migrations) == 0 {
			continue // no migrations: any registered class will do
		}
		if _, ok := live[b.ClassName]; ok {
			continue
		}
		g, wasGone := gone[b.ClassName]
		switch {
		case wasGone && g.how == "renamed":
			return bad(p+".class_name", fmt.Sprintf("binding %q names class %q, which migration %q (%s) renamed to %q", b.Name, b.ClassName, g.tag, c.where(g.path), g.to),
				fmt.Sprintf("set class_name to %q", g.to))
		case wasGone:
			return bad(p+".class_name", fmt.Sprintf("binding %q names class %q, which migration %q (%s) deletes", b.Name, b.ClassName, g.tag, c.where(g.path)),
				"remove the binding (a class is deleted only once no binding names it), or keep the class")
		default:
			return bad(p+".class_name", fmt.Sprintf("binding %q names class %q, which no migration creates", b.Name, b.ClassName),
				fmt.Sprintf(`add a migration with "new_sqlite_classes": [%q]`, b.ClassName))
		}
	}
	return live, nil
}

// checkTag returns what is wrong with tag and what to do, or "".
func checkTag(tag string) (msg, hint string) {
	switch {
	case tag == "":
		return "the tag is missing or empty", `give each migration a unique tag such as "v1", "v2", ...`
	case len(tag) > MaxTagLength:
		return fmt.Sprintf("the tag is %d bytes, over the limit of %d", len(tag), MaxTagLength), "use a shorter tag"
	case !utf8.ValidString(tag):
		return "the tag is not valid UTF-8", "use a tag of printable characters"
	}
	for _, r := range tag {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return fmt.Sprintf("the tag %q contains a control character", tag), "use a tag of printable characters"
		}
	}
	return "", ""
}

// clone returns a deep copy of c, so that Open keeps what it was given.
func (c *Config) clone() *Config {
	if c == nil {
		return nil
	}
	d := &Config{Bindings: slices.Clone(c.Bindings), file: c.file, pos: c.pos}
	d.Migrations = make([]Migration, len(c.Migrations))
	for i, m := range c.Migrations {
		d.Migrations[i] = Migration{
			Tag:                m.Tag,
			NewSQLiteClasses:   slices.Clone(m.NewSQLiteClasses),
			RenamedClasses:     slices.Clone(m.RenamedClasses),
			DeletedClasses:     slices.Clone(m.DeletedClasses),
			TransferredClasses: slices.Clone(m.TransferredClasses),
		}
	}
	return d
}

// canonical returns a copy of m with its lists sorted: the form in which
// applied migrations are recorded and compared (the order of a list does
// not change what a migration does).
func (m Migration) canonical() Migration {
	sorted := func(s []string) []string {
		if len(s) == 0 {
			return nil
		}
		s = slices.Clone(s)
		slices.Sort(s)
		return s
	}
	out := Migration{Tag: m.Tag, NewSQLiteClasses: sorted(m.NewSQLiteClasses), DeletedClasses: sorted(m.DeletedClasses)}
	if len(m.RenamedClasses) > 0 {
		out.RenamedClasses = slices.Clone(m.RenamedClasses)
		slices.SortFunc(out.RenamedClasses, func(a, b RenamedClass) int { return strings.Compare(a.From, b.From) })
	}
	if len(m.TransferredClasses) > 0 {
		out.TransferredClasses = slices.Clone(m.TransferredClasses)
		slices.SortFunc(out.TransferredClasses, func(a, b TransferredClass) int { return strings.Compare(a.To, b.To) })
	}
	return out
}

// dir is the folder relative FromDir paths are relative to.
func (c *Config) dir() string {
	if c == nil || c.file == "" {
		return "."
	}
	return filepath.Dir(c.file)
}
