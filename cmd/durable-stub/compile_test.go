package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestGenerated_Runs generates stubs for testdata/compile, adds them to
// that package with a go command overlay (so nothing is written into the
// module), vets the package and runs it: its main calls objects of a real
// runtime through the stubs and checks the results.
func TestGenerated_Runs(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a program")
	}
	goCmd := goTool(t)
	pkgDir, err := filepath.Abs(filepath.Join("testdata", "compile"))
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "stubs.go")
	var stderr strings.Builder
	if err := run([]string{"-type", "Counter,ledger", "-output", out, pkgDir}, &stderr); err != nil {
		t.Fatalf("run: %v", err)
	}
	if stderr.Len() > 0 {
		t.Errorf("warnings: %s", stderr.String())
	}
	ov := writeOverlay(t, map[string]string{filepath.Join(pkgDir, "zz_generated_stub.go"): out})

	vet := exec.Command(goCmd, "vet", "-overlay", ov, ".")
	vet.Dir = pkgDir
	if b, err := vet.CombinedOutput(); err != nil {
		src, _ := os.ReadFile(out)
		t.Fatalf("go vet: %v\n%s\ngenerated:\n%s", err, b, src)
	}
	prog := exec.Command(goCmd, "run", "-overlay", ov, ".", t.TempDir())
	prog.Dir = pkgDir
	b, err := prog.CombinedOutput()
	if got, want := string(b), "ok\n"; err != nil || got != want {
		t.Fatalf("go run: %v, output:\n%s\nwant %q", err, got, want)
	}
}

// TestMain_BadInput builds the command and checks that bad input gives a
// one-line message and a non-zero exit status.
func TestMain_BadInput(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the command")
	}
	goCmd := goTool(t)
	bin := filepath.Join(t.TempDir(), "durable-stub")
	if b, err := exec.Command(goCmd, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	tests := []struct {
		name       string
		args       []string
		wantStatus int
		wantPrefix string
	}{
		{"no type", nil, 2, "durable-stub: -type is required (usage: "},
		{"bad flag", []string{"-typo", "X"}, 2, "durable-stub: flag provided but not defined: -typo (usage: "},
		{"unknown type", []string{"-type", "Missing", filepath.Join("testdata", "golden", "basic", "input")}, 1, "durable-stub: type Missing not found in package basic"},
		{"missing dir", []string{"-type", "X", filepath.Join("testdata", "nosuchdir")}, 1, "durable-stub: stat testdata/nosuchdir: no such file or directory"},
		{"file not dir", []string{"-type", "X", "doc.go"}, 1, "durable-stub: doc.go is not a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(bin, tt.args...)
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			var exit *exec.ExitError
			if !errors.As(err, &exit) {
				t.Fatalf("err = %v, want an exit status", err)
			}
			if got := exit.ExitCode(); got != tt.wantStatus {
				t.Errorf("exit status = %d, want %d", got, tt.wantStatus)
			}
			msg := stderr.String()
			if !strings.HasPrefix(msg, tt.wantPrefix) || strings.Count(msg, "\n") != 1 || !strings.HasSuffix(msg, "\n") {
				t.Errorf("stderr = %q, want one line starting %q", msg, tt.wantPrefix)
			}
			if stdout.Len() > 0 {
				t.Errorf("stdout = %q, want nothing", stdout.String())
			}
		})
	}
}
