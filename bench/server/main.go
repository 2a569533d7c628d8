// Command server is the reference workload server of the benchmarks: a
// small durable app with a fixed HTTP contract (see BENCHMARKS.md and
// bench/README.md) that load tools drive from outside.
//
//	go run ./bench/server -addr 127.0.0.1:8787 -data /tmp/bench-data
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/durable-go/durable"
)

func main() {
	if err := run(context.Background(), os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "server:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8787", "listen address")
	data := fs.String("data", "bench-data", "data folder")
	idle := fs.Duration("idle", durable.DefaultIdleTimeout, "idle time before an object is evicted")
	nosync := fs.Bool("nosync", false, "acknowledge writes without fsync (not durable against power loss)")
	admin := fs.String("admin", "", "serve the admin API (durable CLI) on this loopback address; token in $DURABLE_ADMIN_TOKEN")
	if err := fs.Parse(args); err != nil {
		return err
	}
	opts := durable.Options{Dir: *data, IdleTimeout: *idle, Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))}
	if *nosync {
		opts.Durability = durable.NoSync
	}
	if *admin != "" {
		opts.AdminAddr, opts.AdminToken = *admin, os.Getenv("DURABLE_ADMIN_TOKEN")
	}
	rt, err := durable.Open(opts)
	if err != nil {
		return err
	}
	a, err := newApp(rt)
	if err != nil {
		rt.Close()
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		rt.Close()
		return err
	}
	srv := &http.Server{
		Handler:           a,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    32 << 10,
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	fmt.Fprintf(os.Stderr, "listening on http://%s (data in %s)\n", ln.Addr(), *data)
	if u := rt.AdminURL(); u != "" {
		fmt.Fprintf(os.Stderr, "admin API on %s\n", u)
	}
	select {
	case err = <-errc:
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	serr := srv.Shutdown(sctx)
	rerr := rt.Shutdown(sctx)
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return errors.Join(err, serr, rerr)
}
