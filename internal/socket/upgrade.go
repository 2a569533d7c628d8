package socket

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/gobwas/ws"
)

// HandshakeTimeout bounds writing the 101 response of an upgrade.
const HandshakeTimeout = 10 * time.Second

// CheckRequest reports whether r is a WebSocket upgrade request this
// package can accept (RFC 6455 §4.2.1): an error wrapping ErrBadRequest if
// not.
func CheckRequest(r *http.Request) error {
	bad := func(what string) error { return fmt.Errorf("%w: %s", ErrBadRequest, what) }
	switch {
	case r.Method != http.MethodGet:
		return bad("method is " + r.Method + ", want GET")
	case !r.ProtoAtLeast(1, 1):
		return bad("HTTP version " + r.Proto + ", want HTTP/1.1")
	case !headerHasToken(r.Header, "Upgrade", "websocket"):
		return bad(`no "Upgrade: websocket" header`)
	case !headerHasToken(r.Header, "Connection", "upgrade"):
		return bad(`no "Connection: Upgrade" header`)
	case len(r.Header.Get("Sec-WebSocket-Key")) != 24:
		return bad("missing or malformed Sec-WebSocket-Key")
	case r.Header.Get("Sec-WebSocket-Version") != "13":
		return bad("Sec-WebSocket-Version is not 13")
	}
	return nil
}

func headerHasToken(h http.Header, key, token string) bool {
	for _, v := range h[http.CanonicalHeaderKey(key)] {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// CheckOrigin enforces the same-origin rule that protects WebSockets from
// cross-site hijacking (CORS does not apply to them): a request without an
// Origin header (not a browser) passes; one whose Origin host equals the
// request's Host passes; otherwise the Origin must match one of patterns.
// A pattern without "://" is matched against the origin's host (with port
// if any), one with it against scheme://host, using path.Match syntax
// case-insensitively: "example.com", "*.example.com", "https://*.example.com:8443".
// The error wraps ErrOrigin.
func CheckOrigin(r *http.Request, patterns []string) error {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return nil
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%w: malformed Origin %q", ErrOrigin, origin)
	}
	if strings.EqualFold(u.Host, r.Host) {
		return nil
	}
	for _, p := range patterns {
		target := u.Host
		if strings.Contains(p, "://") {
			target = u.Scheme + "://" + u.Host
		}
		ok, err := path.Match(strings.ToLower(p), strings.ToLower(target))
		if err != nil {
			return fmt.Errorf("websocket: bad origin pattern %q: %w", p, err)
		}
		if ok {
			return nil
		}
	}
	return fmt.Errorf("%w: %q is not the request's host %q nor in the allowlist", ErrOrigin, origin, r.Host)
}

// SelectProtocol returns the first subprotocol offered by the client (in
// its order) that is in supported, or "".
func SelectProtocol(r *http.Request, supported []string) string {
	for _, v := range r.Header["Sec-Websocket-Protocol"] {
		for p := range strings.SplitSeq(v, ",") {
			p = strings.TrimSpace(p)
			for _, s := range supported {
				if p == s {
					return p
				}
			}
		}
	}
	return ""
}

// handshakeHeaders are written by the upgrader itself.
var handshakeHeaders = map[string]bool{
	"Upgrade": true, "Connection": true, "Sec-Websocket-Accept": true,
	"Sec-Websocket-Protocol": true, "Sec-Websocket-Extensions": true,
	"Content-Length": true, "Transfer-Encoding": true, "Content-Type": true,
}

// Upgrade completes the handshake of r on w (hijacking the connection) with
// the extra headers of header and the chosen subprotocol. It returns the
// connection and any bytes the client sent after its request. On error the
// response (an HTTP error) has been written already.
func Upgrade(w http.ResponseWriter, r *http.Request, header http.Header, protocol string) (net.Conn, []byte, error) {
	extra := make(http.Header)
	for k, v := range header {
		if !handshakeHeaders[http.CanonicalHeaderKey(k)] {
			extra[k] = v
		}
	}
	u := ws.HTTPUpgrader{Header: extra, Timeout: HandshakeTimeout}
	if protocol != "" {
		u.Protocol = func(p string) bool { return p == protocol }
	}
	nc, rw, _, err := u.Upgrade(r, w)
	if err != nil {
		if nc != nil {
			nc.Close()
		}
		return nil, nil, err
	}
	var pre []byte
	if n := rw.Reader.Buffered(); n > 0 {
		b, _ := rw.Reader.Peek(n)
		pre = append([]byte(nil), b...)
	}
	return nc, pre, nil
}
