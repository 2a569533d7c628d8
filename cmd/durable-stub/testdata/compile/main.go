package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"time"

	"github.com/durable-go/durable"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: compile data-dir")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("ok")
}

// check returns an error if got is not want.
func check(what string, got, want any) error {
	if !reflect.DeepEqual(got, want) {
		return fmt.Errorf("%s = %#v, want %#v", what, got, want)
	}
	return nil
}

// run calls the objects through the generated stubs.
func run(dir string) (err error) {
	ctx := context.Background()
	rt, err := durable.Open(durable.Options{Dir: dir, Durability: durable.NoSync})
	if err != nil {
		return err
	}
	defer func() {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		err = errors.Join(err, rt.Shutdown(ctx))
	}()
	counters, err := durable.Register(rt, "Counter", NewCounter, Env{Step: 2})
	if err != nil {
		return err
	}
	ledgers, err := durable.Register(rt, "Ledger", newLedger, struct{}{})
	if err != nil {
		return err
	}

	a := CounterByName(counters, "a")
	var errs []error
	add := func(err error) { errs = append(errs, err) }

	n, err := a.Add(ctx, 1)
	add(check("Add(1)", [2]any{n, err}, [2]any{2, nil}))
	n, err = a.Add(ctx, 3)
	add(check("Add(3)", [2]any{n, err}, [2]any{8, nil}))
	n, err = a.Get(ctx)
	add(check("Get", [2]any{n, err}, [2]any{8, nil}))
	name, err := a.Name(ctx)
	add(check("Name", [2]any{name, err}, [2]any{"a", nil}))
	add(check("Reset", a.Reset(ctx), nil))
	n, err = NewCounterStub(counters.GetByName("a")).Get(ctx)
	add(check("Get after Reset", [2]any{n, err}, [2]any{0, nil}))

	pts, err := a.Move(ctx, Point{1, 2}, []Point{{3, 4}})
	add(check("Move", [2]any{pts, err}, [2]any{[]Point{{1, 2}, {3, 4}}, nil}))
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	t1, err := a.Later(ctx, t0, time.Hour)
	add(check("Later", [2]any{t1.Equal(t0.Add(time.Hour)), err}, [2]any{true, nil}))

	err = a.Fail(ctx, "nope")
	var re *durable.RemoteError
	if !errors.As(err, &re) || re.Message != "nope" || re.Method != "Fail" {
		add(fmt.Errorf("Fail error = %#v, want a RemoteError with message nope", err))
	}

	n, err = a.Sum5(ctx, 1, 2, 3, 4, 5)
	add(check("Sum5", [2]any{n, err}, [2]any{15, nil}))
	add(check("SetLabel", a.SetLabel(ctx, "ab", 1, 0, 0, 1, "!"), nil))
	label, err := a.Label(ctx)
	add(check("Label", [2]any{label, err}, [2]any{"abab!", nil}))
	v, err := a.Maybe(ctx, 1, 2, 3, 4, "")
	add(check("Maybe nil", [2]any{v, err}, [2]any{nil, nil}))
	v, err = a.Maybe(ctx, 1, 2, 3, 4, "x")
	add(check("Maybe x", [2]any{v, err}, [2]any{"x", nil}))
	p, err := a.Origin(ctx, 1, 2, 3, 4, 5)
	add(check("Origin", [2]any{p, err}, [2]any{(*Point)(nil), nil}))

	id := counters.NewUniqueID()
	b := CounterByID(counters, id)
	n, err = b.Add(ctx, 10)
	add(check("b.Add", [2]any{n, err}, [2]any{20, nil}))
	add(check("b.ID", b.Stub.ID().Equal(id), true))
	n, err = a.Get(ctx)
	add(check("a.Get after b.Add", [2]any{n, err}, [2]any{0, nil}))

	_, err = CounterByName(counters, "").Get(ctx)
	add(check("Get with an invalid name fails with ErrInvalidName", errors.Is(err, durable.ErrInvalidName), true))

	l := ledgerByName(ledgers, "l")
	for i, e := range []string{"x", "y"} {
		n, err := l.Append(ctx, e)
		add(check("Append", [2]any{n, err}, [2]any{i + 1, nil}))
	}
	return errors.Join(errs...)
}
