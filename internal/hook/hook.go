// Package hook lends package durable's unexported powers to its companion
// packages in this module (durabletest, the admin API) without widening
// durable's public API. Package durable sets every variable in its init, so
// they are non-nil in any program that imports durable.
//
// rt arguments are *durable.Runtime values; objects are named by their
// namespace and their ID: a durable.ID, or its 64 hexadecimal digits (an
// ID made from a name carries the name; its string does not).
package hook

import (
	"context"
	"errors"
)

// ErrInUse is returned by Evict for an object that is live and in use: a
// call is running or waiting for its turn, or a WaitUntil function runs.
var ErrInUse = errors.New("durable: object in use")

var (
	// RunIn runs fn as one turn of an object, constructing the object if
	// it is not live. inst is the object (*T) and state its
	// *durable.State. The turn commits like any other: fn's writes are
	// durable when RunIn returns nil; if fn fails they are rolled back and
	// its error is returned as it is.
	RunIn func(ctx context.Context, rt any, ns string, id any, fn func(ctx context.Context, inst, state any) error) error

	// FireAlarm runs an object's stored alarm now, whatever its time, as
	// the scheduler would (the alarm is deleted if the handler succeeds).
	// It reports whether a handler ran: false if no alarm is stored.
	FireAlarm func(ctx context.Context, rt any, ns string, id any) (ran bool, err error)

	// Evict evicts an object if it is live and not in use, and reports
	// whether it did; it fails with ErrInUse, doing nothing, if the object
	// is live and in use. The object's WebSockets hibernate, or are closed
	// with code 1001 if closeSockets (also when the object was not live).
	Evict func(rt any, ns string, id any, closeSockets bool) (bool, error)

	// EvictAll evicts every object not in use, like Evict, and returns
	// how many were live. With closeSockets every WebSocket of the runtime
	// is closed with 1001.
	EvictAll func(rt any, closeSockets bool) int

	// StoredIDs lists, in hex order, the IDs of namespace ns that have a
	// database on disk.
	StoredIDs func(rt any, ns string) ([]string, error)

	// Namespaces lists the registered namespace names, sorted.
	Namespaces func(rt any) []string

	// Target names the object behind a *durable.Stub[T]: its runtime,
	// namespace and ID. err is the error the stub was made with (a bad
	// name or ID), which every call through it returns.
	Target func(stub any) (rt any, ns string, id any, err error)

	// NamespaceOf returns the runtime and the name of a
	// *durable.Namespace[T].
	NamespaceOf func(ns any) (rt any, name string, err error)

	// Running describes what still runs in a runtime, one line per object
	// with calls in flight (running, or waiting for the turn) or WaitUntil
	// functions running, then one for alarm deliveries due and not done.
	// It is empty when nothing runs, and once Shutdown has begun.
	Running func(rt any) []string

	// AlarmsRunning returns how many alarm deliveries are due and not
	// done; 0 once Shutdown has begun.
	AlarmsRunning func(rt any) int

	// Closed reports whether the runtime's Shutdown has begun.
	Closed func(rt any) bool

	// FolderResolver reads the ID keys of the data folder dir (from its
	// record of class migrations; it changes nothing) and returns a
	// function that resolves an object reference of a namespace: 64
	// lowercase hex digits are an ID of it, anything else an object name
	// (the ID then carries it). For the durable CLI, offline.
	FolderResolver func(dir string) (resolve func(namespace, ref string) (ObjectID, error), err error)
)

// ObjectID is what FolderResolver returns of a durable.ID.
type ObjectID interface {
	String() string       // the 64 hex digits
	Name() (string, bool) // the name it came from, if any
}
