package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/durable-go/durable"
)

func TestCounter(t *testing.T) {
	dir := t.TempDir()
	for round, want := range []string{"visits: 1 visits\n", "visits: 2 visits\n"} {
		// Each round is a fresh process-like runtime over the same data.
		rt, err := durable.Open(durable.Options{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(handler(durable.MustRegister(rt, "Counter", NewCounter, struct{}{})))
		resp, err := http.Get(srv.URL + "/visits")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != want {
			t.Errorf("round %d: got %q, want %q", round, body, want)
		}
		srv.Close()
		if err := rt.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}
