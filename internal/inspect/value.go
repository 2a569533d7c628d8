package inspect

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Value is one SQL value: nil, int64, float64, string or []byte, as
// SQLite stores it. In JSON it keeps its SQLite type, so that an export
// imports back exactly:
//
//	NULL     null
//	INTEGER  a number without fraction or exponent: 42
//	REAL     a number with a fraction or an exponent: 42.0, 1e+300;
//	         {"real": "+Inf"} or {"real": "-Inf"} for infinities
//	TEXT     a string: "hello"
//	BLOB     {"base64": "aGVsbG8="}
type Value struct {
	V any
}

// MarshalJSON encodes v as described on Value.
func (v Value) MarshalJSON() ([]byte, error) {
	switch x := v.V.(type) {
	case nil:
		return []byte("null"), nil
	case int64:
		return strconv.AppendInt(nil, x, 10), nil
	case float64:
		switch {
		case math.IsInf(x, 1):
			return []byte(`{"real":"+Inf"}`), nil
		case math.IsInf(x, -1):
			return []byte(`{"real":"-Inf"}`), nil
		case math.IsNaN(x): // SQLite stores NaN as NULL; never read back
			return []byte("null"), nil
		}
		b := strconv.AppendFloat(nil, x, 'g', -1, 64)
		if !bytes.ContainsAny(b, ".eE") {
			b = append(b, ".0"...)
		}
		return b, nil
	case string:
		return json.Marshal(x)
	case []byte:
		return json.Marshal(map[string]string{"base64": base64.StdEncoding.EncodeToString(x)})
	}
	return nil, fmt.Errorf("inspect: SQL value of type %T", v.V)
}

// UnmarshalJSON decodes the form MarshalJSON writes.
func (v *Value) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) == 0:
		return fmt.Errorf("inspect: empty SQL value")
	case string(b) == "null":
		v.V = nil
	case b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		v.V = s
	case b[0] == '{':
		var o struct {
			Base64 *string `json:"base64"`
			Real   *string `json:"real"`
		}
		if err := json.Unmarshal(b, &o); err != nil {
			return err
		}
		switch {
		case o.Base64 != nil:
			raw, err := base64.StdEncoding.DecodeString(*o.Base64)
			if err != nil {
				return fmt.Errorf("inspect: BLOB value: %w", err)
			}
			v.V = raw
		case o.Real != nil && *o.Real == "+Inf":
			v.V = math.Inf(1)
		case o.Real != nil && *o.Real == "-Inf":
			v.V = math.Inf(-1)
		default:
			return fmt.Errorf("inspect: SQL value %s: want {\"base64\": ...} or {\"real\": \"+Inf\"|\"-Inf\"}", b)
		}
	default:
		s := string(b)
		if strings.ContainsAny(s, ".eE") {
			f, err := strconv.ParseFloat(s, 64)
			if err != nil {
				return fmt.Errorf("inspect: REAL value %s: %w", s, err)
			}
			v.V = f
			return nil
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("inspect: INTEGER value %s: %w", s, err)
		}
		v.V = n
	}
	return nil
}

// String formats v for a table: NULL, numbers, text as is, BLOBs as
// x'hex' (long ones shortened).
func (v Value) String() string {
	switch x := v.V.(type) {
	case nil:
		return "NULL"
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		b, _ := v.MarshalJSON()
		if b[0] == '{' {
			if x > 0 {
				return "+Inf"
			}
			return "-Inf"
		}
		return string(b)
	case string:
		return x
	case []byte:
		const show = 32
		if len(x) > show {
			return fmt.Sprintf("x'%x'... (%d bytes)", x[:show], len(x))
		}
		return fmt.Sprintf("x'%x'", x)
	}
	return fmt.Sprint(v.V)
}
