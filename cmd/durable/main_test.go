package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/durable-go/durable/internal/durability"
	"github.com/durable-go/durable/internal/inspect"
)

// The tests build the chat example, the reference workload server and
// this command, make data folders by driving the two apps over HTTP and
// WebSockets, and run every command on them: offline, and through the
// admin API of the running workload server.

const adminToken = "cli-test-token-0123456789"

var (
	binDir   string // built binaries
	buildErr error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "durable-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var buildOnce sync.Once

// bin returns the path of a binary built from package pkg of the module.
func bin(t testing.TB, name string) string {
	t.Helper()
	buildOnce.Do(func() {
		for _, p := range [][2]string{
			{"chat", "github.com/durable-go/durable/examples/chat"},
			{"bench-server", "github.com/durable-go/durable/bench/server"},
			{"durable", "github.com/durable-go/durable/cmd/durable"},
		} {
			out, err := exec.Command("go", "build", "-o", filepath.Join(binDir, p[0]), p[1]).CombinedOutput()
			if err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", p[1], err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, name)
}

// app is a running app process.
type app struct {
	t     testing.TB
	cmd   *exec.Cmd
	url   string // its HTTP address
	admin string // its admin API, if served
	done  chan error
	log   *bytes.Buffer
}

// startApp starts binary with args and waits for the line announcing its
// address (and admin API if wantAdmin).
func startApp(t testing.TB, binary string, env []string, wantAdmin bool, args ...string) *app {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	a := &app{t: t, cmd: cmd, done: make(chan error, 1), log: &bytes.Buffer{}}
	lines := make(chan string, 100)
	var mu sync.Mutex
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			mu.Lock()
			a.log.WriteString(sc.Text() + "\n")
			mu.Unlock()
			select {
			case lines <- sc.Text():
			default:
			}
		}
		a.done <- cmd.Wait()
	}()
	t.Cleanup(func() { a.stop() })
	listening := regexp.MustCompile(`(?:listening on|open) (http://[0-9.:\[\]]+)`)
	admin := regexp.MustCompile(`admin API on (http://\S+)`)
	deadline := time.After(30 * time.Second)
	for a.url == "" || (wantAdmin && a.admin == "") {
		select {
		case l := <-lines:
			if m := listening.FindStringSubmatch(l); m != nil {
				a.url = m[1]
			}
			if m := admin.FindStringSubmatch(l); m != nil {
				a.admin = m[1]
			}
		case <-deadline:
			t.Fatalf("%s did not start:\n%s", binary, a.log)
		}
	}
	// The chat example announces its address before it listens: wait
	// until it answers.
	for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		resp, err := http.Get(a.url + "/")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("%s does not answer: %v\n%s", binary, err, a.log)
		}
	}
	return a
}

// stop interrupts the app and waits for it to exit.
func (a *app) stop() {
	if a.cmd.ProcessState != nil {
		return
	}
	a.cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-a.done:
		if err != nil {
			a.t.Errorf("app exited with %v:\n%s", err, a.log)
		}
	case <-time.After(30 * time.Second):
		a.cmd.Process.Kill()
		<-a.done
		a.t.Errorf("app did not stop on SIGINT:\n%s", a.log)
	}
}

// get fetches a path of the app and returns the body of a 200.
func (a *app) get(path string) string {
	a.t.Helper()
	resp, err := http.Get(a.url + path)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		a.t.Fatalf("GET %s: %s %s", path, resp.Status, b)
	}
	return string(b)
}

// freeAddr returns a loopback address nobody listens on (for the chat
// example, which does not print the port it picked).
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// say joins room as nick and says each text, waiting for the room to
// broadcast it back (so it is stored).
func say(t testing.TB, hostport, room, nick string, texts ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, _, _, err := ws.Dial(ctx, "ws://"+hostport+"/rooms/"+room+"/ws?nick="+nick)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	for _, text := range texts {
		msg, _ := json.Marshal(map[string]string{"type": "say", "text": text})
		if err := wsutil.WriteClientText(conn, msg); err != nil {
			t.Fatal(err)
		}
		for {
			b, err := wsutil.ReadServerText(conn)
			if err != nil {
				t.Fatal(err)
			}
			var ev struct {
				Type    string
				Message *struct{ Text string }
			}
			json.Unmarshal(b, &ev)
			if ev.Type == "message" && ev.Message != nil && ev.Message.Text == text {
				break
			}
		}
	}
}

var (
	chatOnce sync.Once
	chatDir  string
)

// chatData returns a data folder made by the chat example: room "lobby"
// with three messages, room "random" with one.
func chatData(t *testing.T) string {
	t.Helper()
	chatOnce.Do(func() {
		dir := filepath.Join(binDir, "chat-data")
		addr := freeAddr(t)
		a := startApp(t, bin(t, "chat"), nil, false, "-addr", addr, "-data", dir)
		say(t, addr, "lobby", "alice", "hello", "how are you?", "multi\nline")
		say(t, addr, "random", "bob", "anyone?")
		a.stop()
		chatDir = dir
	})
	if chatDir == "" {
		t.Fatal("no chat data (an earlier test failed to make it)")
	}
	return chatDir
}

// result is what one CLI run printed.
type result struct {
	stdout, stderr string
	code           int
}

// durableCLI runs the command in-process with env.
func durableCLI(t testing.TB, env map[string]string, stdin io.Reader, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	c := &cli{stdin: stdin, stdout: &out, stderr: &errb, getenv: func(k string) string { return env[k] }}
	code := run(context.Background(), c, args)
	return result{out.String(), errb.String(), code}
}

// ok runs the command and fails the test unless it succeeds.
func ok(t testing.TB, env map[string]string, args ...string) string {
	t.Helper()
	r := durableCLI(t, env, nil, args...)
	if r.code != 0 {
		t.Fatalf("durable %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// dumpOf is an object's JSON export without its identity: its content.
func dumpOf(t testing.TB, env map[string]string, data, ns, ref string) inspect.Dump {
	t.Helper()
	var d inspect.Dump
	out := ok(t, env, "-data", data, "export", "-format", "json", ns, ref)
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatal(err)
	}
	d.ID, d.Name, d.Meta = "", "", nil
	return d
}

func contains(t testing.TB, got string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("output lacks %q:\n%s", w, got)
		}
	}
}

func TestChat(t *testing.T) {
	data := chatData(t)
	copyDir := filepath.Join(t.TempDir(), "data")
	if err := os.CopyFS(copyDir, os.DirFS(data)); err != nil {
		t.Fatal(err)
	}
	data = copyDir
	t.Run("ls", func(t *testing.T) {
		contains(t, ok(t, nil, "-data", data, "ls"), "NAMESPACE", "Room", "2")
		out := ok(t, nil, "-data", data, "ls", "Room")
		contains(t, out, "lobby", "random")
		var objs []inspect.Object
		json.Unmarshal([]byte(ok(t, nil, "-data", data, "ls", "-json", "-sort", "name", "-r", "Room")), &objs)
		if len(objs) != 2 || objs[0].Name != "random" || objs[1].Name != "lobby" || objs[0].Size == 0 {
			t.Fatalf("ls -json -r: %+v", objs)
		}
		json.Unmarshal([]byte(ok(t, nil, "-data", data, "ls", "-a", "-json", "-name", "lob*")), &objs)
		if len(objs) != 1 || objs[0].Name != "lobby" {
			t.Fatalf("ls -a -name lob*: %+v", objs)
		}
		json.Unmarshal([]byte(ok(t, nil, "-data", data, "ls", "-json", "-alarm", "Room")), &objs)
		if len(objs) != 0 {
			t.Fatalf("ls -alarm: %+v", objs)
		}
	})
	t.Run("sql", func(t *testing.T) {
		out := ok(t, nil, "-data", data, "sql", "Room", "lobby", "SELECT nick, text FROM messages ORDER BY id")
		contains(t, out, "alice", "hello", "how are you?", `multi\nline`)
		var res inspect.Result
		json.Unmarshal([]byte(ok(t, nil, "-data", data, "sql", "-json", "Room", "lobby", "SELECT count(*) AS n FROM messages")), &res)
		if !reflect.DeepEqual(res.Columns, []string{"n"}) || res.Rows[0][0].V != int64(3) {
			t.Fatalf("sql -json: %+v", res)
		}
		r := durableCLI(t, nil, nil, "-data", data, "sql", "Room", "lobby", "DELETE FROM messages")
		if r.code != 1 || !strings.Contains(r.stderr, "-write") {
			t.Fatalf("write without -write: exit %d, %s", r.code, r.stderr)
		}
		contains(t, ok(t, nil, "-data", data, "sql", "Room", "lobby", "SELECT count(*) FROM messages"), "3")
		ok(t, nil, "-data", data, "sql", "-write", "Room", "lobby", "INSERT INTO messages (nick, text, at) VALUES ('cli', 'added offline', 0)")
		contains(t, ok(t, nil, "-data", data, "sql", "Room", "lobby", "SELECT count(*) FROM messages"), "4")
	})
	t.Run("kv", func(t *testing.T) {
		out := ok(t, nil, "-data", data, "kv", "Room", "lobby", "list")
		if strings.TrimSpace(out) != "KEY  SIZE  VALUE" {
			t.Fatalf("the chat keeps no KV entries, got:\n%s", out)
		}
		r := durableCLI(t, nil, nil, "-data", data, "kv", "Room", "lobby", "get", "nope")
		if r.code != 1 || !strings.Contains(r.stderr, `"nope" not found`) {
			t.Fatalf("kv get of a missing key: %+v", r)
		}
	})
	t.Run("alarms", func(t *testing.T) {
		if out := ok(t, nil, "-data", data, "alarms", "-json"); strings.TrimSpace(out) != "[]" {
			t.Fatalf("alarms: %s", out)
		}
	})
	t.Run("export-import", func(t *testing.T) {
		for _, format := range []string{"sqlite", "json"} {
			file := filepath.Join(t.TempDir(), "lobby."+format)
			ok(t, nil, "-data", data, "export", "-o", file, "Room", "lobby")
			out := ok(t, nil, "-data", data, "import", "Room", "copy-"+format, file)
			contains(t, out, `imported Room "copy-`+format+`"`, "1 table, 4 rows, 0 KV entries, no alarm") // 3 said, 1 added by sql -write
			if got, want := dumpOf(t, nil, data, "Room", "copy-"+format), dumpOf(t, nil, data, "Room", "lobby"); !reflect.DeepEqual(got, want) {
				t.Fatalf("%s round trip differs:\ngot  %+v\nwant %+v", format, got, want)
			}
		}
		// From standard input, format sniffed.
		var buf bytes.Buffer
		buf.WriteString(ok(t, nil, "-data", data, "export", "-format", "json", "Room", "random"))
		r := durableCLI(t, nil, &buf, "-data", data, "import", "-json", "Room", "random-copy", "-")
		if r.code != 0 || !strings.Contains(r.stdout, `"rows": 1`) {
			t.Fatalf("import from stdin: %+v", r)
		}
	})
	t.Run("check", func(t *testing.T) {
		r := durableCLI(t, nil, nil, "-data", data, "check", "-progress", "always", "-v")
		if r.code != 0 {
			t.Fatalf("check: %+v", r)
		}
		contains(t, r.stdout, "checked 5 objects: 0 damaged", `ok       Room "lobby"`)
		contains(t, r.stderr, "check [", "5/5 100%")
		// Damage one object: check says so, with exit status 1.
		id := damage(t, data, "Room", "random")
		r = durableCLI(t, nil, nil, "-data", data, "check")
		if r.code != 1 || !strings.Contains(r.stdout, "DAMAGED  Room "+id) || !strings.Contains(r.stdout, "malformed") || !strings.Contains(r.stdout, "1 damaged") {
			t.Fatalf("check of a damaged folder: %+v", r)
		}
	})
	t.Run("backup", func(t *testing.T) {
		dst := filepath.Join(t.TempDir(), "backup")
		r := durableCLI(t, nil, nil, "-data", chatData(t), "backup", "-progress", "always", dst)
		if r.code != 0 || !strings.Contains(r.stdout, "backed up 2 objects") || !strings.Contains(r.stderr, "2/2 100%") {
			t.Fatalf("backup: %+v", r)
		}
		if got, want := dumpOf(t, nil, dst, "Room", "lobby"), dumpOf(t, nil, chatData(t), "Room", "lobby"); !reflect.DeepEqual(got, want) {
			t.Fatal("the backup of lobby differs")
		}
		contains(t, ok(t, nil, "-data", dst, "check"), "checked 2 objects: 0 damaged")
		if r := durableCLI(t, nil, nil, "-data", chatData(t), "backup", dst); r.code != 1 || !strings.Contains(r.stderr, "not empty") {
			t.Fatalf("backup into a non-empty folder: %+v", r)
		}
	})
}

// damage overwrites the page headers of every page but the first of an
// object's database, WAL folded in first (through an export).
func damage(t testing.TB, data, ns, name string) (id string) {
	t.Helper()
	var objs []inspect.Object
	json.Unmarshal([]byte(ok(t, nil, "-data", data, "ls", "-json", "-name", name, ns)), &objs)
	if len(objs) != 1 {
		t.Fatalf("no object %s %s", ns, name)
	}
	path := filepath.Join(data, ns, objs[0].ID[:2], objs[0].ID+".sqlite")
	folded := filepath.Join(t.TempDir(), "folded.sqlite")
	ok(t, nil, "-data", data, "export", "-o", folded, ns, name)
	b, err := os.ReadFile(folded)
	if err != nil {
		t.Fatal(err)
	}
	for off := 4096; off < len(b); off += 4096 {
		copy(b[off:], bytes.Repeat([]byte{0xA5}, 12))
	}
	os.Remove(path + "-wal")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return objs[0].ID
}

func TestUsage(t *testing.T) {
	for _, args := range [][]string{{}, {"nope"}, {"sql", "Room"}, {"ls", "-sort", "color"}, {"kv", "Room", "x", "put"}, {"check", "-progress", "sometimes"}} {
		if r := durableCLI(t, nil, nil, args...); r.code != 2 {
			t.Errorf("durable %q: exit %d, want 2\n%s", args, r.code, r.stderr)
		}
	}
	if r := durableCLI(t, nil, nil, "-h"); r.code != 0 || !strings.Contains(r.stderr, "commands:") {
		t.Errorf("-h: %+v", r)
	}
	if r := durableCLI(t, nil, nil, "-data", filepath.Join(t.TempDir(), "none"), "ls"); r.code != 1 || !strings.Contains(r.stderr, "not found") {
		t.Errorf("missing folder: %+v", r)
	}
}

// Ensure the built command works as a process (go install-able main).
func TestBinary(t *testing.T) {
	data := chatData(t)
	out, err := exec.Command(bin(t, "durable"), "-data", data, "sql", "Room", "random", "SELECT text FROM messages").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "anyone?") {
		t.Fatalf("durable sql: %v\n%s", err, out)
	}
	err = exec.Command(bin(t, "durable"), "-data", data, "nope").Run()
	if ee, isExit := err.(*exec.ExitError); !isExit || ee.ExitCode() != 2 {
		t.Fatalf("unknown command: %v, want exit status 2", err)
	}
	out, _ = exec.Command(bin(t, "durable"), "version").Output()
	if !strings.HasPrefix(string(out), "durable ") {
		t.Fatalf("version: %q", out)
	}
}

// The reference workload server, driven over its HTTP contract, then
// inspected through its admin API while it runs and offline after: the
// commands print the same thing both ways.
func TestBench(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "bench-data")
	a := startApp(t, bin(t, "bench-server"), []string{"DURABLE_ADMIN_TOKEN=" + adminToken}, true,
		"-addr", "127.0.0.1:0", "-data", dir, "-admin", "127.0.0.1:0", "-nosync")
	for range 3 {
		a.get("/counter/a/inc")
	}
	a.get("/counter/b/inc")
	a.get("/kv/k1/put?k=hello&v=world")
	a.get("/kv/k1/put?k=n&v=42")
	a.get("/rpc/n1?note=first")
	a.get("/rpc/n1?note=second")
	a.get("/alarm/t1/set?ms=3600000")

	env := map[string]string{envAdminURL: a.admin, envAdminToken: adminToken}
	// The same commands, compared across both modes.
	same := [][]string{
		{"ls", "-a", "-json"},
		{"sql", "Counter", "a", "SELECT id, value FROM counter"},
		{"sql", "-json", "Notes", "n1", "SELECT * FROM notes ORDER BY id"},
		{"kv", "-json", "KV", "k1", "get", "hello", "n"},
		{"kv", "KV", "k1", "list", "-prefix", "h"},
		{"alarms", "-json"},
		{"check", "-json"},
	}
	live := map[string]string{}

	t.Run("live", func(t *testing.T) {
		// Without the admin API's address or token the CLI explains.
		r := durableCLI(t, nil, nil, "-data", dir, "ls")
		if r.code != 1 || !strings.Contains(r.stderr, "in use by a running app") || !strings.Contains(r.stderr, envAdminURL) {
			t.Fatalf("ls of a locked folder without the admin API: %+v", r)
		}
		r = durableCLI(t, map[string]string{envAdminURL: a.admin, envAdminToken: "a-wrong-token-0123456789"}, nil, "-data", dir, "ls")
		if r.code != 1 || !strings.Contains(r.stderr, "refused the token") {
			t.Fatalf("ls with a wrong token: %+v", r)
		}
		contains(t, ok(t, env, "-data", dir, "sql", "Counter", "a", "SELECT id, value FROM counter"), "3")
		// Run from elsewhere (no data folder here), the environment's
		// admin API is the one meant.
		contains(t, ok(t, env, "-data", filepath.Join(t.TempDir(), "absent"), "sql", "Counter", "a", "SELECT id, value FROM counter"), "3")
		contains(t, ok(t, env, "-data", dir, "alarms", "-json"), `"namespace": "Timer"`, `"name": "t1"`)
		contains(t, ok(t, env, "-data", dir, "ls"), "Counter", "KV", "Notes", "Timer")
		var objs []inspect.Object
		json.Unmarshal([]byte(ok(t, env, "-data", dir, "ls", "-a", "-json")), &objs)
		if len(objs) != 5 {
			t.Fatalf("ls -a: %+v", objs)
		}

		// Writes: refused without -write, and the app's own reads agree.
		r = durableCLI(t, env, nil, "-data", dir, "sql", "Counter", "a", "UPDATE counter SET value = 100")
		if r.code != 1 || !strings.Contains(r.stderr, "read-only") {
			t.Fatalf("write without -write: %+v", r)
		}
		if got := a.get("/counter/a/get"); got != "3" {
			t.Fatalf("counter after a refused write: %s", got)
		}
		ok(t, env, "-data", dir, "sql", "-write", "Counter", "a", "UPDATE counter SET value = 100")
		if got := a.get("/counter/a/inc"); got != "101" {
			t.Fatalf("the app after an admin write: got %s, want 101", got)
		}
		ok(t, env, "-data", dir, "sql", "-write", "Counter", "a", "UPDATE counter SET value = 3")

		// Export and import while the app runs: the import is an object
		// the app serves, its alarm scheduled.
		file := filepath.Join(t.TempDir(), "t1.json")
		ok(t, env, "-data", dir, "export", "-o", file, "Timer", "t1")
		ok(t, env, "-data", dir, "import", "Timer", "t2", file)
		if got := a.get("/alarm/t2/count"); got != "0" {
			t.Fatalf("imported timer: %s", got)
		}
		if got, want := dumpOf(t, env, dir, "Timer", "t2"), dumpOf(t, env, dir, "Timer", "t1"); !reflect.DeepEqual(got, want) {
			t.Fatalf("live round trip differs:\n%+v\n%+v", got, want)
		}
		contains(t, ok(t, env, "-data", dir, "alarms"), "t1", "t2")
		ok(t, env, "-data", dir, "export", "-o", filepath.Join(t.TempDir(), "n1.sqlite"), "Notes", "n1")

		// An alarm imported soon fires in the running app.
		soon := filepath.Join(t.TempDir(), "soon.json")
		var d inspect.Dump
		json.Unmarshal([]byte(ok(t, env, "-data", dir, "export", "-format", "json", "Timer", "t1")), &d)
		at := time.Now().Add(200 * time.Millisecond).UTC()
		d.Alarm = &at
		b, _ := json.Marshal(d)
		os.WriteFile(soon, b, 0o644)
		ok(t, env, "-data", dir, "import", "Timer", "t3", soon)
		deadline := time.Now().Add(20 * time.Second)
		for a.get("/alarm/t3/count") != "1" {
			if time.Now().After(deadline) {
				t.Fatal("the imported alarm did not fire")
			}
			time.Sleep(50 * time.Millisecond)
		}

		backup := filepath.Join(t.TempDir(), "backup")
		r = durableCLI(t, env, nil, "-data", dir, "backup", "-progress", "always", backup)
		if r.code != 0 || !strings.Contains(r.stdout, "backed up 7 objects") || !strings.Contains(r.stderr, "7/7 100%") {
			t.Fatalf("live backup: %+v", r)
		}
		contains(t, ok(t, nil, "-data", backup, "check"), "checked 7 objects: 0 damaged")
		contains(t, ok(t, nil, "-data", backup, "alarms"), "t1", "t2")

		for _, args := range same {
			live[strings.Join(args, " ")] = ok(t, env, append([]string{"-data", dir}, args...)...)
		}
	})

	a.stop()
	t.Run("offline", func(t *testing.T) {
		for _, args := range same {
			key := strings.Join(args, " ")
			got := ok(t, nil, append([]string{"-data", dir}, args...)...)
			want := live[key]
			if key == "ls -a -json" {
				// Sizes and times move as the app closes the databases.
				got, want = withoutFileStats(t, got), withoutFileStats(t, want)
			}
			if got != want {
				t.Errorf("durable %s offline:\n%s\nlive:\n%s", key, got, want)
			}
		}
		contains(t, ok(t, nil, "-data", dir, "kv", "Timer", "t3", "get", "count"), "count", "1")
		contains(t, ok(t, nil, "-data", dir, "check"), "checked 7 objects: 0 damaged")
		// Export -> import round trip of every bench object, offline.
		for _, o := range [][2]string{{"Counter", "a"}, {"KV", "k1"}, {"Notes", "n1"}, {"Timer", "t1"}} {
			file := filepath.Join(t.TempDir(), "x.sqlite")
			ok(t, nil, "-data", dir, "export", "-o", file, o[0], o[1])
			ok(t, nil, "-data", dir, "import", o[0], o[1]+"-copy", file)
			if got, want := dumpOf(t, nil, dir, o[0], o[1]+"-copy"), dumpOf(t, nil, dir, o[0], o[1]); !reflect.DeepEqual(got, want) {
				t.Errorf("%v round trip differs:\ngot  %+v\nwant %+v", o, got, want)
			}
		}
	})
}

// withoutFileStats zeroes the sizes and times of an ls -json output.
func withoutFileStats(t testing.TB, out string) string {
	t.Helper()
	var objs []inspect.Object
	if err := json.Unmarshal([]byte(out), &objs); err != nil {
		t.Fatal(err)
	}
	for i := range objs {
		objs[i].Size, objs[i].Modified = 0, time.Time{}
	}
	b, _ := json.Marshal(objs)
	return string(b)
}

// TestOfflineRecoversJournal: after an app is killed (SIGKILL, no clean
// stop), its node journal holds records a restart must replay. The CLI,
// opening the folder offline, replays it first: the writes are there, and
// the journal is left clean, so that nothing replays it over later offline
// writes.
func TestOfflineRecoversJournal(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	addr := freeAddr(t)
	a := startApp(t, bin(t, "chat"), nil, false, "-addr", addr, "-data", dir)
	// A batch of one object's commits fsyncs its WAL and skips the
	// journal: write to several rooms at once until the journal holds
	// records (checked by recovering a copy of the folder, which the app
	// does not see).
	hasRecords := func() bool {
		probe := filepath.Join(t.TempDir(), "probe")
		if err := os.CopyFS(probe, os.DirFS(dir)); err != nil {
			t.Fatal(err)
		}
		rec, err := durability.Recover(filepath.Join(probe, durability.JournalDir), probe)
		if err != nil {
			t.Fatal(err)
		}
		return rec.Records > 0
	}
	for round := 0; !hasRecords(); round++ {
		if round == 20 {
			t.Fatal("the journal never held a record")
		}
		var wg sync.WaitGroup
		for room := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				say(t, addr, fmt.Sprint("room", room), "alice", fmt.Sprint("round ", round))
			}()
		}
		wg.Wait()
	}
	say(t, addr, "lobby", "alice", "written", "before", "the kill")
	a.cmd.Process.Kill()
	<-a.done

	out := ok(t, nil, "-data", dir, "sql", "Room", "lobby", "SELECT text FROM messages ORDER BY id")
	contains(t, out, "written", "before", "the kill")
	out = ok(t, nil, "-data", dir, "sql", "Room", "room0", "SELECT text FROM messages ORDER BY id")
	contains(t, out, "round 0")
	rec, err := durability.Recover(filepath.Join(dir, durability.JournalDir), dir)
	if err != nil || !rec.Clean {
		t.Fatalf("after the CLI opened the folder, Recover = %+v, %v; want it clean: the CLI did not recover the journal", rec, err)
	}
}
