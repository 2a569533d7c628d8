package durable

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/durable-go/durable/internal/socket"
)

// HTTP limits and server defaults (see NewServer). The numbers follow
// Cloudflare's where it has one.
const (
	// MaxRequestBody is the largest request body, in bytes, that
	// Stub.ServeHTTP and Stub.Fetch pass to an object (the body is read
	// into memory before the object's turn starts, so a slow client never
	// holds the object). A larger body gets 413.
	MaxRequestBody = 100 << 20
	// MaxResponseBody is the largest response an object's ServeHTTP may
	// write, in bytes: the response is held in memory until the turn's
	// writes are durable. Past it Write fails with ErrResponseTooLarge.
	MaxResponseBody = 32 << 20
	// MaxURLLength bounds the request target (path and query), in bytes,
	// under LimitRequests (and so NewServer): longer gets 414.
	MaxURLLength = 16 << 10
	// DefaultMaxHeaderBytes is NewServer's MaxHeaderBytes (net/http adds
	// 4 KiB of slack to it): larger request headers get 431.
	DefaultMaxHeaderBytes = 32 << 10
	// DefaultReadHeaderTimeout is NewServer's ReadHeaderTimeout: a client
	// must send its request headers within it (slowloris).
	DefaultReadHeaderTimeout = 10 * time.Second
	// DefaultServerIdleTimeout is NewServer's IdleTimeout: an idle
	// keep-alive connection is closed after it. Hijacked WebSockets are not
	// affected.
	DefaultServerIdleTimeout = 120 * time.Second
)

var (
	// ErrResponseTooLarge is returned by the Write of an object's
	// response past MaxResponseBody.
	ErrResponseTooLarge = errors.New("durable: response body too large")
	// ErrNoHTTPHandler means the object type does not implement
	// http.Handler; Stub.ServeHTTP answers 501.
	ErrNoHTTPHandler = errors.New("durable: object does not handle HTTP (no ServeHTTP method)")
	// ErrRequestTooLarge means the request body is over MaxRequestBody;
	// Stub.ServeHTTP answers 413.
	ErrRequestTooLarge = errors.New("durable: request body too large")
)

var httpHandlerType = reflect.TypeFor[http.Handler]()

// responseBuffer is the http.ResponseWriter an object's ServeHTTP writes
// to: everything is held until the turn's writes are durable.
type responseBuffer struct {
	header      http.Header
	status      int
	wroteHeader bool
	body        bytes.Buffer
	canUpgrade  bool         // the real connection can be hijacked
	upgrade     *socket.Conn // set by AcceptWebSocket
}

func newResponseBuffer(canUpgrade bool) *responseBuffer {
	return &responseBuffer{header: make(http.Header), status: http.StatusOK, canUpgrade: canUpgrade}
}

func (b *responseBuffer) Header() http.Header { return b.header }

func (b *responseBuffer) WriteHeader(code int) {
	if b.wroteHeader || b.upgrade != nil {
		return
	}
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if code < 200 {
		return // informational responses cannot pass the output gate early
	}
	b.status = code
	b.wroteHeader = true
}

func (b *responseBuffer) Write(p []byte) (int, error) {
	if b.upgrade != nil {
		return 0, http.ErrHijacked
	}
	if !b.wroteHeader {
		b.WriteHeader(http.StatusOK)
	}
	if b.body.Len()+len(p) > MaxResponseBody {
		return 0, fmt.Errorf("%w: more than %d bytes", ErrResponseTooLarge, MaxResponseBody)
	}
	return b.body.Write(p)
}

// canHijack reports whether w (or a writer it wraps) can be hijacked.
func canHijack(w http.ResponseWriter) bool {
	for {
		if _, ok := w.(http.Hijacker); ok {
			return true
		}
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return false
		}
		w = u.Unwrap()
	}
}

// readBody reads r's body into memory, at most MaxRequestBody bytes.
func readBody(r *http.Request) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	if r.ContentLength > MaxRequestBody {
		return nil, fmt.Errorf("%w: %d bytes, maximum %d", ErrRequestTooLarge, r.ContentLength, MaxRequestBody)
	}
	var b []byte
	var err error
	if n := r.ContentLength; n > 0 {
		// Known length: one allocation, then make sure nothing follows.
		b = make([]byte, n)
		if _, err = io.ReadFull(r.Body, b); err == nil {
			if m, _ := r.Body.Read(make([]byte, 1)); m > 0 {
				err = fmt.Errorf("body longer than its Content-Length %d", n)
			}
		}
	} else {
		b, err = io.ReadAll(io.LimitReader(r.Body, MaxRequestBody+1))
	}
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return nil, fmt.Errorf("%w: maximum %d", ErrRequestTooLarge, mbe.Limit)
	case err != nil:
		return nil, fmt.Errorf("durable: read request body: %w", err)
	case len(b) > MaxRequestBody:
		return nil, fmt.Errorf("%w: maximum %d", ErrRequestTooLarge, MaxRequestBody)
	}
	return b, nil
}

// fetch runs the object's ServeHTTP for r in a turn, into rb.
func (c *nsCore) fetch(ctx context.Context, id ID, r *http.Request, body []byte, rb *responseBuffer) error {
	if !c.typ.Implements(httpHandlerType) {
		return ErrNoHTTPHandler
	}
	return c.invokeKind(ctx, kindFetch, id, func() string { return "ServeHTTP" }, func(ctx context.Context, inst any) error {
		r2 := r.Clone(ctx)
		r2.Body = io.NopCloser(bytes.NewReader(body))
		r2.ContentLength = int64(len(body))
		r2.GetBody = nil
		r2.TransferEncoding = nil
		inst.(http.Handler).ServeHTTP(rb, r2)
		return nil
	})
}

// ServeHTTP forwards r to the object's ServeHTTP, as one of its turns, and
// writes its response to w once the turn's writes are durable. A Stub is
// thus an http.Handler (see Route for routing by name). If the object
// accepted a WebSocket, the connection is upgraded and handed to the
// runtime. Failures map to status codes: a bad object name 400, a request
// body over MaxRequestBody 413, an object without ServeHTTP 501, an
// overloaded object or a closed runtime 503 (with Retry-After), anything
// else 500 (details are logged, not sent).
func (s *Stub[T]) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.c.serveHTTP(s.id, s.err, w, r) }

func (c *nsCore) serveHTTP(id ID, stubErr error, w http.ResponseWriter, r *http.Request) {
	if stubErr != nil {
		c.httpError(w, r, id, stubErr)
		return
	}
	body, err := readBody(r)
	if err != nil {
		c.httpError(w, r, id, err)
		return
	}
	rb := newResponseBuffer(r.ProtoMajor == 1 && canHijack(w))
	err = c.fetch(r.Context(), id, r, body, rb)
	if conn := rb.upgrade; conn != nil {
		if err != nil {
			conn.Abandon()
			c.httpError(w, r, id, err)
			return
		}
		nc, pre, uerr := socket.Upgrade(w, r, rb.header, conn.Protocol())
		if uerr != nil {
			conn.Abandon()
			c.rt.log.Info("websocket upgrade failed", "namespace", c.name, "id", id.String(), "err", uerr)
			return
		}
		conn.Attach(nc, pre) // fails only at shutdown, closing nc
		return
	}
	if err != nil {
		c.httpError(w, r, id, err)
		return
	}
	h := w.Header()
	for k, v := range rb.header {
		h[k] = v
	}
	if rb.body.Len() > 0 && h.Get("Content-Length") == "" && h.Get("Transfer-Encoding") == "" {
		h.Set("Content-Length", strconv.Itoa(rb.body.Len()))
	}
	w.WriteHeader(rb.status)
	if r.Method != http.MethodHead {
		w.Write(rb.body.Bytes())
	}
}

// httpError answers a failed forward with a status code.
func (c *nsCore) httpError(w http.ResponseWriter, r *http.Request, id ID, err error) {
	var idErr *IDError
	var re *RemoteError
	switch {
	case errors.Is(err, ErrInvalidName) || errors.As(err, &idErr) || errors.Is(err, ErrMalformedID):
		http.Error(w, err.Error(), http.StatusBadRequest)
	case errors.Is(err, ErrRequestTooLarge):
		http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
	case errors.Is(err, ErrNoHTTPHandler):
		http.Error(w, err.Error(), http.StatusNotImplemented)
	case errors.Is(err, ErrOverloaded) || errors.Is(err, ErrClosed):
		w.Header().Set("Retry-After", "1")
		http.Error(w, "durable: object unavailable, retry later", http.StatusServiceUnavailable)
	case r.Context().Err() != nil:
		// The client is gone; nobody reads the answer.
	default:
		if errors.As(err, &re) && re.Panic {
			c.rt.log.Error("object panicked in ServeHTTP", "namespace", c.name, "id", id.String(), "err", err)
		} else {
			c.rt.log.Warn("object ServeHTTP failed", "namespace", c.name, "id", id.String(), "err", err)
		}
		http.Error(w, "durable: internal error", http.StatusInternalServerError)
	}
}

// Fetch sends r to the object's ServeHTTP, as one of its turns, and
// returns the buffered response once the turn's writes are durable. Called
// from another object's handler, pass that handler's ctx (see Stub). The
// response cannot be a WebSocket (AcceptWebSocket fails with
// ErrNotUpgradable). Errors are those of Call plus ErrNoHTTPHandler and
// ErrRequestTooLarge; a panic in ServeHTTP is a *RemoteError.
func (s *Stub[T]) Fetch(ctx context.Context, r *http.Request) (*http.Response, error) {
	if s.err != nil {
		return nil, s.err
	}
	body, err := readBody(r)
	if err != nil {
		return nil, err
	}
	rb := newResponseBuffer(false)
	if err := s.c.fetch(ctx, s.id, r, body, rb); err != nil {
		return nil, err
	}
	return &http.Response{
		Status:        fmt.Sprintf("%d %s", rb.status, http.StatusText(rb.status)),
		StatusCode:    rb.status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        rb.header.Clone(),
		Body:          io.NopCloser(bytes.NewReader(rb.body.Bytes())),
		ContentLength: int64(rb.body.Len()),
		Request:       r,
	}, nil
}

// Route returns a handler that sends a request for /{name}/rest to the
// object of ns called name (URL-unescaped), with the request's path
// rewritten to /rest, as http.StripPrefix would. The object knows its name
// through State.Name. "/" and "//..." get 404; an invalid name 400. Mount
// it under a prefix with http.StripPrefix:
//
//	mux.Handle("/rooms/", http.StripPrefix("/rooms", durable.Route(rooms)))
func Route[T any](ns *Namespace[T]) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.EscapedPath()
		seg, rest, _ := strings.Cut(strings.TrimPrefix(p, "/"), "/")
		name, err := url.PathUnescape(seg)
		if !strings.HasPrefix(p, "/") || err != nil || name == "" {
			http.NotFound(w, r)
			return
		}
		r2 := new(http.Request)
		*r2 = *r
		u := *r.URL
		u.RawPath = "/" + rest
		u.Path, err = url.PathUnescape(u.RawPath)
		if err != nil {
			http.NotFound(w, r)
			return
		}
		r2.URL = &u
		ns.GetByName(name).ServeHTTP(w, r2)
	})
}

// LimitRequests wraps h so that a request target longer than MaxURLLength
// gets 414 and a body longer than maxBody gets 413 (or makes reads fail
// with *http.MaxBytesError once past it).
func LimitRequests(h http.Handler, maxBody int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.RequestURI) > MaxURLLength {
			http.Error(w, "durable: URL too long", http.StatusRequestURITooLong)
			return
		}
		if r.ContentLength > maxBody {
			http.Error(w, "durable: request body too large", http.StatusRequestEntityTooLarge)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		h.ServeHTTP(w, r)
	})
}

// NewServer returns an *http.Server for addr serving h with hardened
// defaults: ReadHeaderTimeout DefaultReadHeaderTimeout (10 s),
// IdleTimeout DefaultServerIdleTimeout (120 s), MaxHeaderBytes
// DefaultMaxHeaderBytes (32 KiB), and h wrapped in LimitRequests with
// MaxRequestBody (100 MiB) and MaxURLLength (16 KiB). There is no
// ReadTimeout or WriteTimeout, which would cut long uploads and downloads;
// set them (or a per-IP connection cap in front) if your clients are
// untrusted. Start it with ListenAndServe and stop it with Shutdown, then
// shut the Runtime down (which closes the WebSockets).
func NewServer(addr string, h http.Handler) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           LimitRequests(h, MaxRequestBody),
		ReadHeaderTimeout: DefaultReadHeaderTimeout,
		IdleTimeout:       DefaultServerIdleTimeout,
		MaxHeaderBytes:    DefaultMaxHeaderBytes,
	}
}
