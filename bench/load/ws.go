package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
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

// wsClient is one WebSocket of the load, with a writer and a reader
// goroutine.
type wsClient struct {
	cmd    *wsCmd
	w      window
	conn   *wsConn
	prefix []byte // "c<id>:", the start of the client's own messages

	credits  chan struct{} // one per own message that may be sent
	inflight chan sentMsg  // own messages sent, in order

	// Owned by the reader.
	delivered int64 // messages received in the window
	lat       []time.Duration
	rerrs     errorCounter

	// Owned by the writer.
	sent  int64 // own messages sent in the window
	werrs errorCounter
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
		cl := &wsClient{
			cmd:      c,
			conn:     conn,
			prefix:   fmt.Appendf(nil, "c%d:", i),
			credits:  make(chan struct{}, c.window),
			inflight: make(chan sentMsg, c.window),
			rerrs:    errorCounter{},
			werrs:    errorCounter{},
		}
		for range c.window {
			cl.credits <- struct{}{}
		}
		clients[i] = cl
	}

	start := time.Now()
	w := window{from: start.Add(c.warmup), to: start.Add(c.warmup + c.duration)}
	wctx, cancel := context.WithDeadline(ctx, w.to)
	defer cancel()
	cpuc := cpuWindow(wctx, w, c.pid)
	var wg sync.WaitGroup
	for _, cl := range clients {
		cl.w = w
		// The end of the window, or a failure of the client's reader or
		// writer, stops both.
		cctx, ccancel := context.WithCancel(wctx)
		context.AfterFunc(cctx, func() { cl.conn.conn.SetDeadline(time.Unix(1, 0)) })
		wg.Go(func() { defer ccancel(); cl.write(cctx) })
		wg.Go(func() { defer ccancel(); cl.read(cctx) })
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
		errs.merge(cl.rerrs)
		errs.merge(cl.werrs)
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

// write sends own messages while credits allow.
func (cl *wsClient) write(ctx context.Context) {
	msg := make([]byte, 0, cl.cmd.size)
	t := time.NewTimer(cl.cmd.timeout)
	defer t.Stop()
	for seq := uint64(0); ; seq++ {
		t.Reset(cl.cmd.timeout)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if !cl.w.over(ctx) {
				cl.werrs.add("timeout waiting for own message")
			}
			return
		case <-cl.credits:
		}
		msg = append(msg[:0], cl.prefix...)
		msg = strconv.AppendUint(msg, seq, 10)
		msg = append(msg, ':')
		for len(msg) < cl.cmd.size {
			msg = append(msg, 'x')
		}
		now := time.Now()
		cl.inflight <- sentMsg{seq: seq, at: now} // never blocks: credits bound it
		cl.conn.conn.SetWriteDeadline(now.Add(cl.cmd.timeout))
		if err := cl.conn.writeMessage(opText, msg); err != nil {
			if !cl.w.over(ctx) {
				cl.werrs.add("write: " + errorKind(err))
			}
			return
		}
		if !now.Before(cl.w.from) && now.Before(cl.w.to) {
			cl.sent++
		}
	}
}

// read counts delivered messages and times own ones.
func (cl *wsClient) read(ctx context.Context) {
	for {
		_, msg, err := cl.conn.readMessage()
		now := time.Now()
		if err != nil {
			if !cl.w.over(ctx) {
				if errors.Is(err, errWSClosed) {
					cl.rerrs.add("closed by server")
				} else {
					cl.rerrs.add("read: " + errorKind(err))
				}
			}
			return
		}
		if !now.Before(cl.w.from) && !now.After(cl.w.to) {
			cl.delivered++
		}
		if !bytes.HasPrefix(msg, cl.prefix) {
			continue
		}
		rest := msg[len(cl.prefix):]
		i := bytes.IndexByte(rest, ':')
		seq, perr := strconv.ParseUint(string(rest[:max(i, 0)]), 10, 64)
		var m sentMsg
		select {
		case m = <-cl.inflight:
		default:
			cl.rerrs.add("own message that was not sent")
			return
		}
		if perr != nil || seq != m.seq {
			cl.rerrs.add("own messages out of order")
			return
		}
		if cl.w.holds(m.at, now) {
			cl.lat = append(cl.lat, now.Sub(m.at))
		}
		cl.credits <- struct{}{}
	}
}
