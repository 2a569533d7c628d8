package durable

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/durable-go/durable/internal/alarm"
	"github.com/durable-go/durable/internal/engine"
	"github.com/durable-go/durable/internal/hook"
	"github.com/durable-go/durable/internal/storage"
)

// The powers lent to durabletest and the admin API (see internal/hook).
func init() {
	hook.RunIn = func(ctx context.Context, rt any, ns string, id any, fn func(ctx context.Context, inst, state any) error) error {
		c, oid, err := rt.(*Runtime).object(ns, id)
		if err != nil {
			return err
		}
		return c.runIn(ctx, oid, fn)
	}
	hook.FireAlarm = func(ctx context.Context, rt any, ns string, id any) (bool, error) {
		c, oid, err := rt.(*Runtime).object(ns, id)
		if err != nil {
			return false, err
		}
		return c.fireAlarm(ctx, oid)
	}
	hook.Evict = func(rt any, ns string, id any, closeSockets bool) (bool, error) {
		c, oid, err := rt.(*Runtime).object(ns, id)
		if err != nil {
			return false, err
		}
		return c.evict(oid, closeSockets)
	}
	hook.EvictAll = func(rt any, closeSockets bool) int { return rt.(*Runtime).evictAll(closeSockets) }
	hook.StoredIDs = func(rt any, ns string) ([]string, error) { return rt.(*Runtime).storedIDs(ns) }
	hook.Namespaces = func(rt any) []string { return rt.(*Runtime).namespaceNames() }
	hook.Target = func(stub any) (any, string, any, error) {
		s, ok := stub.(interface{ target() (*nsCore, ID, error) })
		if !ok {
			return nil, "", nil, fmt.Errorf("durable: %T is not a *durable.Stub", stub)
		}
		c, id, err := s.target()
		if c == nil {
			return nil, "", nil, errors.New("durable: zero Stub (make stubs with Namespace.Get or GetByName)")
		}
		return c.rt, c.name, id, err
	}
	hook.NamespaceOf = func(ns any) (any, string, error) {
		n, ok := ns.(interface{ core() *nsCore })
		if !ok {
			return nil, "", fmt.Errorf("durable: %T is not a *durable.Namespace", ns)
		}
		c := n.core()
		if c == nil {
			return nil, "", errors.New("durable: zero Namespace (make namespaces with Register)")
		}
		return c.rt, c.name, nil
	}
	hook.Running = func(rt any) []string { return rt.(*Runtime).running() }
	hook.AlarmsRunning = func(rt any) int {
		r := rt.(*Runtime)
		if r.isClosed() {
			return 0
		}
		return r.alarms.Stats().Running
	}
	hook.Closed = func(rt any) bool { return rt.(*Runtime).isClosed() }
}

// target returns what hook.Target reports of a stub.
func (s *Stub[T]) target() (*nsCore, ID, error) { return s.c, s.id, s.err }

// core returns the namespace's type-erased part (nil for a zero Namespace).
func (n *Namespace[T]) core() *nsCore { return n.c }

// isClosed reports whether Shutdown has begun.
func (rt *Runtime) isClosed() bool {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.closed
}

// errUnknownNamespace is returned for a namespace name not registered.
var errUnknownNamespace = errors.New("durable: namespace not registered")

// namespace returns the registered namespace called ns.
func (rt *Runtime) namespace(ns string) (*nsCore, error) {
	rt.mu.Lock()
	c := rt.namespaces[ns]
	rt.mu.Unlock()
	if c == nil {
		return nil, fmt.Errorf("%w: %q", errUnknownNamespace, ns)
	}
	return c, nil
}

// object resolves a namespace name and an ID (an ID, or its string).
func (rt *Runtime) object(ns string, id any) (*nsCore, ID, error) {
	c, err := rt.namespace(ns)
	if err != nil {
		return nil, ID{}, err
	}
	switch id := id.(type) {
	case ID:
		if id.IsZero() || id.ns != c.name {
			return nil, ID{}, &IDError{Namespace: c.name, Input: id.String(), Reason: "an ID of namespace " + id.ns, Err: ErrForeignID}
		}
		return c, id, nil
	case string:
		oid, err := c.key.parse(c.name, id)
		return c, oid, err
	default:
		return nil, ID{}, fmt.Errorf("durable: object ID of type %T", id)
	}
}

// namespaceNames lists the registered namespaces, sorted.
func (rt *Runtime) namespaceNames() []string {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	names := make([]string, 0, len(rt.namespaces))
	for n := range rt.namespaces {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// runIn runs fn as one turn of object id.
func (c *nsCore) runIn(ctx context.Context, id ID, fn func(ctx context.Context, inst, state any) error) error {
	var ferr error
	err := c.invokeKind(ctx, kindDirect, id, func() string { return "RunIn" }, func(ctx context.Context, inst any) error {
		ferr = fn(ctx, inst, turnFrom(ctx).a.state)
		return ferr
	})
	if ferr != nil && err != nil {
		var re *RemoteError
		if errors.As(err, &re) && !re.Panic {
			return ferr // the caller's own error, not wrapped as remote
		}
	}
	return err
}

// fireAlarm runs object id's stored alarm now, if it has one.
func (c *nsCore) fireAlarm(ctx context.Context, id ID) (bool, error) {
	var res alarm.Result
	err := c.invokeKind(ctx, kindAlarm, id, func() string { return "Alarm" }, func(ctx context.Context, inst any) error {
		return c.runAlarm(ctx, inst, alarm.Delivery{Key: alarm.Key{NS: c.name, ID: id.raw}}, &res, true)
	})
	return res.Ran && err == nil, err
}

// evict evicts object id if it is live and idle, closing its WebSockets
// with 1001 if closeSockets, else leaving them open (hibernated). It fails
// with hook.ErrInUse, doing nothing, if the object is live and in use.
func (c *nsCore) evict(id ID, closeSockets bool) (bool, error) {
	key := c.objectKey(id)
	evicted := c.rt.eng.Evict(key)
	if !evicted {
		// Not live, or in use (a call, a queued call, a WaitUntil function).
		if o := c.rt.eng.Lookup(key); o != nil && (o.InUse() || o.Activation() != nil) {
			return false, fmt.Errorf("%w: %s %s", hook.ErrInUse, c.name, id)
		}
	}
	if closeSockets {
		for _, conn := range c.rt.hub.List(key, "") {
			conn.Close(CloseGoingAway, "object evicted", nil)
		}
	}
	return evicted, nil
}

// evictAll evicts every object not in use, as evict does.
func (rt *Runtime) evictAll(closeSockets bool) int {
	n := rt.eng.EvictAll()
	if closeSockets {
		rt.hub.CloseAll(CloseGoingAway, "object evicted")
	}
	return n
}

// storedIDs lists the IDs of namespace ns with a database on disk, sorted.
func (rt *Runtime) storedIDs(ns string) ([]string, error) {
	c, err := rt.namespace(ns)
	if err != nil {
		return nil, err
	}
	ids, err := storage.ObjectIDs(rt.opts.Dir, c.name)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(ids, func(id string) bool {
		_, err := c.key.parse(c.name, id)
		return err != nil // a file not of this namespace's IDs
	}), nil
}

// running describes what still runs in rt (see hook.Running).
func (rt *Runtime) running() []string {
	if rt.isClosed() {
		return nil
	}
	var out []string
	rt.eng.Range(func(o *engine.Object) {
		calls := o.Calls()
		a, _ := o.Activation().(*activation)
		waits := 0
		if a != nil {
			waits = int(a.pending.Load())
		}
		if calls == 0 && waits == 0 {
			return
		}
		var what []string
		if calls > 0 {
			what = append(what, plural(calls, "call")+" in flight")
		}
		if waits > 0 {
			what = append(what, plural(waits, "WaitUntil function")+" running")
		}
		out = append(out, describeKey(o.Key(), a)+": "+strings.Join(what, ", "))
	})
	slices.Sort(out)
	if n := rt.alarms.Stats().Running; n > 0 {
		out = append(out, plural(n, "alarm delivery")+" due or running")
	}
	return out
}

// describeKey names an object by its engine key ("ns/" + raw ID bytes),
// with the name its activation was reached by, if any.
func describeKey(key string, a *activation) string {
	ns, raw, _ := strings.Cut(key, "/")
	s := ns + " " + hex.EncodeToString([]byte(raw))
	if a != nil {
		if name, ok := a.id.Name(); ok {
			s += fmt.Sprintf(" (%q)", name)
		}
	}
	return s
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	if strings.HasSuffix(what, "y") {
		return fmt.Sprintf("%d %sies", n, strings.TrimSuffix(what, "y"))
	}
	return fmt.Sprintf("%d %ss", n, what)
}
