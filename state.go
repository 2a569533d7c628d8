package durable

import (
	"context"
	"time"
)

// MaxWaitUntil bounds how long a WaitUntil function keeps its object in
// memory (Cloudflare: 15 minutes); its ctx is cancelled then.
const MaxWaitUntil = 15 * time.Minute

// State is an object's handle on the runtime: its ID, its storage, and the
// controls over its turns. The constructor receives it; keep it in the
// object. Its methods are safe to call from the object's handlers.
type State struct {
	a *activation
}

// ID returns the object's ID. When the object was reached by name, the ID
// carries that name (see Name).
func (s *State) ID() ID { return s.a.id }

// Name returns the name the object was addressed by, if any.
func (s *State) Name() (string, bool) { return s.a.id.Name() }

// Namespace returns the object's namespace name.
func (s *State) Namespace() string { return s.a.c.name }

// BlockConcurrencyWhile runs fn while no other event may reach the object,
// not even while fn waits on another object (which it may not do when that
// object calls back: the call would wait for fn). ctx must be the handler's
// ctx. If fn returns an error or panics, or runs past
// Options.BlockConcurrencyTimeout (30 s by default), the object is reset
// once the handler returns (at once for a timeout), and the error is
// returned.
//
// Constructors already run under these rules; use it in handlers for
// one-off work such as migrating data, never on every call: it serialises
// the object's calls end to end.
func (s *State) BlockConcurrencyWhile(ctx context.Context, fn func(ctx context.Context) error) error {
	t := turnFrom(ctx)
	if t == nil || t.a != s.a {
		return ErrNoTurn
	}
	return t.blockWhile(ctx, fn)
}

// WaitUntil runs fn in the background, owned by the runtime, and keeps the
// object in memory until fn returns (at most MaxWaitUntil). fn runs outside
// the object's turns: to touch storage it must call the object through a
// stub. Its ctx is cancelled when the object is reset or the runtime shuts
// down.
func (s *State) WaitUntil(fn func(ctx context.Context)) {
	a := s.a
	a.pending.Add(1)
	ok := a.c.rt.goBackground(func(context.Context) {
		defer a.pending.Add(-1)
		ctx, cancel := context.WithTimeout(a.ctx, MaxWaitUntil)
		defer cancel()
		fn(ctx)
	})
	if !ok {
		a.pending.Add(-1)
	}
}

// Abort resets the object: its uncommitted writes are discarded, its memory
// is dropped and the next event constructs it again. Called from a handler
// it does not return (it unwinds the handler with a panic the runtime
// recovers), and the caller gets an error wrapping ErrObjectReset. Called
// elsewhere (a WaitUntil function) it takes effect before the next event.
func (s *State) Abort(reason string) {
	a := s.a
	a.mu.Lock()
	inTurn := a.turn != nil
	a.mu.Unlock()
	if inTurn {
		panic(abortSignal{reason: reason})
	}
	a.setBroken(&abortError{reason: reason})
}
