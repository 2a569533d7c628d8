package storage

import (
	"fmt"
	"math"
	"reflect"

	"zombiezen.com/go/sqlite"
)

// columnValue returns column i of the current row as int64, float64,
// string, []byte (a copy) or nil.
func columnValue(s *sqlite.Stmt, i int) any {
	switch s.ColumnType(i) {
	case sqlite.TypeInteger:
		return s.ColumnInt64(i)
	case sqlite.TypeFloat:
		return s.ColumnFloat(i)
	case sqlite.TypeText:
		return s.ColumnText(i)
	case sqlite.TypeBlob:
		return columnBytes(s, i)
	}
	return nil
}

// ColumnValue is columnValue for packages that read databases storage
// made through connections of their own (internal/inspect).
func ColumnValue(s *sqlite.Stmt, i int) any { return columnValue(s, i) }

func columnBytes(s *sqlite.Stmt, i int) []byte {
	b := make([]byte, s.ColumnLen(i))
	s.ColumnBytes(i, b)
	return b
}

// sqlType names the SQLite type of a value from columnValue.
func sqlType(v any) string {
	switch v.(type) {
	case int64:
		return "INTEGER"
	case float64:
		return "REAL"
	case string:
		return "TEXT"
	case []byte:
		return "BLOB"
	}
	return "NULL"
}

// scanColumn stores column i of the current row in dest.
func scanColumn(s *sqlite.Stmt, i int, dest any) error {
	// Fast paths for the common destinations, without boxing the value.
	t := s.ColumnType(i)
	switch d := dest.(type) {
	case *int64:
		if t == sqlite.TypeInteger {
			*d = s.ColumnInt64(i)
			return nil
		}
	case *int:
		if t == sqlite.TypeInteger {
			n := s.ColumnInt64(i)
			if int64(int(n)) == n {
				*d = int(n)
				return nil
			}
		}
	case *string:
		if t == sqlite.TypeText {
			*d = s.ColumnText(i)
			return nil
		}
	case *float64:
		if t == sqlite.TypeFloat {
			*d = s.ColumnFloat(i)
			return nil
		}
	case *[]byte:
		if t == sqlite.TypeBlob || t == sqlite.TypeText {
			*d = columnBytes(s, i)
			return nil
		}
	}
	return scanValue(i, columnValue(s, i), dest)
}

// scanValue stores v, a value from columnValue, in dest. v is not
// retained: []byte values are copied.
func scanValue(i int, v any, dest any) error {
	fail := func(reason string) error {
		return &ScanError{Column: i, From: sqlType(v), To: fmt.Sprintf("%T", dest), Reason: reason}
	}
	switch d := dest.(type) {
	case nil:
		return &ArgError{Arg: fmt.Sprintf("dest[%d]", i), Reason: "nil"}
	case *any:
		if b, ok := v.([]byte); ok {
			v = append([]byte{}, b...)
		}
		*d = v
		return nil
	case *[]byte:
		switch x := v.(type) {
		case []byte:
			*d = append([]byte{}, x...)
			return nil
		case string:
			*d = []byte(x)
			return nil
		case nil:
			*d = nil
			return nil
		}
		return fail("")
	}
	rv := reflect.ValueOf(dest)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return &ArgError{Arg: fmt.Sprintf("dest[%d]", i), Reason: fmt.Sprintf("%T is not a non-nil pointer", dest)}
	}
	e := rv.Elem()
	if e.Kind() == reflect.Pointer {
		// Pointer to pointer: nil for NULL, else allocate and scan.
		if v == nil {
			e.SetZero()
			return nil
		}
		n := reflect.New(e.Type().Elem())
		if err := scanValue(i, v, n.Interface()); err != nil {
			if se, ok := err.(*ScanError); ok {
				se.To = fmt.Sprintf("%T", dest)
			}
			return err
		}
		e.Set(n)
		return nil
	}
	if v == nil {
		return fail("NULL needs *any, *[]byte or a pointer to a pointer")
	}
	switch e.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := intValue(v)
		if !ok {
			return fail("")
		}
		if e.OverflowInt(n) {
			return fail(fmt.Sprintf("%d out of range", n))
		}
		e.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		n, ok := intValue(v)
		if !ok {
			return fail("")
		}
		if n < 0 || e.OverflowUint(uint64(n)) {
			return fail(fmt.Sprintf("%d out of range", n))
		}
		e.SetUint(uint64(n))
	case reflect.Float32, reflect.Float64:
		switch x := v.(type) {
		case float64:
			e.SetFloat(x)
		case int64:
			e.SetFloat(float64(x))
		default:
			return fail("")
		}
	case reflect.Bool:
		x, ok := v.(int64)
		if !ok {
			return fail("")
		}
		e.SetBool(x != 0)
	case reflect.String:
		switch x := v.(type) {
		case string:
			e.SetString(x)
		case []byte:
			e.SetString(string(x))
		default:
			return fail("")
		}
	case reflect.Slice:
		if e.Type().Elem().Kind() != reflect.Uint8 {
			return &ArgError{Arg: fmt.Sprintf("dest[%d]", i), Reason: fmt.Sprintf("unsupported destination type %T", dest)}
		}
		switch x := v.(type) {
		case []byte:
			e.SetBytes(append([]byte{}, x...))
		case string:
			e.SetBytes([]byte(x))
		default:
			return fail("")
		}
	default:
		return &ArgError{Arg: fmt.Sprintf("dest[%d]", i), Reason: fmt.Sprintf("unsupported destination type %T", dest)}
	}
	return nil
}

// intValue returns an INTEGER value, or a REAL one that is integral.
func intValue(v any) (int64, bool) {
	switch x := v.(type) {
	case int64:
		return x, true
	case float64:
		if x != math.Trunc(x) || x < math.MinInt64 || x >= math.MaxInt64 {
			return 0, false
		}
		return int64(x), true
	}
	return 0, false
}
