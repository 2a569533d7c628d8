// Package engine is the registry of live objects. For each object ID it
// keeps a slot with the object's turn (a FIFO lock handed out one holder at
// a time, bounded so that a full queue fails fast with ErrOverloaded) and,
// while the object is live, its Activation.
//
// The engine owns no goroutine per object. A call runs its handler on the
// caller's goroutine once it holds the turn; an idle object costs nothing
// but its slot, and an evicted one not even that. Eviction runs from one
// clock timer (Sweep), so a fake clock drives it in tests.
//
// # Usage
//
// The root package calls, for every event:
//
//	o, err := e.Enter(key)        // pin the slot
//	defer o.Leave()
//	tok, err := o.Acquire(ctx, false)
//	a := o.Activation()           // construct and SetActivation if nil
//	... run the handler, commit ...
//	o.Release(tok)
//	... wait for durability, reply ...
//
// A handler that waits on another object releases its turn and reacquires
// it with front=true. Reset drops a failed activation; ForceReset takes the
// turn away from a holder that overran its deadline.
package engine
