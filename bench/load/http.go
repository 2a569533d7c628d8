package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// httpCmd is "load http": closed-loop HTTP/1.1 load over -c keep-alive
// connections.
type httpCmd struct {
	common
	conns int
	prime bool
}

func (c *httpCmd) parseFlags(args []string) error {
	fs := flag.NewFlagSet("load http", flag.ContinueOnError)
	c.register(fs, "/ping")
	fs.IntVar(&c.conns, "c", 16, "connections, each with one request in flight")
	fs.BoolVar(&c.prime, "prime", false, "before the warmup, send one untimed request for each of the -names names, so that the measured window runs against objects that already exist")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return c.validate()
}

func (c *httpCmd) validate() error {
	if c.conns < 1 {
		return fmt.Errorf("-c %d: want at least 1", c.conns)
	}
	return c.common.validate()
}

// run drives the load and prints the result: the summary to human, the JSON
// line to out with -json.
func (c *httpCmd) run(ctx context.Context, out, human io.Writer) error {
	r, err := c.load(ctx)
	if err != nil {
		return err
	}
	return c.finish(r, out, human)
}

// load runs the workers and returns the merged result. It returns an error
// only if ctx is cancelled before the end of the measured window.
func (c *httpCmd) load(ctx context.Context) (*Result, error) {
	var seq atomic.Uint64
	if c.prime {
		if err := c.primeNames(ctx, &seq); err != nil {
			return nil, err
		}
	}
	start := time.Now()
	w := window{from: start.Add(c.warmup), to: start.Add(c.warmup + c.duration)}
	wctx, cancel := context.WithDeadline(ctx, w.to)
	defer cancel()
	cpuc := cpuWindow(wctx, w, c.pid)

	workers := make([]*httpWorker, c.conns)
	var wg sync.WaitGroup
	for i := range workers {
		hw := &httpWorker{cmd: c, seq: &seq, w: w, errs: errorCounter{}}
		workers[i] = hw
		wg.Go(func() { hw.loop(wctx) })
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	r := &Result{Workload: c.workload, Server: c.server, Unit: "req/s", Conns: c.conns, Names: c.names, Seconds: c.duration.Seconds()}
	errs := errorCounter{}
	var n int
	for _, hw := range workers {
		n += len(hw.lat)
		errs.merge(hw.errs)
	}
	lat := make([]time.Duration, 0, n)
	for _, hw := range workers {
		lat = append(lat, hw.lat...)
	}
	r.Count = int64(len(lat))
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

// primeNames sends one request for each name, seq 0 to names-1, over at
// most -c connections. Any failure fails the run.
func (c *httpCmd) primeNames(ctx context.Context, seq *atomic.Uint64) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for range min(c.conns, c.names) {
		wg.Go(func() {
			var (
				conn net.Conn
				br   *bufio.Reader
				buf  []byte
			)
			defer func() {
				if conn != nil {
					conn.Close()
				}
			}()
			d := net.Dialer{Timeout: c.timeout}
			for ctx.Err() == nil {
				n := seq.Add(1) - 1
				if n >= uint64(c.names) {
					return
				}
				if conn == nil {
					var err error
					if conn, err = d.DialContext(ctx, "tcp", c.host); err != nil {
						cancel(fmt.Errorf("prime: %w", err))
						return
					}
					br = bufio.NewReader(conn)
				}
				buf = c.appendRequest(buf[:0], n)
				conn.SetDeadline(time.Now().Add(c.timeout))
				status, keep, err := roundTrip(conn, br, buf)
				switch {
				case err != nil:
					cancel(fmt.Errorf("prime: %w", err))
					return
				case status < 200 || status > 299:
					cancel(fmt.Errorf("prime: %s: status %d", c.expand(nil, n), status))
					return
				case !keep:
					conn.Close()
					conn = nil
				}
			}
		})
	}
	wg.Wait()
	return context.Cause(ctx)
}

// appendRequest appends request number seq to dst.
func (c *httpCmd) appendRequest(dst []byte, seq uint64) []byte {
	dst = append(dst, "GET "...)
	dst = c.expand(dst, seq)
	dst = append(dst, " HTTP/1.1\r\nHost: "...)
	dst = append(dst, c.host...)
	return append(dst, "\r\nUser-Agent: durable-bench-load\r\n\r\n"...)
}

// window is the measured part of a run.
type window struct{ from, to time.Time }

// holds reports whether an operation that ran from t0 to t1 is measured.
func (w window) holds(t0, t1 time.Time) bool { return !t0.Before(w.from) && !t1.After(w.to) }

// over reports whether the run is over, so that a failure is the cut-off
// at its end rather than an error. It looks at the clock as well as ctx:
// a dial or I/O deadline derived from ctx may fire before ctx reports it.
func (w window) over(ctx context.Context) bool { return ctx.Err() != nil || !time.Now().Before(w.to) }

// httpWorker owns one connection and keeps one request in flight on it.
type httpWorker struct {
	cmd *httpCmd
	seq *atomic.Uint64
	w   window

	lat  []time.Duration // latencies of measured successful requests
	errs errorCounter    // errors by kind, warmup included
}

func (hw *httpWorker) loop(ctx context.Context) {
	var (
		conn     net.Conn
		br       *bufio.Reader
		stopKill func() bool
		buf      []byte
	)
	closeConn := func() {
		if conn != nil {
			stopKill()
			conn.Close()
			conn = nil
		}
	}
	defer closeConn()
	d := net.Dialer{Timeout: hw.cmd.timeout}
	for ctx.Err() == nil {
		if conn == nil {
			var err error
			conn, err = d.DialContext(ctx, "tcp", hw.cmd.host)
			if err != nil {
				if !hw.w.over(ctx) {
					hw.fail("dial: " + errorKind(err))
					sleep(ctx, 10*time.Millisecond) // do not spin on a dead server
				}
				continue
			}
			br = bufio.NewReaderSize(conn, 16<<10)
			// Cancel the request in flight at the end of the window.
			c := conn
			stopKill = context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
		}
		buf = hw.cmd.appendRequest(buf[:0], hw.seq.Add(1)-1)

		t0 := time.Now()
		conn.SetDeadline(t0.Add(hw.cmd.timeout))
		status, keep, err := roundTrip(conn, br, buf)
		t1 := time.Now()
		if hw.w.over(ctx) {
			return // cut off by the end of the window: neither counted nor an error
		}
		switch {
		case err != nil:
			hw.fail(errorKind(err))
		case status < 200 || status > 299:
			hw.fail(fmt.Sprintf("status %d", status))
		case hw.w.holds(t0, t1):
			hw.lat = append(hw.lat, t1.Sub(t0))
		}
		if err != nil || !keep {
			closeConn()
		}
	}
}

// fail counts an error. Errors count from the start of the warmup: a
// server that fails while warming up is not healthy either.
func (hw *httpWorker) fail(kind string) { hw.errs.add(kind) }

// roundTrip writes req and reads the whole response. keep reports whether
// the connection can carry another request.
func roundTrip(conn net.Conn, br *bufio.Reader, req []byte) (status int, keep bool, err error) {
	if _, err := conn.Write(req); err != nil {
		return 0, false, err
	}
	return readResponse(br)
}

// sleep waits for d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// errorKind reduces a transport error to a short kind without addresses, so
// that equal failures add up.
func errorKind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed by server"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "connection reset"
	}
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 {
		s = s[i+2:]
	}
	return s
}
