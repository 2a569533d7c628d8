// Package codec is the one value codec of durable: RPC arguments and
// results, KV values and WebSocket attachments all pass through it, so a
// value means the same thing in memory, on disk and on the wire.
//
// The encoding is CBOR (RFC 8949) with these rules:
//   - structs encode their exported fields (honouring `cbor` and then `json`
//     field tags); unexported fields are not copied;
//   - time.Time encodes as an RFC 3339 string with nanoseconds under tag 0,
//     so the instant and the UTC offset round-trip exactly (the monotonic
//     reading and the Location's name do not);
//   - []byte encodes as a byte string; integers keep their sign; decoding
//     into an interface gives int64, uint64 (only past MaxInt64), float64,
//     string, []byte, bool, nil, []any, map[string]any or time.Time;
//   - channels, functions, complex numbers and unsafe pointers are refused.
package codec

import (
	"fmt"
	"reflect"
	"sync"
	"time"

	"github.com/fxamacker/cbor/v2"
)

var (
	encMode cbor.EncMode
	decMode cbor.DecMode
)

func init() {
	var err error
	encMode, err = cbor.EncOptions{
		Time:    cbor.TimeRFC3339Nano,
		TimeTag: cbor.EncTagRequired,
	}.EncMode()
	if err != nil {
		panic(err)
	}
	decMode, err = cbor.DecOptions{
		DefaultMapType:        reflect.TypeFor[map[string]any](),
		IntDec:                cbor.IntDecConvertSignedOrFail,
		MaxArrayElements:      1 << 24,
		MaxMapPairs:           1 << 24,
		DefaultByteStringType: reflect.TypeFor[[]byte](),
	}.DecMode()
	if err != nil {
		panic(err)
	}
}

// Marshal encodes v.
func Marshal(v any) ([]byte, error) {
	b, err := encMode.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("codec: encode %T: %w", v, err)
	}
	return b, nil
}

// Unmarshal decodes data into the value pointed to by v.
func Unmarshal(data []byte, v any) error {
	if err := decMode.Unmarshal(data, v); err != nil {
		return fmt.Errorf("codec: decode into %T: %w", v, err)
	}
	return nil
}

// UnsupportedTypeError reports a type the codec cannot carry.
type UnsupportedTypeError struct {
	Type reflect.Type
	Path string // where inside the type, e.g. "Field.Sub[]"
}

func (e *UnsupportedTypeError) Error() string {
	if e.Path == "" {
		return fmt.Sprintf("codec: type %v cannot be encoded", e.Type)
	}
	return fmt.Sprintf("codec: type %v cannot be encoded (at %s)", e.Type, e.Path)
}

type typeInfo struct {
	err      error
	needCopy bool
}

var typeCache sync.Map // reflect.Type -> typeInfo

var timeType = reflect.TypeFor[time.Time]()

// Check reports whether values of type t can be encoded: nil, or an
// *UnsupportedTypeError naming the first offending part.
func Check(t reflect.Type) error { return info(t).err }

// NeedsCopy reports whether values of type t may share memory (pointers,
// slices, maps, interfaces), so that passing one across an object boundary
// must copy it to keep copy semantics. Plain values (numbers, strings,
// structs and arrays of them) are copied by assignment.
func NeedsCopy(t reflect.Type) bool { return info(t).needCopy }

func info(t reflect.Type) typeInfo {
	if v, ok := typeCache.Load(t); ok {
		return v.(typeInfo)
	}
	var ti typeInfo
	ti.needCopy, ti.err = walk(t, "", map[reflect.Type]bool{})
	typeCache.Store(t, ti)
	return ti
}

func walk(t reflect.Type, path string, seen map[reflect.Type]bool) (needCopy bool, err error) {
	if t == timeType {
		return false, nil
	}
	switch t.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.String:
		return false, nil
	case reflect.Complex64, reflect.Complex128, reflect.Chan, reflect.Func, reflect.UnsafePointer:
		return false, &UnsupportedTypeError{Type: t, Path: path}
	case reflect.Interface:
		return true, nil // checked per value when encoded
	case reflect.Pointer, reflect.Slice:
		if seen[t] {
			return true, nil
		}
		seen[t] = true
		_, err := walk(t.Elem(), path+"[]", seen)
		return true, err
	case reflect.Map:
		if _, err := walk(t.Key(), path+"[key]", seen); err != nil {
			return true, err
		}
		_, err := walk(t.Elem(), path+"[]", seen)
		return true, err
	case reflect.Array:
		return walk(t.Elem(), path+"[]", seen)
	case reflect.Struct:
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			p := f.Name
			if path != "" {
				p = path + "." + f.Name
			}
			nc, err := walk(f.Type, p, seen)
			if err != nil {
				return true, err
			}
			needCopy = needCopy || nc
		}
		return needCopy, nil
	}
	return false, &UnsupportedTypeError{Type: t, Path: path}
}

// Copy returns a deep copy of v made through the codec, so the copy is
// exactly what the receiving side would decode from the wire. Values whose
// type needs no copy are returned as they are.
func Copy[T any](v T) (T, error) {
	t := reflect.TypeFor[T]()
	ti := info(t)
	if ti.err != nil {
		var zero T
		return zero, ti.err
	}
	if !ti.needCopy {
		return v, nil
	}
	b, err := Marshal(v)
	if err != nil {
		var zero T
		return zero, err
	}
	var out T
	if err := Unmarshal(b, &out); err != nil {
		var zero T
		return zero, err
	}
	return out, nil
}

// CopyValue is Copy for a reflect.Value; it returns a new value of the same
// type.
func CopyValue(v reflect.Value) (reflect.Value, error) {
	t := v.Type()
	ti := info(t)
	if ti.err != nil {
		return reflect.Value{}, ti.err
	}
	if !ti.needCopy {
		return v, nil
	}
	b, err := Marshal(v.Interface())
	if err != nil {
		return reflect.Value{}, err
	}
	out := reflect.New(t)
	if err := Unmarshal(b, out.Interface()); err != nil {
		return reflect.Value{}, err
	}
	return out.Elem(), nil
}
