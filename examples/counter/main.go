// Command counter is the smallest complete durable app: every path names a
// counter object, and each visit increments it in the object's own SQLite
// database, durably, one turn at a time.
//
//	go run ./examples/counter
//	curl http://127.0.0.1:8080/visits      # 1, 2, 3...
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/durable-go/durable"
)

// Counter is a durable object: one per name.
type Counter struct {
	sql *durable.SQL
}

// NewCounter builds a Counter; it runs once per activation, before any call.
func NewCounter(st *durable.State, _ struct{}) (*Counter, error) {
	c := &Counter{sql: st.Storage().SQL()}
	_, err := c.sql.Exec(`CREATE TABLE IF NOT EXISTS hits (n INTEGER NOT NULL)`)
	return c, err
}

// Hit records a visit and returns the number of visits so far.
func (c *Counter) Hit(ctx context.Context) (int64, error) {
	if _, err := c.sql.Exec(`INSERT INTO hits (n) VALUES (1)`); err != nil {
		return 0, err
	}
	var n int64
	cur, err := c.sql.Exec(`SELECT count(*) FROM hits`)
	if err != nil {
		return 0, err
	}
	return n, cur.One(&n)
}

// handler routes /{name} to the counter called name.
func handler(counters *durable.Namespace[Counter]) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{name}", func(w http.ResponseWriter, r *http.Request) {
		n, err := durable.Call0(r.Context(), counters.GetByName(r.PathValue("name")), (*Counter).Hit)
		if errors.Is(err, durable.ErrInvalidName) {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "%s: %d visits\n", r.PathValue("name"), n)
	})
	return mux
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	dir := flag.String("data", "durable-data", "data folder")
	flag.Parse()

	rt, err := durable.Open(durable.Options{Dir: *dir})
	if err != nil {
		log.Fatal(err)
	}
	counters := durable.MustRegister(rt, "Counter", NewCounter, struct{}{})
	srv := &http.Server{Addr: *addr, Handler: handler(counters), ReadHeaderTimeout: 10 * time.Second}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	log.Printf("counter example: open http://%s/visits (data in %s)", *addr, *dir)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		log.Print(err)
	}
	if err := rt.Shutdown(context.Background()); err != nil {
		log.Print(err)
	}
}
