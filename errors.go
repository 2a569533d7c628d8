package durable

import (
	"errors"
	"fmt"

	"github.com/durable-go/durable/internal/durability"
	"github.com/durable-go/durable/internal/engine"
	"github.com/durable-go/durable/internal/storage"
)

// Errors of the runtime. Calls return them wrapped; test with errors.Is.
var (
	// ErrOverloaded means the object's queue of waiting calls is full. The
	// call was not delivered; retrying at once makes things worse.
	ErrOverloaded = engine.ErrOverloaded
	// ErrClosed means the runtime was shut down.
	ErrClosed = engine.ErrClosed
	// ErrObjectReset means the object was reset (a panic, Abort, a failed
	// BlockConcurrencyWhile, a failed write) while the call was queued or
	// running. Its in-memory state is gone; its storage is intact. The call
	// may or may not have taken effect; it is safe to retry an idempotent one.
	ErrObjectReset = errors.New("durable: object was reset")
	// ErrBlockTimeout means a BlockConcurrencyWhile function (or a
	// constructor) ran past its deadline; the object was reset.
	ErrBlockTimeout = errors.New("durable: BlockConcurrencyWhile timed out")
	// ErrNoTurn means a call that needs the object's turn was made outside
	// it: use the ctx the handler was given.
	ErrNoTurn = errors.New("durable: not inside one of this object's turns (pass the handler's ctx)")
	// ErrDurability means a write could not be made durable (a failed
	// fsync or I/O error). The reply that waited for it was dropped and
	// the object is reset: at once, or before its next event if other
	// turns were already running.
	ErrDurability = errors.New("durable: write not durable")
	// ErrCommit means the turn's writes could not be committed because of
	// what they were: a deferred constraint failed at COMMIT, or a
	// statement had aborted the transaction (*TxAbortedError) and the
	// handler returned nil anyway. The writes were rolled back and the
	// object was reset. errors.As finds the *SQLError or *TxAbortedError.
	// It is not retryable: the same call would fail again.
	ErrCommit = errors.New("durable: the turn's writes failed to commit and were rolled back")
	// ErrInTransaction means a call that would end or escape a
	// transaction was made inside one: an outgoing call, Transaction or
	// Sync inside TransactionSync, or Sync inside Transaction. Nothing was
	// done and the object is not reset.
	ErrInTransaction = errors.New("durable: not allowed inside a transaction")
	// ErrNoMethod means the object has no RPC method of that name.
	ErrNoMethod = errors.New("durable: no such method")
	// ErrBadArgument means an RPC argument or result cannot be carried
	// (wrong count, wrong type, or a type the codec refuses).
	ErrBadArgument = errors.New("durable: bad argument")
)

// RemoteError is an error returned by an object's handler, carried back to
// the caller. Like every RPC value it is a copy: the caller sees the message
// (and whether the handler panicked), not the original error value.
type RemoteError struct {
	Namespace string
	ID        string
	Method    string
	Message   string
	// Panic is true when the handler panicked; the object was then reset.
	Panic bool
	// Overloaded and Retryable tell what the handler's error said of itself,
	// when the handler passed on an infrastructure error of a call it made.
	Overloaded bool
	Retryable  bool
}

func (e *RemoteError) Error() string {
	what := "error"
	if e.Panic {
		what = "panic"
	}
	if e.Method != "" {
		return fmt.Sprintf("durable: %s.%s (%s): %s: %s", e.Namespace, e.Method, shortID(e.ID), what, e.Message)
	}
	return fmt.Sprintf("durable: %s (%s): %s: %s", e.Namespace, shortID(e.ID), what, e.Message)
}

func shortID(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

// IsRetryable reports whether err is an infrastructure failure after which
// retrying the call (if it is idempotent) may succeed: the object was reset
// or a write could not be made durable. Errors from the object's own code
// (*RemoteError) and ErrOverloaded are not retryable, nor is an
// ErrDurability caused by a failure of the node's journal: every write
// fails after it until the process restarts.
func IsRetryable(err error) bool {
	var re *RemoteError
	if errors.As(err, &re) {
		return re.Retryable
	}
	if errors.Is(err, durability.ErrJournalBroken) {
		return false
	}
	return errors.Is(err, ErrObjectReset) || errors.Is(err, ErrDurability) ||
		errors.Is(err, durability.ErrClosed)
}

// IsOverloaded reports whether err means the object is overloaded; do not
// retry at once.
func IsOverloaded(err error) bool {
	var re *RemoteError
	if errors.As(err, &re) {
		return re.Overloaded
	}
	return errors.Is(err, ErrOverloaded)
}

// commitError classifies an error of a turn's commit: the object's own
// writes at fault (ErrCommit) or the storage underneath (ErrDurability).
func commitError(err error) error {
	var aborted *storage.TxAbortedError
	var sqlErr *storage.SQLError
	if errors.Is(err, storage.ErrDiskFull) {
		return fmt.Errorf("%w: %w", ErrDurability, err)
	}
	if errors.As(err, &aborted) || (errors.As(err, &sqlErr) && sqlErr.IsConstraint()) {
		return fmt.Errorf("%w: %w", ErrCommit, err)
	}
	return fmt.Errorf("%w: %w", ErrDurability, err)
}
