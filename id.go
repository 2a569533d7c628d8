package durable

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"unicode/utf8"
)

// MaxNameLength is the longest object name, in bytes, that IDFromName and
// GetByName accept.
const MaxNameLength = 1024

// ID identifies one object of a namespace. It is 32 bytes, printed by String
// as 64 lowercase hexadecimal characters. The second half of the bytes is a
// MAC over the first half keyed by the namespace, so IDFromString rejects
// typos and IDs of other namespaces. An ID made by IDFromName carries the
// name it came from.
//
// The zero ID is invalid. IDs are comparable with == only through Equal,
// since the carried name does not take part in identity.
type ID struct {
	raw  [32]byte
	ns   string
	name string
}

// String returns the 64-character lowercase hexadecimal form.
func (id ID) String() string { return hex.EncodeToString(id.raw[:]) }

// Name returns the name the ID was derived from, and whether it has one.
// IDs from NewUniqueID have none; an ID parsed by IDFromString has one only
// if the object stored it (see State.Name).
func (id ID) Name() (string, bool) { return id.name, id.name != "" }

// Namespace returns the name of the namespace the ID belongs to.
func (id ID) Namespace() string { return id.ns }

// Equal reports whether two IDs name the same object.
func (id ID) Equal(other ID) bool { return id.raw == other.raw && id.ns == other.ns }

// IsZero reports whether id is the zero ID.
func (id ID) IsZero() bool { return id.ns == "" && id.raw == [32]byte{} }

// Sentinel errors wrapped by *IDError and by name validation.
var (
	// ErrMalformedID means the string is not 64 lowercase hex characters.
	ErrMalformedID = errors.New("durable: malformed object ID")
	// ErrForeignID means the ID's MAC does not match the namespace: it was
	// made by another namespace, or mistyped.
	ErrForeignID = errors.New("durable: object ID not valid for this namespace")
	// ErrInvalidName means an object name is empty, too long, not UTF-8 or
	// contains a NUL byte.
	ErrInvalidName = errors.New("durable: invalid object name")
)

// IDError reports why a string is not a valid ID of a namespace.
// errors.Is matches ErrMalformedID or ErrForeignID.
type IDError struct {
	Namespace string
	Input     string // truncated to 80 bytes
	Reason    string
	Err       error // ErrMalformedID or ErrForeignID
}

func (e *IDError) Error() string {
	return fmt.Sprintf("durable: namespace %q: ID %q: %s", e.Namespace, e.Input, e.Reason)
}

// Unwrap returns the sentinel.
func (e *IDError) Unwrap() error { return e.Err }

// idKey is a namespace's MAC key.
type idKey [32]byte

func newIDKey(namespace string) idKey {
	return sha256.Sum256([]byte("durable/namespace/v1\x00" + namespace))
}

func (k *idKey) mac(first16 []byte) []byte {
	m := hmac.New(sha256.New, k[:])
	m.Write(first16)
	return m.Sum(nil)[:16]
}

func (k *idKey) fromName(ns, name string) (ID, error) {
	if err := checkName(name); err != nil {
		return ID{}, err
	}
	m := hmac.New(sha256.New, k[:])
	m.Write([]byte("name\x00"))
	m.Write([]byte(name))
	id := ID{ns: ns, name: name}
	copy(id.raw[:16], m.Sum(nil)[:16])
	copy(id.raw[16:], k.mac(id.raw[:16]))
	return id, nil
}

func (k *idKey) unique(ns string) ID {
	id := ID{ns: ns}
	if _, err := rand.Read(id.raw[:16]); err != nil {
		panic(fmt.Sprintf("durable: crypto/rand: %v", err)) // never fails on supported platforms
	}
	copy(id.raw[16:], k.mac(id.raw[:16]))
	return id
}

func (k *idKey) parse(ns, s string) (ID, error) {
	fail := func(reason string, err error) (ID, error) {
		in := s
		if len(in) > 80 {
			in = in[:80]
		}
		return ID{}, &IDError{Namespace: ns, Input: in, Reason: reason, Err: err}
	}
	if len(s) != 64 {
		return fail(fmt.Sprintf("must be 64 hex digits, got %d characters", len(s)), ErrMalformedID)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return fail(fmt.Sprintf("character %d (%q) is not a lowercase hex digit", i, c), ErrMalformedID)
		}
	}
	id := ID{ns: ns}
	if _, err := hex.Decode(id.raw[:], []byte(s)); err != nil {
		return fail(err.Error(), ErrMalformedID)
	}
	if !hmac.Equal(id.raw[16:], k.mac(id.raw[:16])) {
		return fail("not valid for this namespace", ErrForeignID)
	}
	return id, nil
}

func checkName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty", ErrInvalidName)
	case len(name) > MaxNameLength:
		return fmt.Errorf("%w: %d bytes, the limit is %d", ErrInvalidName, len(name), MaxNameLength)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: not valid UTF-8", ErrInvalidName)
	}
	for i := 0; i < len(name); i++ {
		if name[i] == 0 {
			return fmt.Errorf("%w: contains a NUL byte", ErrInvalidName)
		}
	}
	return nil
}
