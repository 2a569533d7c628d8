package durable_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/durable-go/durable"
)

type Payload struct {
	Name  string
	Tags  []string
	When  time.Time
	Blob  []byte
	Inner *Payload
	Extra map[string]any
}

type Echo struct {
	last *Payload
}

func newEcho(st *durable.State, _ struct{}) (*Echo, error) { return &Echo{}, nil }

// Keep stores p and returns it.
func (e *Echo) Keep(ctx context.Context, p *Payload) (*Payload, error) {
	e.last = p
	return p, nil
}

// MutateKept changes the stored payload in place.
func (e *Echo) MutateKept(ctx context.Context) error {
	e.last.Tags[0] = "changed-inside"
	return nil
}

func (e *Echo) Sum(ctx context.Context, a int64, b float64, c uint8) (float64, error) {
	return float64(a) + b + float64(c), nil
}

func (e *Echo) Any(ctx context.Context, v any) (any, error) { return v, nil }

func (e *Echo) Many(ctx context.Context, a, b, c, d, f string) (string, error) {
	return a + b + c + d + f, nil
}

func TestRPC_CopySemantics(t *testing.T) {
	rt := openRuntime(t, durable.Options{Durability: durable.NoSync})
	ns := durable.MustRegister(rt, "Echo", newEcho, struct{}{})
	stub := ns.GetByName("e")
	ctx := t.Context()
	when := time.Date(2026, 11, 27, 3, 4, 5, 6, time.UTC)
	in := &Payload{Name: "p", Tags: []string{"a", "b"}, When: when, Blob: []byte{1, 2}, Inner: &Payload{Name: "inner"},
		Extra: map[string]any{"n": int64(7), "s": "x"}}
	out, err := durable.Call1(ctx, stub, (*Echo).Keep, in)
	if err != nil {
		t.Fatal(err)
	}
	if out == in || &out.Tags[0] == &in.Tags[0] {
		t.Fatal("result shares memory with the argument")
	}
	if out.Name != "p" || !out.When.Equal(when) || out.Inner.Name != "inner" || string(out.Blob) != "\x01\x02" || out.Extra["n"] != int64(7) {
		t.Fatalf("round trip lost data: %+v", out)
	}
	// The caller mutating its value does not reach the object, nor the
	// other way round.
	in.Tags[0] = "changed-outside"
	if err := durable.Do0(ctx, stub, (*Echo).MutateKept); err != nil {
		t.Fatal(err)
	}
	if in.Tags[0] != "changed-outside" || out.Tags[0] != "a" {
		t.Fatalf("shared memory: in=%v out=%v", in.Tags, out.Tags)
	}
	again, _ := durable.Call1(ctx, stub, (*Echo).Keep, &Payload{Tags: []string{"z"}})
	if again.Tags[0] != "z" {
		t.Fatal(again.Tags)
	}
}

func TestRPC_Dynamic(t *testing.T) {
	rt := openRuntime(t, durable.Options{Durability: durable.NoSync})
	ns := durable.MustRegister(rt, "Echo", newEcho, struct{}{})
	stub := ns.GetByName("e")
	ctx := t.Context()
	v, err := stub.Call(ctx, "Sum", 1, 2, 3) // untyped constants convert losslessly
	if err != nil || v.(float64) != 6 {
		t.Fatalf("Sum = %v, %v", v, err)
	}
	v, err = stub.Call(ctx, "Many", "a", "b", "c", "d", "e")
	if err != nil || v.(string) != "abcde" {
		t.Fatalf("Many = %v, %v", v, err)
	}
	for _, tc := range []struct {
		name   string
		method string
		args   []any
		want   error
	}{
		{"UnknownMethod", "Nope", nil, durable.ErrNoMethod},
		{"ReservedName", "Fetch", nil, durable.ErrNoMethod},
		{"TooFewArgs", "Sum", []any{1}, durable.ErrBadArgument},
		{"WrongType", "Sum", []any{"1", 2, 3}, durable.ErrBadArgument},
		{"LossyConversion", "Sum", []any{1, 2, 300}, durable.ErrBadArgument},
		{"NilForInt", "Sum", []any{nil, 2, 3}, durable.ErrBadArgument},
		{"FuncInAny", "Any", []any{func() {}}, durable.ErrBadArgument},
		{"ChanInAny", "Any", []any{make(chan int)}, durable.ErrBadArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := stub.Call(ctx, tc.method, tc.args...)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestRPC_TypedUnsupportedValue(t *testing.T) {
	rt := openRuntime(t, durable.Options{Durability: durable.NoSync})
	ns := durable.MustRegister(rt, "Echo", newEcho, struct{}{})
	_, err := durable.Call1(t.Context(), ns.GetByName("e"), (*Echo).Any, any(func() {}))
	if !errors.Is(err, durable.ErrBadArgument) || !strings.Contains(err.Error(), "Any") {
		t.Fatalf("err = %v, want ErrBadArgument naming the method", err)
	}
}

type BadArgs struct{}

func (b *BadArgs) Send(ctx context.Context, c chan int) error { return nil }

type BadResult struct{}

func (b *BadResult) Get(ctx context.Context) (func(), error) { return nil, nil }

func TestRegister_RejectsUnsupportedSignatures(t *testing.T) {
	rt := openRuntime(t, durable.Options{Durability: durable.NoSync})
	if _, err := durable.Register(rt, "BadArgs", func(*durable.State, struct{}) (*BadArgs, error) { return &BadArgs{}, nil }, struct{}{}); err == nil ||
		!strings.Contains(err.Error(), "Send") {
		t.Fatalf("Register with a chan argument: err = %v", err)
	}
	if _, err := durable.Register(rt, "BadResult", func(*durable.State, struct{}) (*BadResult, error) { return &BadResult{}, nil }, struct{}{}); err == nil ||
		!strings.Contains(err.Error(), "Get") {
		t.Fatalf("Register with a func result: err = %v", err)
	}
	for _, name := range []string{"", "1abc", "a/b", strings.Repeat("a", 64), "with space"} {
		if _, err := durable.Register(rt, name, newEcho, struct{}{}); err == nil {
			t.Errorf("Register(%q) succeeded", name)
		}
	}
	durable.MustRegister(rt, "Dup", newEcho, struct{}{})
	if _, err := durable.Register(rt, "Dup", newEcho, struct{}{}); err == nil {
		t.Error("duplicate namespace accepted")
	}
}

func TestRPC_NestedErrorKeepsFlags(t *testing.T) {
	rt := openRuntime(t, durable.Options{Durability: durable.NoSync, MaxQueue: 1})
	e := &blockEnv{entered: make(chan struct{}), release: make(chan struct{})}
	blockers := durable.MustRegister(rt, "Blocker", newBlocker, e)
	relays := durable.MustRegister(rt, "Relay", func(*durable.State, struct{}) (*Relay, error) { return &Relay{b: blockers}, nil }, struct{}{})
	go durable.Do0(context.Background(), blockers.GetByName("b"), (*Blocker).Hold)
	<-e.entered
	// Fill the queue of 1: retry until the call is queued, not refused.
	nopDone := make(chan struct{})
	go func() {
		defer close(nopDone)
		for durable.IsOverloaded(durable.Do0(context.Background(), blockers.GetByName("b"), (*Blocker).Nop)) {
		}
	}()
	// Once the Nop call sits in the queue, Forward's own call is refused.
	var err error
	for range 500 {
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
		err = durable.Do0(ctx, relays.GetByName("r"), (*Relay).Forward)
		cancel()
		if durable.IsOverloaded(err) {
			break
		}
	}
	close(e.release)
	<-nopDone
	var re *durable.RemoteError
	if !errors.As(err, &re) || !durable.IsOverloaded(err) {
		t.Fatalf("err = %v, want a RemoteError that still says overloaded", err)
	}
}

type Relay struct{ b *durable.Namespace[Blocker] }

func (r *Relay) Forward(ctx context.Context) error {
	return durable.Do0(ctx, r.b.GetByName("b"), (*Blocker).Nop)
}
