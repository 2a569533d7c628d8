// Package socket is the WebSocket layer of the runtime. It checks upgrade
// requests, keeps every accepted socket in a per-object Registry that lives
// in the Hub rather than in the object's activation (so evicting an object
// leaves its sockets connected: hibernation), reads frames without a
// goroutine per idle socket, and writes frames in order behind output Gates.
//
// # Usage
//
// The root package owns one Hub per runtime:
//
//  1. In an object's turn it calls CheckRequest and Hub.Accept, which lists
//     a pending Conn in the object's Registry. The Conn's Gate is the
//     turn's output gate.
//  2. After the turn, once its writes are durable, it upgrades the HTTP
//     connection and calls Conn.Attach (or Conn.Abandon if that failed).
//  3. Frames read from the socket reach the Registry's Handler: Message
//     for each data message (one at a time per socket, in order), then at
//     most one Close or Error when the socket ends without the object having
//     closed it. The root package turns each into a turn of the object.
//  4. Conn.Send and Conn.Close queue frames behind a Gate: nothing queued
//     behind a pending Gate leaves before the Gate opens; frames of a dropped
//     Gate never leave, and the socket is closed with CloseInternalError.
//  5. Hub.Close closes every socket (CloseGoingAway) and waits for every
//     goroutine the Hub started.
//
// # Goroutines
//
// On Linux an idle socket has no goroutine and no buffer: its file
// descriptor sits (edge-triggered) in one epoll set watched by a single
// poller goroutine, which parks in the Go runtime's network poller rather
// than in epoll_wait. When bytes arrive, a reader goroutine reads and
// delivers the messages that are there, then goes back to a small pool of
// idle readers (which exit after a second unused). A writer goroutine runs
// only while a socket has frames to write; it yields once before its first
// write so that frames queued meanwhile leave in the same system call.
// Elsewhere, for connections without a file descriptor of their own (TLS),
// or with Config.PerConnReader, each socket has one blocking reader
// goroutine. Every goroutine is counted by the Hub and awaited by
// Hub.Close.
//
// # Lock order
//
// Conn.mu, then Registry.mu, then Hub.mu; the poller's and Gate's locks are
// leaves.
package socket
