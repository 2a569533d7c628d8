package durable_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/durable-go/durable"
)

const goodConfig = `// The app's Durable Objects.
{
  "durable_objects": {
    "bindings": [
      { "name": "ROOMS", "class_name": "ChatRoom" }, // trailing comma next
    ],
  },
  /* history: never edit an applied migration */
  "migrations": [
    { "tag": "v1", "new_sqlite_classes": ["Room", "Scratch"] },
    { "tag": "v2", "renamed_classes": [{ "from": "Room", "to": "ChatRoom" }] },
    { "tag": "v3", "deleted_classes": ["Scratch"],
      "transferred_classes": [{ "from": "Counter", "from_dir": "../old-app/data", "to": "Counter" }] },
  ],
}
`

func TestConfig_Parse(t *testing.T) {
	cfg, err := durable.ParseConfig("durable.jsonc", []byte(goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	want := &durable.Config{
		Bindings: []durable.Binding{{Name: "ROOMS", ClassName: "ChatRoom"}},
		Migrations: []durable.Migration{
			{Tag: "v1", NewSQLiteClasses: []string{"Room", "Scratch"}},
			{Tag: "v2", RenamedClasses: []durable.RenamedClass{{From: "Room", To: "ChatRoom"}}},
			{Tag: "v3", DeletedClasses: []string{"Scratch"},
				TransferredClasses: []durable.TransferredClass{{From: "Counter", FromDir: "../old-app/data", To: "Counter"}}},
		},
	}
	if !reflect.DeepEqual(cfg.Bindings, want.Bindings) || !reflect.DeepEqual(cfg.Migrations, want.Migrations) {
		t.Fatalf("got %+v\nwant %+v", cfg, want)
	}
	// An empty object is a valid config: no bindings, no migrations.
	if _, err := durable.ParseConfig("empty.jsonc", []byte("{} // nothing yet\n")); err != nil {
		t.Fatalf("empty config: %v", err)
	}
}

// TestConfig_Errors checks that each bad config gives one clear error,
// at the right line and column, naming the problem and what to do.
func TestConfig_Errors(t *testing.T) {
	mig := func(body string) string { return "{\n  \"migrations\": [\n" + body + "\n  ],\n}\n" }
	for _, tc := range []struct {
		name     string
		file     string
		line     int
		col      int
		contains []string
	}{
		{"syntax: missing comma", "{\n  \"migrations\": []\n  \"durable_objects\": {}\n}", 3, 3,
			[]string{"syntax error", "missing comma"}},
		{"syntax: truncated", "{\n  \"migrations\": [\n", 3, 1, []string{"syntax error", "ends too early"}},
		{"not an object", "[]", 1, 1, []string{"want the config, found a list"}},
		{"unknown top-level field", "{\n  \"migration\": [],\n}", 2, 3,
			[]string{`unknown field "migration" in the config`, `did you mean "migrations"?`}},
		{"wrangler top-level field", "{\"name\": \"my-worker\"}", 1, 2,
			[]string{`unknown field "name"`, `"durable_objects", "migrations"`}},
		{"unknown migration field", mig(`    {"tag": "v1", "new_sqlite_clases": ["A"]}`), 3, 19,
			[]string{`unknown field "new_sqlite_clases" in a migration`, `did you mean "new_sqlite_classes"?`}},
		{"duplicate key", mig(`    {"tag": "v1", "tag": "v2"}`), 3, 19, []string{`"tag" appears twice in a migration`}},
		{"wrong type", "{\"migrations\": {\"tag\": \"v1\"}}", 1, 16,
			[]string{"want a list of migrations, found an object", `[{"tag": ...`}},
		{"null", mig(`    {"tag": null}`), 3, 13, []string{"want a tag, found null"}},
		{"number for a class", mig(`    {"tag": "v1", "new_sqlite_classes": [3]}`), 3, 42, []string{"want a class name, found a number"}},
		{"legacy new_classes", mig(`    {"tag": "v1", "new_classes": ["A"]}`), 3, 19,
			[]string{`"new_classes" is not supported`, "use new_sqlite_classes"}},
		{"cross-script binding", "{\"durable_objects\": {\"bindings\": [{\"name\": \"X\", \"class_name\": \"A\", \"script_name\": \"w\"}]}}", 1, 68,
			[]string{`"script_name" is not supported`, "remove script_name"}},
		{"from_script", mig(`    {"tag": "v1", "transferred_classes": [{"from": "A", "from_script": "w", "to": "A"}]}`), 3, 57,
			[]string{`"from_script" is not supported`, "from_dir"}},
		{"missing tag", mig(`    {"new_sqlite_classes": ["A"]}`), 3, 5, []string{"migrations[0].tag", "tag is missing or empty", "unique tag"}},
		{"duplicate tag", mig("    {\"tag\": \"v1\"},\n    {\"tag\": \"v1\"}"), 4, 13,
			[]string{`tag "v1" is already used by the migration at line 3`}},
		{"long tag", mig(`    {"tag": "` + strings.Repeat("x", durable.MaxTagLength+1) + `"}`), 3, 13, []string{"over the limit of 128"}},
		{"control character in tag", mig(`    {"tag": "v\u0001"}`), 3, 13, []string{"control character"}},
		{"bad class name", mig(`    {"tag": "v1", "new_sqlite_classes": ["1Room"]}`), 3, 42,
			[]string{`class name "1Room" is not valid`, "starting with a letter"}},
		{"class twice in a migration", mig(`    {"tag": "v1", "new_sqlite_classes": ["A"], "deleted_classes": ["A"]}`), 3, 68,
			[]string{`class "A" already appears in this migration, at line 3`, "split the changes into two migrations"}},
		{"create an existing class", mig("    {\"tag\": \"v1\", \"new_sqlite_classes\": [\"A\"]},\n    {\"tag\": \"v2\", \"new_sqlite_classes\": [\"A\"]}"), 4, 42,
			[]string{`class "A" already exists (created by migration "v1", line 3)`}},
		{"rename a class never created", mig(`    {"tag": "v1", "renamed_classes": [{"from": "A", "to": "B"}]}`), 3, 48,
			[]string{`cannot rename class "A": no earlier migration creates class "A"`}},
		{"rename a deleted class", mig("    {\"tag\": \"v1\", \"new_sqlite_classes\": [\"A\"]},\n    {\"tag\": \"v2\", \"deleted_classes\": [\"A\"]},\n    {\"tag\": \"v3\", \"renamed_classes\": [{\"from\": \"A\", \"to\": \"B\"}]}"), 5, 48,
			[]string{`class "A" was deleted by migration "v2" (line 4)`}},
		{"rename onto an existing class", mig(`    {"tag": "v1", "new_sqlite_classes": ["A", "B"]},` + "\n" + `    {"tag": "v2", "renamed_classes": [{"from": "A", "to": "B"}]}`), 4, 59,
			[]string{`cannot rename class "A" to "B": "B" already exists`}},
		{"delete a class twice", mig("    {\"tag\": \"v1\", \"new_sqlite_classes\": [\"A\"]},\n    {\"tag\": \"v2\", \"deleted_classes\": [\"A\"]},\n    {\"tag\": \"v3\", \"deleted_classes\": [\"A\"]}"), 5, 39,
			[]string{`cannot delete class "A": class "A" was deleted by migration "v2"`}},
		{"transfer without from_dir", mig(`    {"tag": "v1", "transferred_classes": [{"from": "A", "to": "A"}]}`), 3, 43,
			[]string{"from_dir is missing or empty"}},
		{"transfer onto an existing class", mig(`    {"tag": "v1", "new_sqlite_classes": ["A"]},` + "\n" + `    {"tag": "v2", "transferred_classes": [{"from": "A", "from_dir": "x", "to": "A"}]}`), 4, 80,
			[]string{`cannot transfer into class "A": it already exists`}},
		{"binding to a deleted class", `{
  "durable_objects": {"bindings": [{"name": "S", "class_name": "Scratch"}]},
  "migrations": [
    {"tag": "v1", "new_sqlite_classes": ["Scratch"]},
    {"tag": "v2", "deleted_classes": ["Scratch"]},
  ],
}`, 2, 64, []string{`binding "S" names class "Scratch", which migration "v2" (line 5) deletes`, "remove the binding"}},
		{"binding to a renamed class", `{
  "durable_objects": {"bindings": [{"name": "R", "class_name": "Room"}]},
  "migrations": [
    {"tag": "v1", "new_sqlite_classes": ["Room"]},
    {"tag": "v2", "renamed_classes": [{"from": "Room", "to": "ChatRoom"}]},
  ],
}`, 2, 64, []string{`which migration "v2" (line 5) renamed to "ChatRoom"`, `set class_name to "ChatRoom"`}},
		{"binding to an unknown class", `{
  "durable_objects": {"bindings": [{"name": "R", "class_name": "Room"}]},
  "migrations": [{"tag": "v1", "new_sqlite_classes": ["Counter"]}],
}`, 2, 64, []string{`binding "R" names class "Room", which no migration creates`, `"new_sqlite_classes": ["Room"]`}},
		{"duplicate binding", `{"durable_objects": {"bindings": [
  {"name": "R", "class_name": "A"},
  {"name": "R", "class_name": "B"},
]}}`, 3, 12, []string{`binding "R" is already defined at line 2`}},
		{"bad binding name", `{"durable_objects": {"bindings": [{"name": "", "class_name": "A"}]}}`, 1, 44,
			[]string{`binding name "" is not valid`}},
		{"too large", "{}" + strings.Repeat(" ", durable.MaxConfigSize), 1, 1, []string{"over 1048576 bytes"}},
		{"nested too deep", "{\"migrations\": " + strings.Repeat("[", 100) + strings.Repeat("]", 100) + "}", 1, 47,
			[]string{"nested more than 32 deep"}},
		{"byte order mark and a comment", "\ufeff// c\n{\"migrations\": [{\"tag\": 1}]}", 2, 25, []string{"want a tag, found a number"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := durable.ParseConfig("durable.jsonc", []byte(tc.file))
			var ce *durable.ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("got %v (%T), want a *ConfigError", err, err)
			}
			if !errors.Is(err, durable.ErrInvalidConfig) {
				t.Errorf("%v does not match ErrInvalidConfig", err)
			}
			if ce.File != "durable.jsonc" || ce.Line != tc.line || ce.Column != tc.col {
				t.Errorf("position %s:%d:%d, want durable.jsonc:%d:%d (%v)", ce.File, ce.Line, ce.Column, tc.line, tc.col, err)
			}
			prefix := fmt.Sprintf("durable: durable.jsonc:%d:%d: ", tc.line, tc.col)
			if !strings.HasPrefix(err.Error(), prefix) {
				t.Errorf("error %q does not start with %q", err, prefix)
			}
			if ce.Hint == "" {
				t.Errorf("error %q says nothing of what to do", err)
			}
			for _, s := range tc.contains {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
		})
	}
}

// TestConfig_GoErrors checks that a Config built in Go is validated like
// a file, with errors naming the Go field.
func TestConfig_GoErrors(t *testing.T) {
	cfg := &durable.Config{
		Bindings: []durable.Binding{{Name: "R", ClassName: "Room"}},
		Migrations: []durable.Migration{
			{Tag: "v1", NewSQLiteClasses: []string{"Room"}},
			{Tag: "v2", RenamedClasses: []durable.RenamedClass{{From: "Room", To: "Hall"}}},
		},
	}
	err := cfg.Validate()
	want := `durable: Config.Bindings[0].ClassName: binding "R" names class "Room", which migration "v2" (Config.Migrations[1].RenamedClasses[0]) renamed to "Hall"; set class_name to "Hall"`
	if err == nil || err.Error() != want {
		t.Fatalf("got  %v\nwant %s", err, want)
	}
	cfg.Bindings[0].ClassName = "Hall"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	// Open validates too.
	cfg.Migrations = append(cfg.Migrations, durable.Migration{Tag: "v1"})
	_, err = durable.Open(durable.Options{Dir: t.TempDir(), Config: cfg})
	if !errors.Is(err, durable.ErrInvalidConfig) || !strings.Contains(err.Error(), "Config.Migrations[2].Tag: tag \"v1\" is already used") {
		t.Fatalf("Open: got %v, want a duplicate tag error", err)
	}
}

func TestConfig_Load(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, durable.ConfigFile)
	if _, err := durable.LoadConfig(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: got %v, want fs.ErrNotExist", err)
	}
	if err := os.WriteFile(path, []byte(goodConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := durable.LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Migrations) != 3 || cfg.Bindings[0].Name != "ROOMS" {
		t.Fatalf("loaded %+v", cfg)
	}
	bad := strings.Replace(goodConfig, `"tag": "v2"`, `"tag": "v1"`, 1)
	if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = durable.LoadConfig(path)
	if err == nil || !strings.HasPrefix(err.Error(), "durable: "+path+":11:14: migrations[1].tag: ") {
		t.Fatalf("got %v, want an error at %s:11:14", err, path)
	}
}

// FuzzConfig checks that the parser never panics, that every error it
// returns is one *ConfigError with a position inside the file, and that
// every config it accepts is valid.
func FuzzConfig(f *testing.F) {
	f.Add([]byte(goodConfig))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"migrations": [{"tag": "v1", "new_sqlite_classes": ["A"]}, {"tag": "v2", "renamed_classes": [{"from": "A", "to": "B"}]}, {"tag": "v3", "deleted_classes": ["B"]}]}`))
	f.Add([]byte(`{"durable_objects": {"bindings": [{"name": "X", "class_name": "A",},],}, /* c */ "migrations": [{"tag": "v1", "new_sqlite_classes": ["A"]}]}`))
	f.Add([]byte(`{"migrations": [{"tag": "v1", "transferred_classes": [{"from": "A", "from_dir": "../x", "to": "A"}]}]}`))
	f.Add([]byte("{\n  \"migrations\": [\n    {\"tag\": \"v1\", \"tag\": 1}\n"))
	f.Add([]byte(`{"migrations": [{"tag": "v1", "new_classes": ["A"], "deleted_classes": null}]}`))
	f.Add([]byte(strings.Repeat("[", 40) + `/* [ */ "[" // {` + "\n" + strings.Repeat("]", 40)))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := durable.ParseConfig("f.jsonc", data)
		if err != nil {
			var ce *durable.ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v is a %T, not a *ConfigError", err, err)
			}
			if !errors.Is(err, durable.ErrInvalidConfig) {
				t.Fatalf("error %v does not match ErrInvalidConfig", err)
			}
			lines := strings.Count(string(data), "\n") + 1
			if ce.Line < 1 || ce.Line > lines || ce.Column < 1 {
				t.Fatalf("error %v: position %d:%d outside the file (%d lines)", err, ce.Line, ce.Column, lines)
			}
			if ce.Msg == "" || ce.Hint == "" {
				t.Fatalf("error %v lacks a message or a hint", err)
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("ParseConfig accepted a config that Validate refuses: %v", err)
		}
		for _, m := range cfg.Migrations {
			if m.Tag == "" {
				t.Fatal("accepted an empty tag")
			}
		}
	})
}

func ExampleParseConfig() {
	_, err := durable.ParseConfig("durable.jsonc", []byte(`{
  "migrations": [
    {"tag": "v1", "new_sqlite_classes": ["Room"]},
    {"tag": "v2", "renamed_classes": [{"from": "Rom", "to": "ChatRoom"}]},
  ],
}`))
	fmt.Println(err)
	// Output:
	// durable: durable.jsonc:4:48: migrations[1].renamed_classes[0].from: cannot rename class "Rom": no earlier migration creates class "Rom"; rename a class that exists at this point of the migrations
}

// Room is the object of the config examples.
type Room struct{ st *durable.State }

func NewRoom(st *durable.State, _ struct{}) (*Room, error) { return &Room{st: st}, nil }

func (r *Room) SetTopic(ctx context.Context, topic string) error {
	return r.st.Storage().Put("topic", topic)
}

func (r *Room) Topic(ctx context.Context) (string, error) {
	topic, _, err := durable.Get[string](r.st.Storage(), "topic")
	return topic, err
}

// Version 1 of a program registers class "Room"; version 2 renames it
// "ChatRoom" and binds it as ROOMS. The object keeps its data, and the ID
// string saved by version 1 still works.
func ExampleLookup() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "durable-example")
	defer os.RemoveAll(dir)

	v1, _ := durable.ParseConfig("durable.jsonc", []byte(`{
  "migrations": [
    {"tag": "v1", "new_sqlite_classes": ["Room"]},
  ],
}`))
	rt, err := durable.Open(durable.Options{Dir: dir, Config: v1})
	if err != nil {
		panic(err)
	}
	rooms := durable.MustRegister(rt, "Room", NewRoom, struct{}{})
	lobby := rooms.GetByName("lobby")
	durable.Do1(ctx, lobby, (*Room).SetTopic, "welcome")
	saved := lobby.ID().String()
	rt.Close()

	v2, _ := durable.ParseConfig("durable.jsonc", []byte(`{
  "durable_objects": {
    "bindings": [{"name": "ROOMS", "class_name": "ChatRoom"}],
  },
  "migrations": [
    {"tag": "v1", "new_sqlite_classes": ["Room"]},
    {"tag": "v2", "renamed_classes": [{"from": "Room", "to": "ChatRoom"}]},
  ],
}`))
	rt, err = durable.Open(durable.Options{Dir: dir, Config: v2})
	if err != nil {
		panic(err)
	}
	defer rt.Close()
	durable.MustRegister(rt, "ChatRoom", NewRoom, struct{}{})
	chatRooms, err := durable.Lookup[Room](rt, "ROOMS")
	if err != nil {
		panic(err)
	}
	id, err := chatRooms.IDFromString(saved)
	if err != nil {
		panic(err)
	}
	topic, err := durable.Call0(ctx, chatRooms.Get(id), (*Room).Topic)
	fmt.Println(rt.AppliedMigrations(), chatRooms.Name(), topic, err)
	// Output: [v1 v2] ChatRoom welcome <nil>
}
