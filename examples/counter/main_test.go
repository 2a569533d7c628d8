package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/durable-go/durable"
	"github.com/durable-go/durable/durabletest"
)

// get fetches url and returns the response's status and body.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

func TestCounter(t *testing.T) {
	dir := t.TempDir()
	for round, want := range []string{"visits: 1 visits\n", "visits: 2 visits\n"} {
		// Each round is a fresh process-like runtime over the same data.
		rt := durabletest.NewRuntime(t, durable.Options{Dir: dir})
		srv := durabletest.NewServer(t, handler(durable.MustRegister(rt, "Counter", NewCounter, struct{}{})))
		if _, body := get(t, srv.URL+"/visits"); body != want {
			t.Errorf("round %d: got %q, want %q", round, body, want)
		}
		srv.Close()
		if err := rt.Shutdown(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCounter_Objects(t *testing.T) {
	rt := durabletest.NewRuntime(t, durable.Options{})
	counters := durable.MustRegister(rt, "Counter", NewCounter, struct{}{})
	srv := durabletest.NewServer(t, handler(counters))
	for range 3 {
		get(t, srv.URL+"/a")
	}
	get(t, srv.URL+"/b")

	// Each visit is one row in the counter's own database.
	rows := func(name string) int64 {
		t.Helper()
		var n int64
		err := durabletest.RunIn(t.Context(), counters.GetByName(name), func(ctx context.Context, c *Counter, st *durable.State) error {
			cur, err := c.sql.Exec(`SELECT count(*) FROM hits`)
			if err != nil {
				return err
			}
			return cur.One(&n)
		})
		if err != nil {
			t.Fatalf("RunIn(%s): %v", name, err)
		}
		return n
	}
	if a, b := rows("a"), rows("b"); a != 3 || b != 1 {
		t.Errorf("rows: a %d, b %d; want 3, 1", a, b)
	}

	// Leaving memory loses nothing.
	if n, err := durabletest.EvictAll(t.Context(), rt, durabletest.Hibernate); n != 2 || err != nil {
		t.Errorf("EvictAll = %d, %v; want 2 counters", n, err)
	}
	if _, body := get(t, srv.URL+"/a"); body != "a: 4 visits\n" {
		t.Errorf("after eviction: %q, want 4 visits", body)
	}

	// Exactly the counters visited have data.
	ids, err := durabletest.ListIDs(counters)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, name := range []string{"a", "b"} {
		id, _ := counters.IDFromName(name)
		for _, got := range ids {
			if got.Equal(id) {
				names = append(names, name)
			}
		}
	}
	if len(ids) != 2 || len(names) != 2 {
		t.Errorf("counters with data: %v, want a and b", ids)
	}

	// A name the runtime refuses is a bad request.
	if code, _ := get(t, srv.URL+"/"+strings.Repeat("n", durable.MaxNameLength+1)); code != http.StatusBadRequest {
		t.Errorf("too long a name: status %d, want 400", code)
	}
}
