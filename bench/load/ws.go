package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"
)

// wsCmd is "load ws": WebSocket broadcast load. Clients connect to rooms
// (client i to name i mod -names), each keeps -window of its own messages
// in flight, and the server must send every message to every socket in
// the room, the sender included.
type wsCmd struct {
	common
	clients int
	window  int
	size    int
}

func (c *wsCmd) parseFlags(args []string) error {
	fs := flag.NewFlagSet("load ws", flag.ContinueOnError)
	c.register(fs, "/ws/{name}")
	fs.IntVar(&c.clients, "clients", 10, "WebSocket clients")
	fs.IntVar(&c.window, "window", 1, "own messages each client keeps in flight")
	fs.IntVar(&c.size, "size", 64, "message size in bytes")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return c.validate()
}

func (c *wsCmd) validate() error {
	switch {
	case c.clients < 1:
		return fmt.Errorf("-clients %d: want at least 1", c.clients)
	case c.window < 1:
		return fmt.Errorf("-window %d: want at least 1", c.window)
	case c.size < 32 || c.size > maxWSMessage:
		return fmt.Errorf("-size %d: want 32 to %d bytes", c.size, maxWSMessage)
	}
	return c.common.validate()
}

func (c *wsCmd) run(ctx context.Context, out, human io.Writer) error {
	r, err := c.load(ctx)
	if err != nil {
		return err
	}
	return c.finish(r, out, human)
}

// sentMsg is one own message in flight.
type sentMsg struct {
	seq uint64
	at  time.Time
}

// wsClient is one WebSocket of the load. One goroutine reads it and sends
// the client's next message as soon as one of its own comes back, so that
// no hand-off between goroutines adds to the latency or to the tool's CPU.
type wsClient struct {
	cmd    *wsCmd
	w      window
	conn   *wsConn
	prefix []byte // "c<id>:", the start of the client's own messages

	inflight []sentMsg // own messages sent and not yet back, oldest first
	seq      uint64    // of the next own message
	msg      []byte    // the message being sent

	delivered int64 // messages received in the window
	sent      int64 // own messages sent in the window
	lat       []time.Duration
	errs      errorCounter
}

// load connects every client, then drives the broadcast until the end of
// the window.
func (c *wsCmd) load(ctx context.Context) (*Result, error) {
	clients := make([]*wsClient, c.clients)
	defer func() {
		for _, cl := range clients {
			if cl != nil {
				cl.conn.close(time.Second)
			}
		}
	}()
	var path []byte
	for i := range clients {
		path = c.expand(path[:0], uint64(i))
		conn, err := dialWS(ctx, c.host, string(path), c.timeout)
		if err != nil {
			return nil, fmt.Errorf("client %d: %s: %w", i, path, err)
		}
		clients[i] = &wsClient{
			cmd:      c,
			conn:     conn,
			prefix:   fmt.Appendf(nil, "c%d:", i),
			inflight: make([]sentMsg, 0, c.window),
			msg:      make([]byte, 0, c.size),
			errs:     errorCounter{},
		}
	}

	start := time.Now()
	w := window{from: start.Add(c.warmup), to: start.Add(c.warmup + c.duration)}
	wctx, cancel := context.WithDeadline(ctx, w.to)
	defer cancel()
	cpuc := cpuWindow(wctx, w, c.pid)
	var wg sync.WaitGroup
	for _, cl := range clients {
		cl.w = w
		// The end of the window interrupts the client's read or write.
		stop := context.AfterFunc(wctx, func() { cl.conn.conn.SetDeadline(time.Unix(1, 0)) })
		wg.Go(func() {
			defer stop()
			cl.run(wctx)
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	r := &Result{Workload: c.workload, Server: c.server, Unit: "msg/s", Conns: c.clients, Names: c.names, Seconds: c.duration.Seconds()}
	errs := errorCounter{}
	var lat []time.Duration
	var sent int64
	for _, cl := range clients {
		r.Count += cl.delivered
		sent += cl.sent
		lat = append(lat, cl.lat...)
		errs.merge(cl.errs)
	}
	r.Sent = sent
	r.Errors = errs.total()
	if len(errs) > 0 {
		r.ErrorKinds = errs
	}
	r.summarize(lat)
	if cpu := <-cpuc; cpu != (CPU{}) {
		r.CPU = &cpu
	}
	return r, nil
}

// run sends the client's first -window messages, then reads: every
// message counts as delivered, and each own message that comes back is
// timed and followed by the next one. An own message must come back within
// -timeout of being sent.
func (cl *wsClient) run(ctx context.Context) {
	for range cl.cmd.window {
		if !cl.send(ctx) {
			return
		}
	}
	for {
		_, msg, err := cl.conn.readMessage()
		now := time.Now()
		if err != nil {
			switch {
			case cl.w.over(ctx):
			case errors.Is(err, errWSClosed):
				cl.errs.add("closed by server")
			case errors.Is(err, os.ErrDeadlineExceeded):
				cl.errs.add("timeout waiting for own message")
			default:
				cl.errs.add("read: " + errorKind(err))
			}
			return
		}
		if !now.Before(cl.w.from) && !now.After(cl.w.to) {
			cl.delivered++
		}
		if !bytes.HasPrefix(msg, cl.prefix) {
			continue
		}
		seq, ok := parseSeq(msg[len(cl.prefix):])
		if len(cl.inflight) == 0 {
			cl.errs.add("own message that was not sent")
			return
		}
		m := cl.inflight[0]
		cl.inflight = append(cl.inflight[:0], cl.inflight[1:]...)
		if !ok || seq != m.seq {
			cl.errs.add("own messages out of order")
			return
		}
		if cl.w.holds(m.at, now) {
			cl.lat = append(cl.lat, now.Sub(m.at))
		}
		if !cl.send(ctx) {
			return
		}
	}
}

// send sends the client's next own message. The connection's deadline
// becomes the time by which the oldest message in flight must be back; a
// write cannot take longer either.
func (cl *wsClient) send(ctx context.Context) bool {
	msg := append(cl.msg[:0], cl.prefix...)
	msg = strconv.AppendUint(msg, cl.seq, 10)
	msg = append(msg, ':')
	for len(msg) < cl.cmd.size {
		msg = append(msg, 'x')
	}
	cl.msg = msg
	now := time.Now()
	cl.inflight = append(cl.inflight, sentMsg{seq: cl.seq, at: now})
	cl.seq++
	cl.conn.conn.SetDeadline(cl.inflight[0].at.Add(cl.cmd.timeout))
	if ctx.Err() != nil {
		return false // the end of the window may have set its deadline before ours
	}
	if err := cl.conn.writeMessage(opText, msg); err != nil {
		if !cl.w.over(ctx) {
			cl.errs.add("write: " + errorKind(err))
		}
		return false
	}
	if !now.Before(cl.w.from) && now.Before(cl.w.to) {
		cl.sent++
	}
	return true
}

// parseSeq parses the decimal number that b starts with, up to a ':'.
func parseSeq(b []byte) (uint64, bool) {
	var n uint64
	i := 0
	for ; i < len(b) && b[i] != ':'; i++ {
		d := b[i] - '0'
		if d > 9 || i >= 19 {
			return 0, false
		}
		n = n*10 + uint64(d)
	}
	return n, i > 0 && i < len(b)
}
