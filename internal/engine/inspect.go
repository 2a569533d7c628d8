package engine

import "hash/maphash"

// Inspection of the registry for tests and the admin API (durabletest,
// through the root package's hooks). Nothing here pins a slot or changes
// what the engine does.

// Lookup returns the slot of key if one is in memory, else nil. Unlike
// Enter it neither creates the slot nor pins it, so the slot may be dropped
// as soon as Lookup returns.
func (e *Engine) Lookup(key string) *Object {
	sh := &e.shards[maphash.String(e.seed, key)%shardCount]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.m[key]
}

// Range calls fn for every slot in memory, in no particular order. fn runs
// outside the registry's locks, so it may call the slot's methods.
func (e *Engine) Range(fn func(o *Object)) {
	var objs []*Object
	for i := range e.shards {
		sh := &e.shards[i]
		sh.mu.Lock()
		for _, o := range sh.m {
			objs = append(objs, o)
		}
		sh.mu.Unlock()
	}
	for _, o := range objs {
		fn(o)
	}
}

// Calls returns how many calls hold the slot: entered and not yet left,
// whether running, waiting for the turn or finishing.
func (o *Object) Calls() int { return int(o.refs.Load()) }

// InUse reports whether a call holds the slot or the turn is taken or
// awaited, which keeps Evict from evicting it.
func (o *Object) InUse() bool { return o.refs.Load() != 0 || !o.lock.idle() }
