package durable

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/durable-go/durable/internal/alarm"
	"github.com/durable-go/durable/internal/hook"
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
		return c.evict(oid, closeSockets), nil
	}
	hook.EvictAll = func(rt any, closeSockets bool) int { return rt.(*Runtime).evictAll(closeSockets) }
	hook.StoredIDs = func(rt any, ns string) ([]string, error) { return rt.(*Runtime).storedIDs(ns) }
	hook.Namespaces = func(rt any) []string { return rt.(*Runtime).namespaceNames() }
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
	err := c.invoke(ctx, id, func() string { return "RunIn" }, func(ctx context.Context, inst any) error {
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
	err := c.invoke(ctx, id, func() string { return "Alarm" }, func(ctx context.Context, inst any) error {
		return c.runAlarm(ctx, inst, alarm.Delivery{Key: alarm.Key{NS: c.name, ID: id.raw}}, &res, true)
	})
	return res.Ran && err == nil, err
}

// evict evicts object id if it is live and idle, closing its WebSockets
// with 1001 if closeSockets, else leaving them open (hibernated).
func (c *nsCore) evict(id ID, closeSockets bool) bool {
	key := c.objectKey(id)
	evicted := c.rt.eng.Evict(key)
	if closeSockets {
		for _, conn := range c.rt.hub.List(key, "") {
			conn.Close(CloseGoingAway, "object evicted", nil)
		}
	}
	return evicted
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
	shards, err := os.ReadDir(filepath.Join(rt.opts.Dir, c.name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, sh := range shards {
		if !sh.IsDir() || len(sh.Name()) != 2 {
			continue
		}
		files, err := os.ReadDir(filepath.Join(rt.opts.Dir, c.name, sh.Name()))
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			hexID, ok := strings.CutSuffix(f.Name(), ".sqlite")
			if !ok || !strings.HasPrefix(hexID, sh.Name()) {
				continue
			}
			if _, err := c.key.parse(c.name, hexID); err == nil {
				ids = append(ids, hexID)
			}
		}
	}
	slices.Sort(ids)
	return ids, nil
}
