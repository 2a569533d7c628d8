package inspect

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// The admin API over HTTP, version 1. Every request carries the header
// "Authorization: Bearer <token>"; without it, or with another token, the
// answer is 401 and nothing is done. Objects are addressed as
// /v1/objects/{namespace}/{ref}, ref being an ID or a path-escaped name.
//
//	GET  /v1/namespaces                         []Namespace
//	GET  /v1/objects[?namespace=NS]             []Object
//	GET  /v1/objects/{ns}/{ref}                 Object
//	POST /v1/objects/{ns}/{ref}/sql             Query -> Result
//	GET  /v1/objects/{ns}/{ref}/kv?key=K...     []KVEntry (KVGet)
//	GET  /v1/objects/{ns}/{ref}/kv[?prefix=&start=&start_after=&end=&reverse=1&limit=N]
//	                                            []KVEntry (KVList)
//	GET  /v1/alarms                             []Alarm
//	GET  /v1/objects/{ns}/{ref}/export?format=sqlite|json   the export
//	PUT  /v1/objects/{ns}/{ref}/import?format=sqlite|json   ImportResult
//	GET  /v1/check[?namespace=NS]               JSON lines: CheckEvent...
//
// Errors come back with their HTTP status and a JSON body
// {"error": message, "code": code}; Client turns them back into errors
// matching this package's sentinels.

// Error codes of the HTTP API, one per sentinel.
var errorCodes = []struct {
	code   string
	status int
	err    error
}{
	{"not_found", http.StatusNotFound, ErrNotFound},
	{"read_only", http.StatusForbidden, ErrReadOnly},
	{"forbidden", http.StatusForbidden, ErrForbidden},
	{"invalid", http.StatusBadRequest, ErrInvalid},
	{"busy", http.StatusConflict, ErrBusy},
	{"locked", http.StatusConflict, ErrLocked},
	{"exists", http.StatusConflict, ErrExists},
	{"unauthorized", http.StatusUnauthorized, ErrUnauthorized},
}

// maxQueryBody bounds the body of a sql request.
const maxQueryBody = 1 << 20

// CheckEvent is one line of the check stream: progress (Done of Total
// objects checked), a result, or the error that stopped the check.
type CheckEvent struct {
	Done   int          `json:"done,omitempty"`
	Total  int          `json:"total,omitempty"`
	Result *CheckResult `json:"result,omitempty"`
	Error  *ErrorBody   `json:"error,omitempty"`
}

// ErrorBody is the body of an error response, and the error of a
// CheckEvent.
type ErrorBody struct {
	Message string `json:"error"`
	Code    string `json:"code"`
}

// Route is a route NewHandler serves besides the API's, behind the same
// token.
type Route struct {
	Pattern string // an http.ServeMux pattern, such as "GET /metrics"
	Handler http.Handler
}

// NewHandler returns the HTTP handler of api, accepting requests that
// carry token as a bearer token, and serving routes besides the API's.
// token must not be empty. It is compared in constant time, and a refused
// request does nothing.
func NewHandler(api API, token string, routes ...Route) (http.Handler, error) {
	if token == "" {
		return nil, fmt.Errorf("%w: empty admin token", ErrInvalid)
	}
	h := &handler{api: api, token: sha256.Sum256([]byte(token))}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/namespaces", h.namespaces)
	mux.HandleFunc("GET /v1/objects", h.objects)
	mux.HandleFunc("GET /v1/objects/{ns}/{ref}", h.object)
	mux.HandleFunc("POST /v1/objects/{ns}/{ref}/sql", h.query)
	mux.HandleFunc("GET /v1/objects/{ns}/{ref}/kv", h.kv)
	mux.HandleFunc("GET /v1/objects/{ns}/{ref}/export", h.export)
	mux.HandleFunc("PUT /v1/objects/{ns}/{ref}/import", h.importObject)
	mux.HandleFunc("GET /v1/alarms", h.alarms)
	mux.HandleFunc("GET /v1/check", h.check)
	for _, r := range routes {
		mux.Handle(r.Pattern, r.Handler)
	}
	h.mux = mux
	return h, nil
}

type handler struct {
	api   API
	token [sha256.Size]byte
	mux   *http.ServeMux
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !h.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="durable admin"`)
		writeError(w, ErrUnauthorized)
		return
	}
	h.mux.ServeHTTP(w, r)
}

// authorized compares the request's bearer token with the handler's in
// constant time (both hashed first, so not even the length leaks).
func (h *handler) authorized(r *http.Request) bool {
	auth := r.Header.Get("Authorization")
	const scheme = "Bearer " // case-insensitive (RFC 7235)
	if len(auth) <= len(scheme) || !strings.EqualFold(auth[:len(scheme)], scheme) {
		return false
	}
	tok := auth[len(scheme):]
	got := sha256.Sum256([]byte(tok))
	return subtle.ConstantTimeCompare(got[:], h.token[:]) == 1
}

// writeJSON writes v with status 200.
func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// errorOf maps err to its code and HTTP status.
func errorOf(err error) (ErrorBody, int) {
	e := ErrorBody{Message: err.Error(), Code: "internal"}
	status := http.StatusInternalServerError
	for _, c := range errorCodes {
		if errors.Is(err, c.err) {
			e.Code, status = c.code, c.status
			break
		}
	}
	if e.Code == "internal" && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		status = http.StatusServiceUnavailable
	}
	return e, status
}

func writeError(w http.ResponseWriter, err error) {
	e, status := errorOf(err)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(e)
}

// reply writes v, or err if it is not nil.
func reply(w http.ResponseWriter, v any, err error) {
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, v)
}

func (h *handler) namespaces(w http.ResponseWriter, r *http.Request) {
	v, err := h.api.Namespaces(r.Context())
	reply(w, v, err)
}

func (h *handler) objects(w http.ResponseWriter, r *http.Request) {
	v, err := h.api.Objects(r.Context(), r.URL.Query().Get("namespace"))
	reply(w, v, err)
}

func (h *handler) object(w http.ResponseWriter, r *http.Request) {
	v, err := h.api.Object(r.Context(), r.PathValue("ns"), r.PathValue("ref"))
	reply(w, v, err)
}

func (h *handler) query(w http.ResponseWriter, r *http.Request) {
	var q Query
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxQueryBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&q); err != nil {
		writeError(w, fmt.Errorf("%w: query body: %v", ErrInvalid, err))
		return
	}
	v, err := h.api.Query(r.Context(), r.PathValue("ns"), r.PathValue("ref"), q)
	reply(w, v, err)
}

func (h *handler) kv(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ns, ref := r.PathValue("ns"), r.PathValue("ref")
	if keys, ok := q["key"]; ok {
		v, err := h.api.KVGet(r.Context(), ns, ref, keys)
		reply(w, v, err)
		return
	}
	opts := KVList{Prefix: q.Get("prefix"), Start: q.Get("start"), StartAfter: q.Get("start_after"), End: q.Get("end"),
		Reverse: q.Get("reverse") == "1"}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			writeError(w, fmt.Errorf("%w: limit %q", ErrInvalid, s))
			return
		}
		opts.Limit = n
	}
	v, err := h.api.KVList(r.Context(), ns, ref, opts)
	reply(w, v, err)
}

func (h *handler) alarms(w http.ResponseWriter, r *http.Request) {
	v, err := h.api.Alarms(r.Context())
	reply(w, v, err)
}

// export streams the export. Its first bytes are written only once the
// copy is made, so a failure before that still gets an error status.
func (h *handler) export(w http.ResponseWriter, r *http.Request) {
	format, err := ParseFormat(r.URL.Query().Get("format"))
	if err != nil {
		writeError(w, err)
		return
	}
	lw := &lazyWriter{w: w, format: format}
	err = h.api.Export(r.Context(), r.PathValue("ns"), r.PathValue("ref"), format, lw)
	if err != nil && !lw.started {
		writeError(w, err)
		return
	}
	// A failure in the middle of the stream can only cut it short; the
	// client sees a truncated body.
}

// lazyWriter sets the content type at the first write.
type lazyWriter struct {
	w       http.ResponseWriter
	format  Format
	started bool
}

func (l *lazyWriter) Write(p []byte) (int, error) {
	if !l.started {
		l.started = true
		ct := "application/vnd.sqlite3"
		if l.format == FormatJSON {
			ct = "application/json"
		}
		l.w.Header().Set("Content-Type", ct)
	}
	return l.w.Write(p)
}

func (h *handler) importObject(w http.ResponseWriter, r *http.Request) {
	format, err := ParseFormat(r.URL.Query().Get("format"))
	if err != nil {
		writeError(w, err)
		return
	}
	v, err := h.api.Import(r.Context(), r.PathValue("ns"), r.PathValue("ref"), format, r.Body)
	reply(w, v, err)
}

// check streams JSON lines: a progress event after each object, then the
// results, or an error event if the check stopped.
func (h *handler) check(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/x-ndjson")
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	flusher, _ := w.(http.Flusher)
	flush := func() {
		bw.Flush()
		if flusher != nil {
			flusher.Flush()
		}
	}
	results, err := h.api.Check(r.Context(), r.URL.Query().Get("namespace"), func(done, total int) {
		enc.Encode(CheckEvent{Done: done, Total: total})
		flush()
	})
	if err != nil {
		e, _ := errorOf(err)
		enc.Encode(CheckEvent{Error: &e})
	}
	for i := range results {
		enc.Encode(CheckEvent{Result: &results[i]})
	}
	flush()
}
