package durabletest

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/durable-go/durable"
	"github.com/durable-go/durable/internal/hook"
)

// errNilStub is returned for a nil stub or namespace.
var errNilStub = errors.New("durabletest: nil stub")

// target returns what the hooks need to reach the object behind stub.
func target[T any](stub *durable.Stub[T]) (rt any, ns string, id any, err error) {
	if stub == nil {
		return nil, "", nil, errNilStub
	}
	return hook.Target(stub)
}

// RunIn runs fn as one turn of the object behind stub, handing it the
// object itself (not a copy) and its State, like Cloudflare's
// runInDurableObject. The object is constructed first if it is not in
// memory. fn runs as a handler does: no other event reaches the object
// meanwhile, ctx is the handler's ctx (pass it to calls fn makes), and its
// storage writes form the turn's implicit transaction. They are committed
// and durable when RunIn returns nil; if fn returns an error they are rolled
// back and RunIn returns that error as it is. If fn panics or calls
// State.Abort, the object is reset and RunIn returns a *durable.RemoteError
// (Panic set) or an error wrapping durable.ErrObjectReset.
//
// Keep neither obj nor st past fn: outside its turns the object may be
// running another event, or evicted.
func RunIn[T any](ctx context.Context, stub *durable.Stub[T], fn func(ctx context.Context, obj *T, st *durable.State) error) error {
	rt, ns, id, err := target(stub)
	if err != nil {
		return err
	}
	return hook.RunIn(ctx, rt, ns, id, func(ctx context.Context, inst, state any) error {
		return fn(ctx, inst.(*T), state.(*durable.State))
	})
}

// FireAlarm runs the alarm of the object behind stub now, whatever time it
// is set for, like Cloudflare's runDurableObjectAlarm. It reports whether
// an Alarm handler ran and succeeded: false, with a nil error, if the
// object has no alarm set. The delivery is a turn like a scheduled one:
// the object is constructed if needed, and once the handler succeeds the
// alarm is deleted, unless the handler set another. If the handler fails,
// FireAlarm returns its error (a *durable.RemoteError) and the alarm stays
// set for its time, its writes rolled back.
func FireAlarm[T any](ctx context.Context, stub *durable.Stub[T]) (bool, error) {
	rt, ns, id, err := target(stub)
	if err != nil {
		return false, err
	}
	return hook.FireAlarm(ctx, rt, ns, id)
}

// EvictMode says what happens to an evicted object's WebSockets.
type EvictMode int

const (
	// Hibernate leaves the object's WebSockets connected, as the
	// runtime's own eviction of an idle object does: the next message
	// constructs the object again.
	Hibernate EvictMode = iota
	// CloseWebSockets closes the object's WebSockets with code 1001
	// (going away), as a restart of the process would.
	CloseWebSockets
)

// String returns "Hibernate" or "CloseWebSockets".
func (m EvictMode) String() string {
	switch m {
	case Hibernate:
		return "Hibernate"
	case CloseWebSockets:
		return "CloseWebSockets"
	}
	return fmt.Sprintf("EvictMode(%d)", int(m))
}

// Evict takes the object behind stub out of memory, as the runtime does
// once it has been idle for Options.IdleTimeout, like Cloudflare's
// evictDurableObject: its in-memory state is gone and its next event
// constructs it again from storage. mode says what becomes of its
// WebSockets (with CloseWebSockets they are closed even if the object was
// not in memory).
//
// An object in use (a call running or waiting for its turn, a WaitUntil
// function running) is evicted once it is idle: Evict waits for that until
// ctx ends (DefaultTimeout if ctx has no deadline). It reports whether the
// object was in memory and was evicted.
func Evict[T any](ctx context.Context, stub *durable.Stub[T], mode EvictMode) (bool, error) {
	rt, ns, id, err := target(stub)
	if err != nil {
		return false, err
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var evicted bool
	var eerr error
	if err := poll(ctx, func() bool {
		evicted, eerr = hook.Evict(rt, ns, id, mode == CloseWebSockets)
		return !errors.Is(eerr, hook.ErrInUse)
	}); err != nil {
		return false, fmt.Errorf("durabletest: evict %s %v: the object stays in use: %w", ns, id, err)
	}
	return evicted, eerr
}

// EvictAll takes every object of rt out of memory, like Evict, and
// returns how many were in memory (evictAllDurableObjects). It waits until
// no call is in flight (see WaitIdle) and no object is left in memory, or
// ctx ends (DefaultTimeout if ctx has no deadline). With CloseWebSockets
// every WebSocket of rt is closed with 1001.
func EvictAll(ctx context.Context, rt *durable.Runtime, mode EvictMode) (int, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	n := 0
	var left []string
	err := poll(ctx, func() bool {
		if left = hook.Running(rt); len(left) > 0 {
			return false // wait for the calls to end
		}
		n += hook.EvictAll(rt, mode == CloseWebSockets)
		// A call may have come in meanwhile: then evict again once it ends.
		return rt.Stats().Live == 0 || hook.Closed(rt)
	})
	if err != nil {
		return n, fmt.Errorf("durabletest: evict all: %w; %d objects in memory, running:\n\t%s",
			err, rt.Stats().Live, strings.Join(left, "\n\t"))
	}
	return n, nil
}

// ListIDs returns the IDs of the objects of ns that have stored data (a
// database on disk), in the order of their String form, like Cloudflare's
// listDurableObjectIds. An object whose constructor and handlers never
// touched its storage has none. The IDs do not carry names.
func ListIDs[T any](ns *durable.Namespace[T]) ([]durable.ID, error) {
	if ns == nil {
		return nil, errors.New("durabletest: nil namespace")
	}
	rt, name, err := hook.NamespaceOf(ns)
	if err != nil {
		return nil, err
	}
	hexIDs, err := hook.StoredIDs(rt, name)
	if err != nil {
		return nil, fmt.Errorf("durabletest: list IDs of %s: %w", name, err)
	}
	ids := make([]durable.ID, 0, len(hexIDs))
	for _, h := range hexIDs {
		id, err := ns.IDFromString(h)
		if err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, nil
}
