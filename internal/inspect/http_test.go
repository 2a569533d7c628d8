package inspect_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/durable-go/durable/internal/inspect"
)

const token = "0123456789abcdef-test-token"

// serve serves f's API on a loopback test server and returns a client.
func serve(t testing.TB, f *inspect.Folder) (*httptest.Server, *inspect.Client) {
	t.Helper()
	h, err := inspect.NewHandler(f, token)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c, err := inspect.NewClient(srv.URL, token, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	return srv, c
}

// Ensure a request without the right token gets 401 and changes nothing.
func TestHandler_Token(t *testing.T) {
	dir := t.TempDir()
	id := writeObject(t, dir, richObject)
	f := newFolder(t, dir)
	srv, _ := serve(t, f)
	path := dbPath(dir, "Room", id)
	before := fileState(t, path)

	var dump bytes.Buffer
	if err := f.Export(context.Background(), "Room", "lobby", inspect.FormatJSON, &dump); err != nil {
		t.Fatal(err)
	}
	empty := `{"format":"durable-object/v1","schema":[],"tables":[],"kv":[]}`
	requests := []struct {
		method, path, body string
	}{
		{"POST", "/v1/objects/Room/lobby/sql", `{"sql":"DELETE FROM messages","write":true}`},
		{"PUT", "/v1/objects/Room/lobby/import?format=json", empty},
		{"GET", "/v1/objects/Room/lobby/export?format=json", ""},
		{"GET", "/v1/objects", ""},
		{"GET", "/v1/nothing-here", ""},
	}
	for _, auth := range []string{"", "Bearer", "Bearer ", "Bearer wrong-token-of-some-length", "Basic " + token, "Bearer  " + token, "Bearer " + token + "x", "Bearer " + token[:len(token)-1]} {
		for _, r := range requests {
			req, _ := http.NewRequest(r.method, srv.URL+r.path, strings.NewReader(r.body))
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), `"code":"unauthorized"`) || bytes.Contains(body, []byte("messages")) {
				t.Errorf("%s %s with %q: got %d %s, want 401", r.method, r.path, auth, resp.StatusCode, body)
			}
			if resp.Header.Get("WWW-Authenticate") == "" {
				t.Errorf("401 without WWW-Authenticate")
			}
		}
	}
	if after := fileState(t, path); after != before {
		t.Fatalf("refused requests changed the object:\nbefore %s\nafter  %s", before, after)
	}
	// The right token works (and the write happens).
	c, err := inspect.NewClient(srv.URL, "wrong-token-of-some-length", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Objects(context.Background(), ""); !errors.Is(err, inspect.ErrUnauthorized) {
		t.Fatalf("client with a wrong token: got %v, want ErrUnauthorized", err)
	}
	req, _ := http.NewRequest("GET", srv.URL+"/v1/namespaces", nil)
	req.Header.Set("Authorization", "bearer "+token) // the scheme is case-insensitive
	if resp, err := srv.Client().Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("lower-case scheme: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	c, _ = inspect.NewClient(srv.URL, token, nil)
	if _, err := c.Query(context.Background(), "Room", "lobby", inspect.Query{SQL: "DELETE FROM messages", Write: true}); err != nil {
		t.Fatal(err)
	}
	if after := fileState(t, path); after == before {
		t.Fatal("the authorized write changed nothing")
	}
	if _, err := inspect.NewHandler(f, ""); !errors.Is(err, inspect.ErrInvalid) {
		t.Fatalf("NewHandler with no token: got %v", err)
	}
}

func TestNewClient(t *testing.T) {
	for _, u := range []string{"http://127.0.0.1:1", "http://[::1]:1", "http://localhost:1", "https://admin.example.com"} {
		if _, err := inspect.NewClient(u, token, nil); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
	for _, u := range []string{"http://example.com:1", "http://10.0.0.1:1", "ftp://127.0.0.1", "127.0.0.1:1", ""} {
		if _, err := inspect.NewClient(u, token, nil); !errors.Is(err, inspect.ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", u, err)
		}
	}
}

// Ensure the Client gives what the Folder gives, results and errors alike,
// so the CLI prints the same thing offline and against a running app.
func TestClient_SameAsFolder(t *testing.T) {
	dir := t.TempDir()
	writeObject(t, dir, richObject)
	writeObject(t, dir, object{ns: "Counter", name: "a/b c", sql: []string{"CREATE TABLE c (v)"}, kv: map[string]any{"k": "v", "nan": math.NaN()}})
	f := newFolder(t, dir)
	_, c := serve(t, f)
	ctx := context.Background()
	var fdump, cdump bytes.Buffer

	calls := map[string]func(api inspect.API) (any, error){
		"Namespaces":     func(api inspect.API) (any, error) { return api.Namespaces(ctx) },
		"Objects":        func(api inspect.API) (any, error) { return api.Objects(ctx, "") },
		"Objects Room":   func(api inspect.API) (any, error) { return api.Objects(ctx, "Room") },
		"Objects bad":    func(api inspect.API) (any, error) { return api.Objects(ctx, "-x") },
		"Object by name": func(api inspect.API) (any, error) { return api.Object(ctx, "Counter", "a/b c") },
		"Object missing": func(api inspect.API) (any, error) { return api.Object(ctx, "Counter", "zzz") },
		"Query": func(api inspect.API) (any, error) {
			return api.Query(ctx, "Room", "lobby", inspect.Query{SQL: "SELECT * FROM messages"})
		},
		"Query write": func(api inspect.API) (any, error) {
			return api.Query(ctx, "Room", "lobby", inspect.Query{SQL: "DELETE FROM tags"})
		},
		"Query error": func(api inspect.API) (any, error) {
			return api.Query(ctx, "Room", "lobby", inspect.Query{SQL: "SELEKT"})
		},
		"KVGet": func(api inspect.API) (any, error) {
			return api.KVGet(ctx, "Counter", "a/b c", []string{"k", "nan", "x"})
		},
		"KVList": func(api inspect.API) (any, error) {
			return api.KVList(ctx, "Room", "lobby", inspect.KVList{Start: "c", Limit: 2})
		},
		"KVList bad": func(api inspect.API) (any, error) {
			return api.KVList(ctx, "Room", "lobby", inspect.KVList{Start: "a", StartAfter: "b"})
		},
		"Alarms": func(api inspect.API) (any, error) { return api.Alarms(ctx) },
		"Check":  func(api inspect.API) (any, error) { return api.Check(ctx, "", nil) },
		"Export": func(api inspect.API) (any, error) {
			buf := &fdump
			if api == inspect.API(c) {
				buf = &cdump
			}
			return nil, api.Export(ctx, "Room", "lobby", inspect.FormatJSON, buf)
		},
		"Export missing": func(api inspect.API) (any, error) {
			return nil, api.Export(ctx, "Room", "none", inspect.FormatSQLite, io.Discard)
		},
	}
	for name, call := range calls {
		fv, ferr := call(f)
		cv, cerr := call(c)
		fj, _ := json.Marshal(fv)
		cj, _ := json.Marshal(cv)
		if !bytes.Equal(fj, cj) {
			t.Errorf("%s: folder %s\nclient %s", name, fj, cj)
		}
		if (ferr == nil) != (cerr == nil) || (ferr != nil && ferr.Error() != cerr.Error()) {
			t.Errorf("%s: folder error %v, client error %v", name, ferr, cerr)
		}
		for _, sentinel := range []error{inspect.ErrNotFound, inspect.ErrInvalid, inspect.ErrReadOnly} {
			if errors.Is(ferr, sentinel) != errors.Is(cerr, sentinel) {
				t.Errorf("%s: errors.Is(%v): folder %v, client %v", name, sentinel, errors.Is(ferr, sentinel), errors.Is(cerr, sentinel))
			}
		}
	}
	if fdump.String() != cdump.String() || fdump.Len() == 0 {
		t.Errorf("exports differ:\n%s\n%s", fdump.String(), cdump.String())
	}
	// Progress travels too.
	var fp, cp []int
	f.Check(ctx, "", func(d, n int) { fp = append(fp, d, n) })
	c.Check(ctx, "", func(d, n int) { cp = append(cp, d, n) })
	if !reflect.DeepEqual(fp, cp) || len(fp) != 6 {
		t.Errorf("check progress: folder %v, client %v", fp, cp)
	}
	// Import and backup through the client.
	res, err := c.Import(ctx, "Room", "copy", inspect.FormatJSON, bytes.NewReader(fdump.Bytes()))
	if err != nil || res.Rows != 11 {
		t.Fatalf("Import through the client: %+v, %v", res, err)
	}
	if got, want := exportJSON(t, f, "Room", "copy"), exportJSON(t, f, "Room", "lobby"); !reflect.DeepEqual(got, want) {
		t.Fatal("import through the client differs")
	}
	b, err := inspect.Backup(ctx, c, t.TempDir(), nil)
	if err != nil || b.Objects != 3 || b.Alarms != 2 {
		t.Fatalf("Backup through the client: %+v, %v", b, err)
	}
}

func TestValue_JSON(t *testing.T) {
	for _, v := range []any{nil, int64(0), int64(-1), int64(math.MaxInt64), int64(math.MinInt64), 0.0, 1.0, -2.5, 1e300, 5e-324,
		math.Inf(1), math.Inf(-1), "", "text", "1.0", "{\"base64\":\"\"}", []byte{}, []byte{0, 1, 255}} {
		b, err := json.Marshal(inspect.Value{V: v})
		if err != nil {
			t.Fatalf("%#v: %v", v, err)
		}
		var got inspect.Value
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%#v (%s): %v", v, b, err)
		}
		if !reflect.DeepEqual(got.V, v) {
			t.Errorf("%#v: round trip through %s gave %#v", v, b, got.V)
		}
	}
	for _, bad := range []string{`{}`, `{"base64":"!"}`, `1.2.3`, `true`, `[]`, `99999999999999999999`} {
		var v inspect.Value
		if err := json.Unmarshal([]byte(bad), &v); err == nil {
			t.Errorf("%s: decoded as %#v, want an error", bad, v.V)
		}
	}
}
