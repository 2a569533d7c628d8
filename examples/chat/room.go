package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/durable-go/durable"
)

// Limits of the chat.
const (
	maxNick    = 32   // characters of a nickname
	maxText    = 2000 // characters of a message
	historyLen = 100  // messages sent to a client when it joins
)

// Room is a chat room: one durable object per room name. Its messages live
// in its SQLite database; its members are its WebSockets, each carrying
// the member's nickname in its attachment, so a hibernated room (evicted
// from memory while its sockets stay open) still knows who is there.
type Room struct {
	st  *durable.State
	sql *durable.SQL
	now func() time.Time
}

// NewRoom builds a room; it runs on every activation, including when a
// message wakes a hibernated room.
func NewRoom(st *durable.State, now func() time.Time) (*Room, error) {
	r := &Room{st: st, sql: st.Storage().SQL(), now: now}
	if _, err := r.sql.Exec(`CREATE TABLE IF NOT EXISTS messages (
		id   INTEGER PRIMARY KEY AUTOINCREMENT,
		nick TEXT NOT NULL,
		text TEXT NOT NULL,
		at   INTEGER NOT NULL -- Unix milliseconds
	)`); err != nil {
		return nil, err
	}
	// The page pings every 30 s to keep proxies from closing the socket;
	// the runtime answers without waking the room.
	if err := st.SetWebSocketAutoResponse(&durable.AutoResponse{Request: "ping", Response: "pong"}); err != nil {
		return nil, err
	}
	return r, nil
}

// member is the attachment of a member's socket.
type member struct {
	Nick   string `json:"nick"`
	Joined int64  `json:"joined"`
}

// message is a stored chat message.
type message struct {
	ID   int64  `json:"id"`
	Nick string `json:"nick"`
	Text string `json:"text"`
	At   int64  `json:"at"`
}

// event is what the room sends to the page, as JSON.
type event struct {
	Type    string    `json:"type"` // hello, message, members, error
	You     string    `json:"you,omitempty"`
	Room    string    `json:"room,omitempty"`
	History []message `json:"history,omitempty"`
	Members []string  `json:"members,omitempty"`
	Message *message  `json:"message,omitempty"`
	Error   string    `json:"error,omitempty"`
}

// ServeHTTP serves the room's paths (below /rooms/{name}):
//
//	GET /ws?nick=NAME  join the room over a WebSocket
//	GET /history       the last messages, as JSON
func (r *Room) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	switch req.URL.Path {
	case "/ws":
		r.join(w, req)
	case "/history":
		h, err := r.history(historyLen)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(h)
	default:
		http.NotFound(w, req)
	}
}

// cleanNick validates a nickname.
func cleanNick(s string) (string, error) {
	s = strings.TrimSpace(s)
	n := utf8.RuneCountInString(s)
	if n == 0 || n > maxNick || !utf8.ValidString(s) {
		return "", fmt.Errorf("a nickname has 1 to %d characters", maxNick)
	}
	for _, c := range s {
		if unicode.IsControl(c) {
			return "", errors.New("a nickname has no control characters")
		}
	}
	return s, nil
}

func (r *Room) join(w http.ResponseWriter, req *http.Request) {
	nick, err := cleanNick(req.URL.Query().Get("nick"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ws, err := r.st.AcceptWebSocket(w, req, "member")
	var le *durable.WebSocketLimitError
	switch {
	case errors.Is(err, durable.ErrWebSocketOrigin):
		http.Error(w, err.Error(), http.StatusForbidden)
		return
	case errors.As(err, &le):
		http.Error(w, "the room is full", http.StatusServiceUnavailable)
		return
	case err != nil:
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if err := ws.SetAttachment(member{Nick: nick, Joined: r.now().UnixMilli()}); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	history, err := r.history(historyLen)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	ctx := req.Context()
	name, _ := r.st.Name()
	members := r.members()
	// Both leave once the upgrade is sent (the output gate holds them).
	r.send(ctx, ws, event{Type: "hello", You: nick, Room: name, History: history, Members: members})
	r.broadcast(ctx, event{Type: "members", Members: members}, ws)
}

// WebSocketMessage handles what a member says.
func (r *Room) WebSocketMessage(ctx context.Context, ws *durable.WebSocket, msg durable.Message) error {
	var in struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(msg.Data, &in); err != nil || in.Type != "say" {
		return r.send(ctx, ws, event{Type: "error", Error: "unknown message"})
	}
	text := strings.TrimSpace(in.Text)
	if text == "" {
		return nil
	}
	if utf8.RuneCountInString(text) > maxText {
		return r.send(ctx, ws, event{Type: "error", Error: fmt.Sprintf("messages have at most %d characters", maxText)})
	}
	var m member
	if err := ws.Attachment(&m); err != nil {
		return err
	}
	out := message{Nick: m.Nick, Text: text, At: r.now().UnixMilli()}
	cur, err := r.sql.Exec(`INSERT INTO messages (nick, text, at) VALUES (?, ?, ?) RETURNING id`, out.Nick, out.Text, out.At)
	if err != nil {
		return err
	}
	if err := cur.One(&out.ID); err != nil {
		return err
	}
	// The broadcast leaves only once the insert is durable.
	r.broadcast(ctx, event{Type: "message", Message: &out}, nil)
	return nil
}

// WebSocketClose tells the others that a member left.
func (r *Room) WebSocketClose(ctx context.Context, ws *durable.WebSocket, code int, reason string, wasClean bool) error {
	r.broadcast(ctx, event{Type: "members", Members: r.members()}, nil)
	return nil
}

// WebSocketError is a member dropped by the runtime (protocol error, too
// slow): the same as leaving.
func (r *Room) WebSocketError(ctx context.Context, ws *durable.WebSocket, err error) error {
	return r.WebSocketClose(ctx, ws, 0, "", false)
}

// members returns the nicknames of the connected members, in join order.
func (r *Room) members() []string {
	var nicks []string
	for _, ws := range r.st.WebSockets("member") {
		var m member
		if ws.Attachment(&m) == nil {
			nicks = append(nicks, m.Nick)
		}
	}
	return nicks
}

// history returns the last n messages, oldest first.
func (r *Room) history(n int) ([]message, error) {
	cur, err := r.sql.Exec(`SELECT id, nick, text, at FROM (SELECT * FROM messages ORDER BY id DESC LIMIT ?) ORDER BY id`, n)
	if err != nil {
		return nil, err
	}
	out := []message{}
	for cur.Next() {
		var m message
		if err := cur.Scan(&m.ID, &m.Nick, &m.Text, &m.At); err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, cur.Err()
}

func (r *Room) send(ctx context.Context, ws *durable.WebSocket, e event) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return ws.SendText(ctx, string(b))
}

// broadcast sends e to every member but except.
func (r *Room) broadcast(ctx context.Context, e event, except *durable.WebSocket) {
	b, err := json.Marshal(e)
	if err != nil {
		return
	}
	for _, ws := range r.st.WebSockets("member") {
		if ws != except {
			ws.SendText(ctx, string(b)) // a closed socket is simply skipped
		}
	}
}
