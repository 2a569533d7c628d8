package socket

import (
	"errors"
	"fmt"
)

// Errors reported to Handler.Error (wrapped) or returned by Conn methods.
var (
	// ErrClosed means the socket is closed or closing: nothing more can be
	// sent on it.
	ErrClosed = errors.New("websocket: socket is closed")
	// ErrHubClosed means the runtime is shutting down.
	ErrHubClosed = errors.New("websocket: runtime closed")
	// ErrProtocol means the peer broke RFC 6455 (unmasked frame, reserved
	// bits or opcode, bad fragmentation, oversized control frame). The
	// socket was closed with CloseProtocolError.
	ErrProtocol = errors.New("websocket: protocol error")
	// ErrMessageTooBig means the peer sent a message past the limit. The
	// socket was closed with CloseMessageTooBig.
	ErrMessageTooBig = errors.New("websocket: message too big")
	// ErrInvalidUTF8 means a text message was not valid UTF-8. The socket
	// was closed with CloseInvalidPayload.
	ErrInvalidUTF8 = errors.New("websocket: text message is not valid UTF-8")
	// ErrSendBufferFull means the peer did not read fast enough and the
	// frames queued for it passed the send buffer limit. The socket was
	// closed with ClosePolicyViolation.
	ErrSendBufferFull = errors.New("websocket: send buffer full (peer too slow)")
	// ErrOutputLost means frames were dropped because the writes of the
	// turn that sent them could not be made durable. The socket was closed
	// with CloseInternalError.
	ErrOutputLost = errors.New("websocket: output dropped (writes not durable)")
	// ErrTimeout means the peer stalled in the middle of a frame, or did
	// not take frames within the write timeout. The connection was dropped.
	ErrTimeout = errors.New("websocket: peer timed out")
	// ErrBadRequest means the HTTP request is not a WebSocket upgrade.
	ErrBadRequest = errors.New("websocket: not a WebSocket upgrade request")
	// ErrOrigin means the request's Origin is not allowed.
	ErrOrigin = errors.New("websocket: origin not allowed")
	// ErrOverloaded means the socket was closed with CloseTryAgainLater
	// because its object's queue was full.
	ErrOverloaded = errors.New("websocket: object overloaded")
)

// Close codes of RFC 6455 §7.4.1 used by the runtime.
const (
	CloseNormal          = 1000
	CloseGoingAway       = 1001
	CloseProtocolError   = 1002
	CloseUnsupportedData = 1003
	CloseNoStatus        = 1005 // never sent: no code in the peer's close frame
	CloseAbnormal        = 1006 // never sent: the connection dropped
	CloseInvalidPayload  = 1007
	ClosePolicyViolation = 1008
	CloseMessageTooBig   = 1009
	CloseInternalError   = 1011
	CloseTryAgainLater   = 1013
)

// LimitError reports an input past a WebSocket limit. The operation had no
// effect.
type LimitError struct {
	Limit string // what was limited, e.g. "tags per socket"
	Max   int64  // the limit
	Got   int64  // the offending size
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("websocket: limit exceeded: %s is %d, maximum %d", e.Limit, e.Got, e.Max)
}

// Limit names used in LimitError.
const (
	LimitSockets      = "sockets per object"
	LimitTags         = "tags per socket"
	LimitTagLength    = "characters in a tag"
	LimitAttachment   = "bytes of an attachment"
	LimitAutoResponse = "characters of an auto-response"
	LimitMessage      = "bytes of a message"
	LimitCloseReason  = "bytes of a close reason"
	LimitEventTimeout = "milliseconds of the event timeout"
)

// CloseError is the error given to Handler.Error when the runtime closed a
// socket because of what the peer did. It wraps one of the sentinels above.
type CloseError struct {
	Code int   // the close code sent to the peer (0: the connection dropped)
	Err  error // why
}

func (e *CloseError) Error() string {
	if e.Code == 0 {
		return fmt.Sprintf("%v (connection dropped)", e.Err)
	}
	return fmt.Sprintf("%v (closed with %d)", e.Err, e.Code)
}

func (e *CloseError) Unwrap() error { return e.Err }
