package durable

import (
	"context"
	"fmt"
	"reflect"
	"regexp"

	"github.com/durable-go/durable/internal/codec"
)

// Namespace is the set of objects of one type T registered under one name.
// It makes IDs and stubs; making them creates nothing: an object is
// constructed on its first call. A Namespace is safe for concurrent use and
// is the value to put in other objects' environments (like a Cloudflare
// binding).
type Namespace[T any] struct {
	c *nsCore
}

// nsCore is the type-erased part of a namespace.
type nsCore struct {
	rt        *Runtime
	name      string
	key       idKey
	construct func(*State) (any, error)
	methods   map[string]*method
	typ       reflect.Type // *T
	m         *nsMetrics   // counters of the namespace (metrics.go)
}

var namespaceName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]{0,62}$`)

// Register adds a namespace called name whose objects are built by
// newObject with env. The name (1–63 letters, digits, '_' or '-', starting
// with a letter) also names the namespace's folder on disk and keys its IDs,
// so keep it stable.
//
// The exported methods of *T shaped
//
//	func (t *T) Name(ctx context.Context, args...) (R, error)
//	func (t *T) Name(ctx context.Context, args...) error
//
// form the object's RPC surface; see Call1 and Stub.Call. Their argument
// and result types must be ones the codec carries (no channels or
// functions); Register fails otherwise.
//
// newObject runs on the object's first event after each activation, inside
// the object's turn and under BlockConcurrencyWhile semantics: no other
// event reaches the object until it returns, and it fails if it runs past
// Options.BlockConcurrencyTimeout.
func Register[T any, E any](rt *Runtime, name string, newObject func(*State, E) (*T, error), env E) (*Namespace[T], error) {
	if !namespaceName.MatchString(name) {
		return nil, fmt.Errorf("durable: namespace name %q: want 1-63 letters, digits, '_' or '-', starting with a letter", name)
	}
	if newObject == nil {
		return nil, fmt.Errorf("durable: namespace %q: nil constructor", name)
	}
	key, err := rt.classes.key(name) // migrate.go
	if err != nil {
		return nil, err
	}
	typ := reflect.TypeFor[*T]()
	methods, err := methodTable(typ)
	if err != nil {
		return nil, fmt.Errorf("durable: namespace %q: %w", name, err)
	}
	c := &nsCore{
		rt:      rt,
		name:    name,
		key:     key,
		methods: methods,
		typ:     typ,
		construct: func(st *State) (any, error) {
			obj, err := newObject(st, env)
			if err == nil && obj == nil {
				err = fmt.Errorf("constructor returned a nil %v", typ)
			}
			return obj, err
		},
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.closed {
		return nil, ErrClosed
	}
	if _, dup := rt.namespaces[name]; dup {
		return nil, fmt.Errorf("durable: namespace %q registered twice", name)
	}
	c.m = rt.metrics.namespace(name)
	rt.namespaces[name] = c
	rt.alarms.Ready(name) // alarms of the namespace may fire now
	return &Namespace[T]{c: c}, nil
}

// MustRegister is Register that panics on error, for use in main.
func MustRegister[T any, E any](rt *Runtime, name string, newObject func(*State, E) (*T, error), env E) *Namespace[T] {
	ns, err := Register(rt, name, newObject, env)
	if err != nil {
		panic(err)
	}
	return ns
}

// Name returns the namespace's name.
func (n *Namespace[T]) Name() string { return n.c.name }

// IDFromName returns the ID of the object called name: the same name always
// gives the same ID in this namespace, and a different one in any other.
// The ID carries the name. Names are 1 to MaxNameLength bytes of UTF-8
// without NUL; others give an error wrapping ErrInvalidName.
func (n *Namespace[T]) IDFromName(name string) (ID, error) { return n.c.key.fromName(n.c.name, name) }

// NewUniqueID returns a random ID that no other call will return.
func (n *Namespace[T]) NewUniqueID() ID { return n.c.key.unique(n.c.name) }

// IDFromString parses the String form of an ID of this namespace. It fails
// with an *IDError wrapping ErrMalformedID or ErrForeignID.
func (n *Namespace[T]) IDFromString(s string) (ID, error) { return n.c.key.parse(n.c.name, s) }

// Get returns a stub for the object with the given ID. It creates nothing.
// An ID of another namespace gives a stub whose calls fail with
// ErrForeignID.
func (n *Namespace[T]) Get(id ID) *Stub[T] {
	s := &Stub[T]{c: n.c, id: id}
	switch {
	case id.IsZero():
		s.err = fmt.Errorf("%w: zero ID", ErrMalformedID)
	case id.ns != n.c.name:
		s.err = &IDError{Namespace: n.c.name, Input: id.String(), Reason: fmt.Sprintf("belongs to namespace %q", id.ns), Err: ErrForeignID}
	}
	return s
}

// GetByName returns a stub for the object called name; it is
// Get(IDFromName(name)). An invalid name gives a stub whose calls fail with
// an error wrapping ErrInvalidName.
func (n *Namespace[T]) GetByName(name string) *Stub[T] {
	id, err := n.IDFromName(name)
	if err != nil {
		return &Stub[T]{c: n.c, err: err}
	}
	return &Stub[T]{c: n.c, id: id}
}

// objectKey is the engine's registry key of an object.
func (c *nsCore) objectKey(id ID) string { return c.name + "/" + string(id.raw[:]) }

var (
	ctxType   = reflect.TypeFor[context.Context]()
	errorType = reflect.TypeFor[error]()
)

// reservedMethods are handler names, never callable as RPC methods.
var reservedMethods = map[string]bool{
	"Fetch": true, "ServeHTTP": true, "Alarm": true, "WebSocketMessage": true,
	"WebSocketClose": true, "WebSocketError": true, "Hibernatable": true,
}

// method is one RPC method of an object type.
type method struct {
	name      string
	fn        reflect.Value  // func(*T, context.Context, args...) ...
	in        []reflect.Type // argument types after ctx
	hasResult bool
	result    reflect.Type
}

func methodTable(typ reflect.Type) (map[string]*method, error) {
	methods := make(map[string]*method)
	for i := range typ.NumMethod() {
		m := typ.Method(i)
		if reservedMethods[m.Name] {
			continue
		}
		ft := m.Type // includes the receiver
		if ft.NumIn() < 2 || ft.In(1) != ctxType || ft.IsVariadic() {
			continue // not an RPC method
		}
		var meth *method
		switch {
		case ft.NumOut() == 1 && ft.Out(0) == errorType:
			meth = &method{name: m.Name, fn: m.Func}
		case ft.NumOut() == 2 && ft.Out(1) == errorType:
			meth = &method{name: m.Name, fn: m.Func, hasResult: true, result: ft.Out(0)}
			if err := codec.Check(meth.result); err != nil {
				return nil, fmt.Errorf("method %s: result: %w", m.Name, err)
			}
		default:
			continue
		}
		for j := 2; j < ft.NumIn(); j++ {
			at := ft.In(j)
			if err := codec.Check(at); err != nil {
				return nil, fmt.Errorf("method %s: argument %d: %w", m.Name, j-1, err)
			}
			meth.in = append(meth.in, at)
		}
		methods[m.Name] = meth
	}
	return methods, nil
}

// args converts and copies dynamic call arguments to the method's types.
func (m *method) args(args []any) ([]reflect.Value, error) {
	if len(args) != len(m.in) {
		return nil, fmt.Errorf("%w: %s takes %d arguments, got %d", ErrBadArgument, m.name, len(m.in), len(args))
	}
	vals := make([]reflect.Value, len(args))
	for i, a := range args {
		want := m.in[i]
		var v reflect.Value
		switch {
		case a == nil:
			switch want.Kind() {
			case reflect.Pointer, reflect.Slice, reflect.Map, reflect.Interface:
				v = reflect.Zero(want)
			default:
				return nil, fmt.Errorf("%w: %s argument %d: nil for %v", ErrBadArgument, m.name, i+1, want)
			}
		default:
			v = reflect.ValueOf(a)
			switch {
			case v.Type().AssignableTo(want):
				if want.Kind() == reflect.Interface {
					nv := reflect.New(want).Elem()
					nv.Set(v)
					v = nv
				}
			case convertible(v, want):
				v = v.Convert(want)
			default:
				return nil, fmt.Errorf("%w: %s argument %d: %T is not %v", ErrBadArgument, m.name, i+1, a, want)
			}
		}
		c, err := codec.CopyValue(v)
		if err != nil {
			return nil, fmt.Errorf("%w: %s argument %d: %w", ErrBadArgument, m.name, i+1, err)
		}
		vals[i] = c
	}
	return vals, nil
}

// convertible allows numeric conversions that keep the value.
func convertible(v reflect.Value, want reflect.Type) bool {
	if !v.Type().ConvertibleTo(want) {
		return false
	}
	isNum := func(k reflect.Kind) bool {
		return k >= reflect.Int && k <= reflect.Float64
	}
	if v.Kind() == want.Kind() {
		return true // named types of the same kind
	}
	if !isNum(v.Kind()) || !isNum(want.Kind()) {
		return false
	}
	back := v.Convert(want).Convert(v.Type())
	return back.Equal(v)
}
