// Command load is the load generator of the benchmark comparison
// (bench/compare.sh). It drives a server on loopback for a fixed time with a
// fixed number of connections, in a closed loop, and reports throughput,
// p50 and p99 computed from the raw latencies (no coordinated-omission
// correction), and errors.
//
// # Usage
//
//	load http -url http://127.0.0.1:8787 -path '/counter/{name}/inc' -c 16 -d 10s -names 1000
//	load ws   -url http://127.0.0.1:8787 -path '/ws/{name}' -clients 10 -d 10s
//	load table results.jsonl
//	load fsync -dir /tmp
//
// "load -url ..." (flags first) is short for "load http -url ...".
//
// In a path template, {name} becomes an object name, prefix-0 to
// prefix-(N-1) for -names N, taken round-robin by request; {seq} becomes a
// number unique to the request within the run (use it where every request
// must write a new value).
//
// "http" keeps -c connections, each with one request in flight. A request
// counts if it starts and ends inside the measured window (after -warmup,
// for -d); its latency is the time from writing the request to reading the
// whole response. Any status other than 2xx, and any transport error, is
// an error; errors (warmup included) are reported, never timed.
//
// "ws" opens -clients WebSockets to one room. Each client keeps -window of
// its own messages in flight: the server must send every message to every
// socket in the room, the sender included. Throughput is messages delivered
// (received by any client) per second; latency is the time from sending a
// message to receiving it back.
//
// With -server-pid (Linux), a result also tells the CPU used in the window
// by the server, the load tool, other processes and the kernel; with
// -max-others, a run during which other processes used more than that
// many cores is marked contended and exits with status 3, so that a script
// can run it again.
//
// "fsync" times 4 KiB appends followed by fsync in a folder: the floor
// under every durable commit, and on a shared or virtual disk the figure
// that varies most from run to run.
//
// With -json, the result is also printed to stdout as one JSON line; the
// "table" command reads such lines and prints a Markdown comparison table.
// The human summary goes to stderr.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	switch {
	case errors.Is(err, flag.ErrHelp):
		os.Exit(2)
	case errors.Is(err, errContended):
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(3)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}

const usage = `usage:
  load http  [flags]   HTTP load (see load http -h)
  load ws    [flags]   WebSocket broadcast load (see load ws -h)
  load table [flags] FILE...   Markdown table from -json results
  load fsync [flags]   fsync latency of a folder's file system
`

func run(ctx context.Context, args []string) error {
	if len(args) > 0 && strings.HasPrefix(args[0], "-") && args[0] != "-h" && args[0] != "-help" {
		args = append([]string{"http"}, args...)
	}
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return flag.ErrHelp
	}
	switch args[0] {
	case "http":
		var c httpCmd
		if err := c.parseFlags(args[1:]); err != nil {
			return err
		}
		return c.run(ctx, os.Stdout, os.Stderr)
	case "ws":
		var c wsCmd
		if err := c.parseFlags(args[1:]); err != nil {
			return err
		}
		return c.run(ctx, os.Stdout, os.Stderr)
	case "table":
		var c tableCmd
		if err := c.parseFlags(args[1:]); err != nil {
			return err
		}
		return c.run(os.Stdout)
	case "fsync":
		var c fsyncCmd
		if err := c.parseFlags(args[1:]); err != nil {
			return err
		}
		return c.run(os.Stdout)
	default:
		fmt.Fprint(os.Stderr, usage)
		return flag.ErrHelp
	}
}
