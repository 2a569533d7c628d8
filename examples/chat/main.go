// Command chat is a chat server built on durable: each room is a durable
// object holding its message history in its own SQLite database and its
// members as hibernating WebSockets. A room with nobody talking leaves
// memory while its members stay connected; the next message brings it
// back.
//
//	go run ./examples/chat                    # http://127.0.0.1:8080
//	go run ./examples/chat -addr :9000 -data /tmp/chat
//
// Open the page in two browser windows, pick a room and a nickname in
// each, and talk. The history survives restarts (it is in ./chat-data by
// default).
package main

import (
	"context"
	"embed"
	"errors"
	"flag"
	"io/fs"
	"log"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/durable-go/durable"
)

//go:embed static
var static embed.FS

// app is the chat server: a runtime with the Room namespace and the HTTP
// handler serving the page and the rooms.
type app struct {
	rt      *durable.Runtime
	rooms   *durable.Namespace[Room]
	handler http.Handler
}

// newApp opens the runtime over dir.
func newApp(dir string, logger *slog.Logger) (*app, error) {
	rt, err := durable.Open(durable.Options{Dir: dir, Logger: logger})
	if err != nil {
		return nil, err
	}
	a, err := newAppOn(rt, time.Now)
	if err != nil {
		rt.Close()
		return nil, err
	}
	return a, nil
}

// newAppOn builds the app on an open runtime; now is the rooms' clock.
func newAppOn(rt *durable.Runtime, now func() time.Time) (*app, error) {
	rooms, err := durable.Register(rt, "Room", NewRoom, now)
	if err != nil {
		return nil, err
	}
	page, err := fs.Sub(static, "static")
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /", http.FileServerFS(page))
	// /rooms/{name}/ws and /rooms/{name}/history reach the room called name.
	mux.Handle("GET /rooms/", http.StripPrefix("/rooms", durable.Route(rooms)))
	return &app{rt: rt, rooms: rooms, handler: mux}, nil
}

// close shuts the runtime down, closing the members' sockets.
func (a *app) close(ctx context.Context) error { return a.rt.Shutdown(ctx) }

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	dir := flag.String("data", "chat-data", "data folder")
	flag.Parse()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))

	a, err := newApp(*dir, logger)
	if err != nil {
		log.Fatal(err)
	}
	srv := durable.NewServer(*addr, a.handler)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	log.Printf("chat: open http://%s (data in %s)", *addr, *dir)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		log.Print(err)
		stop()
	}
	<-done
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.close(sctx); err != nil {
		log.Print(err)
	}
}
