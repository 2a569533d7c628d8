package durable

// Call0…Call4 and Do0…Do4 are one function per arity, since Go generics
// cannot range over argument lists; keep them identical in shape.

import "context"

// Call0 calls method m of the object behind s with 0 argument(s) and
// returns its result. m is a method expression such as (*Counter).Add, so
// the compiler checks the arguments and the result type. Arguments and the
// result are copied through the codec, as they would be across the network.
func Call0[T, R any](ctx context.Context, s *Stub[T], m func(*T, context.Context) (R, error)) (R, error) {
	var zero R
	var r R
	err := s.do(ctx, m, func(ctx context.Context, obj *T) error {
		var err error
		r, err = m(obj, ctx)
		return err
	})
	if err != nil {
		return zero, err
	}
	return copyResult(r, m)
}

// Do0 is Call0 for a method that returns only an error.
func Do0[T any](ctx context.Context, s *Stub[T], m func(*T, context.Context) error) error {
	return s.do(ctx, m, func(ctx context.Context, obj *T) error {
		return m(obj, ctx)
	})
}

// Call1 calls method m of the object behind s with 1 argument(s) and
// returns its result. m is a method expression such as (*Counter).Add, so
// the compiler checks the arguments and the result type. Arguments and the
// result are copied through the codec, as they would be across the network.
func Call1[T, A1, R any](ctx context.Context, s *Stub[T], m func(*T, context.Context, A1) (R, error), a1 A1) (R, error) {
	var zero R
	if err := copyArg(&a1, m, 1); err != nil {
		return zero, err
	}
	var r R
	err := s.do(ctx, m, func(ctx context.Context, obj *T) error {
		var err error
		r, err = m(obj, ctx, a1)
		return err
	})
	if err != nil {
		return zero, err
	}
	return copyResult(r, m)
}

// Do1 is Call1 for a method that returns only an error.
func Do1[T, A1 any](ctx context.Context, s *Stub[T], m func(*T, context.Context, A1) error, a1 A1) error {
	if err := copyArg(&a1, m, 1); err != nil {
		return err
	}
	return s.do(ctx, m, func(ctx context.Context, obj *T) error {
		return m(obj, ctx, a1)
	})
}

// Call2 calls method m of the object behind s with 2 argument(s) and
// returns its result. m is a method expression such as (*Counter).Add, so
// the compiler checks the arguments and the result type. Arguments and the
// result are copied through the codec, as they would be across the network.
func Call2[T, A1, A2, R any](ctx context.Context, s *Stub[T], m func(*T, context.Context, A1, A2) (R, error), a1 A1, a2 A2) (R, error) {
	var zero R
	if err := copyArg(&a1, m, 1); err != nil {
		return zero, err
	}
	if err := copyArg(&a2, m, 2); err != nil {
		return zero, err
	}
	var r R
	err := s.do(ctx, m, func(ctx context.Context, obj *T) error {
		var err error
		r, err = m(obj, ctx, a1, a2)
		return err
	})
	if err != nil {
		return zero, err
	}
	return copyResult(r, m)
}

// Do2 is Call2 for a method that returns only an error.
func Do2[T, A1, A2 any](ctx context.Context, s *Stub[T], m func(*T, context.Context, A1, A2) error, a1 A1, a2 A2) error {
	if err := copyArg(&a1, m, 1); err != nil {
		return err
	}
	if err := copyArg(&a2, m, 2); err != nil {
		return err
	}
	return s.do(ctx, m, func(ctx context.Context, obj *T) error {
		return m(obj, ctx, a1, a2)
	})
}

// Call3 calls method m of the object behind s with 3 argument(s) and
// returns its result. m is a method expression such as (*Counter).Add, so
// the compiler checks the arguments and the result type. Arguments and the
// result are copied through the codec, as they would be across the network.
func Call3[T, A1, A2, A3, R any](ctx context.Context, s *Stub[T], m func(*T, context.Context, A1, A2, A3) (R, error), a1 A1, a2 A2, a3 A3) (R, error) {
	var zero R
	if err := copyArg(&a1, m, 1); err != nil {
		return zero, err
	}
	if err := copyArg(&a2, m, 2); err != nil {
		return zero, err
	}
	if err := copyArg(&a3, m, 3); err != nil {
		return zero, err
	}
	var r R
	err := s.do(ctx, m, func(ctx context.Context, obj *T) error {
		var err error
		r, err = m(obj, ctx, a1, a2, a3)
		return err
	})
	if err != nil {
		return zero, err
	}
	return copyResult(r, m)
}

// Do3 is Call3 for a method that returns only an error.
func Do3[T, A1, A2, A3 any](ctx context.Context, s *Stub[T], m func(*T, context.Context, A1, A2, A3) error, a1 A1, a2 A2, a3 A3) error {
	if err := copyArg(&a1, m, 1); err != nil {
		return err
	}
	if err := copyArg(&a2, m, 2); err != nil {
		return err
	}
	if err := copyArg(&a3, m, 3); err != nil {
		return err
	}
	return s.do(ctx, m, func(ctx context.Context, obj *T) error {
		return m(obj, ctx, a1, a2, a3)
	})
}

// Call4 calls method m of the object behind s with 4 argument(s) and
// returns its result. m is a method expression such as (*Counter).Add, so
// the compiler checks the arguments and the result type. Arguments and the
// result are copied through the codec, as they would be across the network.
func Call4[T, A1, A2, A3, A4, R any](ctx context.Context, s *Stub[T], m func(*T, context.Context, A1, A2, A3, A4) (R, error), a1 A1, a2 A2, a3 A3, a4 A4) (R, error) {
	var zero R
	if err := copyArg(&a1, m, 1); err != nil {
		return zero, err
	}
	if err := copyArg(&a2, m, 2); err != nil {
		return zero, err
	}
	if err := copyArg(&a3, m, 3); err != nil {
		return zero, err
	}
	if err := copyArg(&a4, m, 4); err != nil {
		return zero, err
	}
	var r R
	err := s.do(ctx, m, func(ctx context.Context, obj *T) error {
		var err error
		r, err = m(obj, ctx, a1, a2, a3, a4)
		return err
	})
	if err != nil {
		return zero, err
	}
	return copyResult(r, m)
}

// Do4 is Call4 for a method that returns only an error.
func Do4[T, A1, A2, A3, A4 any](ctx context.Context, s *Stub[T], m func(*T, context.Context, A1, A2, A3, A4) error, a1 A1, a2 A2, a3 A3, a4 A4) error {
	if err := copyArg(&a1, m, 1); err != nil {
		return err
	}
	if err := copyArg(&a2, m, 2); err != nil {
		return err
	}
	if err := copyArg(&a3, m, 3); err != nil {
		return err
	}
	if err := copyArg(&a4, m, 4); err != nil {
		return err
	}
	return s.do(ctx, m, func(ctx context.Context, obj *T) error {
		return m(obj, ctx, a1, a2, a3, a4)
	})
}
