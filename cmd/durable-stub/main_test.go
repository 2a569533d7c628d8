package main

import (
	"errors"
	"flag"
	"go/ast"
	"go/parser"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// copyInput copies the .go files of testdata/golden/<name>/input into a
// new temporary directory and returns it.
func copyInput(t *testing.T, name string) string {
	t.Helper()
	dir := t.TempDir()
	files, err := filepath.Glob(filepath.Join("testdata", "golden", name, "input", "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no input files for %s: %v", name, err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o666); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestRun_DefaultOutput(t *testing.T) {
	dir := copyInput(t, "basic")
	want, err := os.ReadFile(filepath.Join("testdata", "golden", "basic", "want.golden"))
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "counter_stub.go")
	// The second run reads the first one's output and must skip it.
	for i := range 2 {
		if err := run([]string{"-type", "Counter", dir}, &strings.Builder{}); err != nil {
			t.Fatalf("run %d: %v", i+1, err)
		}
		got, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("run %d: %s differs from want.golden:\n%s", i+1, out, got)
		}
	}
}

func TestRun_RefusesToOverwrite(t *testing.T) {
	dir := copyInput(t, "basic")
	out := filepath.Join(dir, "counter_stub.go")
	const mine = "package basic\n\n// This file is the user's.\n"
	if err := os.WriteFile(out, []byte(mine), 0o666); err != nil {
		t.Fatal(err)
	}
	err := run([]string{"-type", "Counter", dir}, &strings.Builder{})
	if err == nil || !strings.Contains(err.Error(), "not written by durable-stub") {
		t.Errorf("err = %v, want a refusal to overwrite", err)
	}
	if got, _ := os.ReadFile(out); string(got) != mine {
		t.Errorf("%s was changed to:\n%s", out, got)
	}
}

func TestRun_UsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no type", nil, "-type is required"},
		{"empty type", []string{"-type", ""}, "-type is required"},
		{"bad type name", []string{"-type", "Counter,1x"}, `-type: "1x" is not a type name`},
		{"blank type name", []string{"-type", "_"}, `-type: "_" is not a type name`},
		{"two dirs", []string{"-type", "Counter", "a", "b"}, "want at most one directory, got 2 arguments"},
		{"unknown flag", []string{"-x"}, "flag provided but not defined: -x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := run(tt.args, &strings.Builder{})
			var uerr usageError
			if !errors.As(err, &uerr) {
				t.Fatalf("err = %v (%T), want a usageError", err, err)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("err = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRun_Help(t *testing.T) {
	var stderr strings.Builder
	err := run([]string{"-h"}, &stderr)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("err = %v, want flag.ErrHelp", err)
	}
	for _, want := range []string{synopsis, "-type", "-output"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("help does not mention %q:\n%s", want, stderr.String())
		}
	}
}

func TestParseTypes(t *testing.T) {
	got, err := parseTypes("A, b,A,C")
	if want := []string{"A", "b", "C"}; err != nil || !slices.Equal(got, want) {
		t.Errorf("parseTypes = %q, %v; want %q, nil", got, err, want)
	}
}

func TestNames(t *testing.T) {
	tests := []struct {
		typ  string
		want stubNames
	}{
		{"Counter", stubNames{"CounterStub", "NewCounterStub", "CounterByName", "CounterByID"}},
		{"counter", stubNames{"counterStub", "newCounterStub", "counterByName", "counterByID"}},
		{"URL", stubNames{"URLStub", "NewURLStub", "URLByName", "URLByID"}},
	}
	for _, tt := range tests {
		if got := names(tt.typ); got != tt.want {
			t.Errorf("names(%q) = %+v, want %+v", tt.typ, got, tt.want)
		}
	}
}

func TestGuessName(t *testing.T) {
	tests := []struct{ path, want string }{
		{"fmt", "fmt"},
		{"math/rand/v2", "rand"},
		{"gopkg.in/yaml.v3", "yaml"},
		{"github.com/mattn/go-isatty", "isatty"},
		{"github.com/foo/bar-go", "bar"},
		{"github.com/durable-go/durable", "durable"},
		{"github.com/foo/bar/v3", "bar"},
	}
	for _, tt := range tests {
		if got := guessName(tt.path); got != tt.want {
			t.Errorf("guessName(%q) = %q, want %q", tt.path, got, tt.want)
		}
	}
}

func TestParamNames(t *testing.T) {
	tests := []struct {
		name      string
		params    string // a parameter list, without ctx
		forbidden []string
		want      [][]string
	}{
		{"kept", "n int, a, b string", nil, [][]string{{"n"}, {"a", "b"}}},
		{"unnamed", "int, string", nil, [][]string{{"a1"}, {"a2"}}},
		{"blank", "_ int, x string, _ bool", nil, [][]string{{"a1"}, {"x"}, {"a3"}}},
		{"forbidden", "s, ctx int, v string", []string{"s", "ctx"}, [][]string{{"a1", "a2"}, {"v"}}},
		{"a-names taken", "s int, a1 string", []string{"s"}, [][]string{{"arg1"}, {"a1"}}},
		{"all taken", "s int, a1, arg1 string", []string{"s"}, [][]string{{"arg1_"}, {"a1", "arg1"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x, err := parser.ParseExpr("func(" + tt.params + ")")
			if err != nil {
				t.Fatal(err)
			}
			forbidden := make(map[string]bool)
			for _, f := range tt.forbidden {
				forbidden[f] = true
			}
			got := paramNames(x.(*ast.FuncType).Params.List, forbidden)
			if !slices.EqualFunc(got, tt.want, slices.Equal) {
				t.Errorf("paramNames(%s) = %q, want %q", tt.params, got, tt.want)
			}
		})
	}
}
