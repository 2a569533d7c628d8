package main

import (
	"encoding/json"
	"flag"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

// goldenCase is one directory of testdata/golden:
//
//	args          the flags, such as -type Counter
//	input/*.go    the package to read
//	want.golden   the file to write, or
//	want.err      the one-line error
//	want.stderr   the warnings, if any
type goldenCase struct {
	name string
	dir  string
	args []string
}

// goldenCases lists the cases under testdata/golden.
func goldenCases(t *testing.T) []goldenCase {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join("testdata", "golden", "*", "args"))
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) == 0 {
		t.Fatal("no golden cases found")
	}
	var cases []goldenCase
	for _, argsFile := range dirs {
		args, err := os.ReadFile(argsFile)
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Dir(argsFile)
		cases = append(cases, goldenCase{name: filepath.Base(dir), dir: dir, args: strings.Fields(string(args))})
	}
	return cases
}

// readOptional returns the contents of path, or "" if it does not exist.
func readOptional(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

// writeOptional writes s to path, or removes path if s is empty.
func writeOptional(t *testing.T, path, s string) {
	t.Helper()
	if s == "" {
		if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		return
	}
	if err := os.WriteFile(path, []byte(s), 0o666); err != nil {
		t.Fatal(err)
	}
}

func TestGolden(t *testing.T) {
	for _, c := range goldenCases(t) {
		t.Run(c.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out.go")
			args := append(append([]string{}, c.args...), "-output", out, filepath.Join(c.dir, "input"))
			var stderr strings.Builder
			err := run(args, &stderr)

			var gotOut, gotErr string
			if err != nil {
				gotErr = err.Error() + "\n"
			} else {
				b, rerr := os.ReadFile(out)
				if rerr != nil {
					t.Fatal(rerr)
				}
				gotOut = string(b)
			}
			files := []struct{ name, got string }{
				{"want.golden", gotOut},
				{"want.err", gotErr},
				{"want.stderr", stderr.String()},
			}
			for _, f := range files {
				path := filepath.Join(c.dir, f.name)
				if *update {
					writeOptional(t, path, f.got)
					continue
				}
				if want := readOptional(t, path); f.got != want {
					t.Errorf("%s: got\n%s\nwant\n%s", f.name, f.got, want)
				}
			}
		})
	}
}

// TestGolden_Compiles type-checks and vets every golden output together
// with its input package, adding it with an overlay so that nothing is
// written into the module.
func TestGolden_Compiles(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go vet")
	}
	goCmd := goTool(t)
	overlay := map[string]string{}
	var pkgs []string
	for _, c := range goldenCases(t) {
		golden, err := filepath.Abs(filepath.Join(c.dir, "want.golden"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(golden); err != nil {
			continue // an error case
		}
		input, err := filepath.Abs(filepath.Join(c.dir, "input"))
		if err != nil {
			t.Fatal(err)
		}
		overlay[overlayTarget(t, input)] = golden
		pkgs = append(pkgs, "./"+filepath.ToSlash(filepath.Join(c.dir, "input")))
	}
	ov := writeOverlay(t, overlay)
	cmd := exec.Command(goCmd, append([]string{"vet", "-overlay", ov}, pkgs...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go vet of the golden outputs: %v\n%s", err, out)
	}
}

// overlayTarget returns the path in dir that a generated file takes: the
// stale output of an earlier run if there is one, else a new file.
func overlayTarget(t *testing.T, dir string) string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.ParseComments|parser.PackageClauseOnly)
		if err != nil {
			t.Fatal(err)
		}
		if isOwnOutput(f) {
			return name
		}
	}
	return filepath.Join(dir, "zz_generated_stub.go")
}

// writeOverlay writes a go command -overlay file that replaces the keys of
// files with their values, and returns its path.
func writeOverlay(t *testing.T, files map[string]string) string {
	t.Helper()
	b, err := json.Marshal(map[string]any{"Replace": files})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "overlay.json")
	if err := os.WriteFile(path, b, 0o666); err != nil {
		t.Fatal(err)
	}
	return path
}

// goTool returns the path of the go command, skipping the test if there
// is none.
func goTool(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command: %v", err)
	}
	return path
}
