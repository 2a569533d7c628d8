package durabletest_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/durable-go/durable"
	"github.com/durable-go/durable/durabletest"
	"github.com/gobwas/ws"
)

func TestWebSocket_Messages(t *testing.T) {
	rig := newProbeRig(t, durable.Options{})
	c := rig.dial(t, "m")
	if got := call(t, c, "echo hello"); got != "hello" {
		t.Errorf("echo = %q, want hello", got)
	}
	if err := c.SendBinary(t.Context(), []byte{0, 1, 255}); err != nil {
		t.Fatal(err)
	}
	m, err := c.Receive(t.Context())
	if err != nil || m.Type != durable.BinaryMessage || string(m.Data) != "\x00\x01\xff" {
		t.Errorf("binary echo = %v %q %v", m.Type, m.Data, err)
	}
	// Messages arrive in order.
	if err := c.SendText(t.Context(), "split"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"one", "two"} {
		if got, err := c.ReceiveText(t.Context()); got != want || err != nil {
			t.Errorf("got %q, %v; want %q", got, err, want)
		}
	}
	// ReceiveText refuses a binary message.
	if err := c.SendBinary(t.Context(), []byte("b")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReceiveText(t.Context()); err == nil || !strings.Contains(err.Error(), "binary") {
		t.Errorf("ReceiveText of a binary message: %v", err)
	}
}

func TestWebSocket_ReceiveTimeout(t *testing.T) {
	// A receive that times out, or whose ctx is cancelled, leaves the
	// connection usable.
	rig := newProbeRig(t, durable.Options{})
	c := rig.dial(t, "t")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Millisecond)
	defer cancel()
	if _, err := c.Receive(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Receive with nothing to receive = %v, want DeadlineExceeded", err)
	}
	ctx, cancel = context.WithCancel(t.Context())
	timer := time.AfterFunc(30*time.Millisecond, cancel)
	defer timer.Stop()
	if _, err := c.Receive(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Receive cancelled = %v, want Canceled", err)
	}
	if got := call(t, c, "echo still here"); got != "still here" {
		t.Errorf("echo after the timeouts = %q", got)
	}
}

func TestWebSocket_Close(t *testing.T) {
	rig := newProbeRig(t, durable.Options{})

	t.Run("ByServer", func(t *testing.T) {
		c := rig.dial(t, "s")
		if err := c.SendText(t.Context(), "split"); err != nil {
			t.Fatal(err)
		}
		if err := c.SendText(t.Context(), "close 4000 bye"); err != nil {
			t.Fatal(err)
		}
		// The two messages before the close are skipped.
		code, reason, err := c.ExpectClose(t.Context())
		if code != 4000 || reason != "bye" || err != nil {
			t.Errorf("ExpectClose = %d %q %v; want 4000 bye", code, reason, err)
		}
		var ce *durabletest.CloseError
		if _, err := c.Receive(t.Context()); !errors.As(err, &ce) || ce.Code != 4000 {
			t.Errorf("Receive after the close = %v, want a *CloseError with 4000", err)
		}
		if err := c.SendText(t.Context(), "x"); err == nil {
			t.Error("Send after the close succeeded")
		}
	})

	t.Run("ByClient", func(t *testing.T) {
		c := rig.dial(t, "c")
		call(t, c, "echo hi")
		if err := c.Close(t.Context(), 4001, "done"); err != nil {
			t.Errorf("Close = %v", err)
		}
		if got := recv(t, rig.env.closes, "the close event"); got != "4001 true" {
			t.Errorf("the object saw %q, want a clean 4001", got)
		}
	})

	t.Run("Dropped", func(t *testing.T) {
		c := rig.dial(t, "d")
		call(t, c, "echo hi")
		if err := c.CloseNow(); err != nil {
			t.Fatal(err)
		}
		if got := recv(t, rig.env.closes, "the close event"); got != "1006 false" {
			t.Errorf("the object saw %q, want 1006, not clean", got)
		}
		if _, err := c.Receive(t.Context()); err == nil {
			t.Error("Receive after CloseNow succeeded")
		}
	})

	t.Run("Shutdown", func(t *testing.T) {
		rig := newProbeRig(t, durable.Options{})
		c := rig.dial(t, "x")
		call(t, c, "echo hi")
		if err := rig.rt.Shutdown(t.Context()); err != nil {
			t.Fatal(err)
		}
		if code, _, err := c.ExpectClose(t.Context()); code != durable.CloseGoingAway || err != nil {
			t.Errorf("ExpectClose at shutdown = %d, %v; want 1001", code, err)
		}
	})
}

func TestDialWebSocket(t *testing.T) {
	rig := newProbeRig(t, durable.Options{})

	t.Run("Refused", func(t *testing.T) {
		_, err := durabletest.DialWebSocket(t.Context(), rig.url+"/x/nowhere", nil)
		var he *durabletest.HandshakeError
		if !errors.As(err, &he) || he.StatusCode != http.StatusNotFound {
			t.Errorf("dial of a missing path = %v, want a 404 *HandshakeError", err)
		}
	})

	t.Run("Origin", func(t *testing.T) {
		opts := &durabletest.DialOptions{Header: http.Header{"Origin": {"https://evil.example"}}}
		_, err := durabletest.DialWebSocket(t.Context(), rig.url+"/x/ws", opts)
		var he *durabletest.HandshakeError
		if !errors.As(err, &he) || he.StatusCode != http.StatusForbidden || !strings.Contains(he.Body, "origin") {
			t.Errorf("cross-origin dial = %v, want a 403 *HandshakeError explaining the origin", err)
		}
		c, err := durabletest.DialWebSocket(t.Context(), rig.url+"/x/ws?origin=evil.example", opts)
		if err != nil {
			t.Fatalf("dial from an allowed origin: %v", err)
		}
		c.CloseNow()
	})

	t.Run("Subprotocols", func(t *testing.T) {
		opts := &durabletest.DialOptions{Subprotocols: []string{"v1", "v2"}}
		c, err := durabletest.DialWebSocket(t.Context(), strings.Replace(rig.url, "http://", "ws://", 1)+"/x/ws?proto=v2", opts)
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		if got := c.Protocol(); got != "v2" {
			t.Errorf("Protocol = %q, want v2", got)
		}
	})

	t.Run("Unreachable", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		srv.Close()
		if _, err := durabletest.DialWebSocket(t.Context(), srv.URL, nil); err == nil {
			t.Error("dial of a closed server succeeded")
		}
	})
}

// rawServer upgrades every request and runs script on the connection, as
// a server that may break the protocol; the handler returns once the
// client has gone.
func rawServer(t *testing.T, script func(t *testing.T, rw io.ReadWriter)) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, _, err := ws.UpgradeHTTP(r, w)
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		script(t, conn)
		io.Copy(io.Discard, conn)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestWebSocket_Protocol(t *testing.T) {
	dial := func(t *testing.T, url string) *durabletest.WebSocket {
		c, err := durabletest.DialWebSocket(t.Context(), url, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.CloseNow() })
		return c
	}

	t.Run("Fragments", func(t *testing.T) {
		// A fragmented message with a ping in the middle: the client
		// answers the ping and reassembles the message.
		pong := make(chan string, 1)
		url := rawServer(t, func(t *testing.T, rw io.ReadWriter) {
			ws.WriteFrame(rw, ws.NewFrame(ws.OpText, false, []byte("frag")))
			ws.WriteFrame(rw, ws.NewPingFrame([]byte("p")))
			ws.WriteFrame(rw, ws.NewFrame(ws.OpContinuation, true, []byte("mented")))
			h, err := ws.ReadHeader(rw)
			if err != nil || h.OpCode != ws.OpPong || h.Length > 125 {
				pong <- fmt.Sprintf("opcode %d, %d bytes, %v", h.OpCode, h.Length, err)
				return
			}
			p := make([]byte, h.Length)
			if _, err := io.ReadFull(rw, p); err != nil {
				pong <- err.Error()
				return
			}
			ws.Cipher(p, h.Mask, 0)
			pong <- "pong " + string(p)
		})
		c := dial(t, url)
		if got, err := c.ReceiveText(t.Context()); got != "fragmented" || err != nil {
			t.Errorf("ReceiveText = %q, %v; want fragmented", got, err)
		}
		if got := recv(t, pong, "the pong"); got != "pong p" {
			t.Errorf("server got %q, want a pong with payload p", got)
		}
	})

	for _, tc := range []struct {
		name  string
		frame ws.Frame
		want  string
	}{
		{"Masked", ws.MaskFrame(ws.NewTextFrame([]byte("x"))), "masked"},
		{"InvalidUTF8", ws.NewTextFrame([]byte{0xff, 0xfe}), "UTF-8"},
		{"Continuation", ws.NewFrame(ws.OpContinuation, true, []byte("x")), "unexpected continuation"},
		{"Reserved", ws.Frame{Header: ws.Header{Fin: true, Rsv: 4, OpCode: ws.OpText, Length: 1}, Payload: []byte("x")}, "reserved bits"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := rawServer(t, func(t *testing.T, rw io.ReadWriter) { ws.WriteFrame(rw, tc.frame) })
			c := dial(t, url)
			_, err := c.Receive(t.Context())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Receive = %v, want an error about %s", err, tc.want)
			}
			// The connection is over.
			if _, err2 := c.Receive(t.Context()); err2 == nil || err2.Error() != err.Error() {
				t.Errorf("second Receive = %v, want %v again", err2, err)
			}
		})
	}

	t.Run("Dropped", func(t *testing.T) {
		url := rawServer(t, func(t *testing.T, rw io.ReadWriter) {
			ws.WriteFrame(rw, ws.NewTextFrame([]byte("last words")))
			rw.(interface{ Close() error }).Close()
		})
		c := dial(t, url)
		code, _, err := c.ExpectClose(t.Context())
		if code != durable.CloseAbnormal || err != nil {
			t.Errorf("ExpectClose = %d, %v; want 1006", code, err)
		}
	})

	t.Run("CloseWithoutCode", func(t *testing.T) {
		url := rawServer(t, func(t *testing.T, rw io.ReadWriter) { ws.WriteFrame(rw, ws.NewCloseFrame(nil)) })
		c := dial(t, url)
		code, _, err := c.ExpectClose(t.Context())
		if code != durable.CloseNoStatus || err != nil {
			t.Errorf("ExpectClose = %d, %v; want 1005", code, err)
		}
	})
}
