package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"go/token"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// synopsis is the one-line usage shown with flag errors.
const synopsis = "usage: durable-stub -type T[,T...] [-output file] [dir]"

// main runs the command; see run.
func main() {
	err := run(os.Args[1:], os.Stderr)
	var uerr usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.As(err, &uerr):
		fmt.Fprintf(os.Stderr, "durable-stub: %s (%s)\n", oneLine(err.Error()), synopsis)
		os.Exit(2)
	default:
		fmt.Fprintf(os.Stderr, "durable-stub: %s\n", oneLine(err.Error()))
		os.Exit(1)
	}
}

// oneLine joins the lines of a message, so that every failure prints one
// line.
func oneLine(msg string) string {
	lines := strings.Split(strings.TrimSpace(msg), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimSpace(l)
	}
	return strings.Join(lines, " ")
}

// usageError is a mistake in the command line.
type usageError struct{ err error }

// Error returns the message of the mistake.
func (e usageError) Error() string { return e.err.Error() }

// Unwrap returns the mistake.
func (e usageError) Unwrap() error { return e.err }

// usagef returns a usageError.
func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// run runs the command with args (without the program name), writing
// warnings and -h help to stderr.
func run(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("durable-stub", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	typeList := fs.String("type", "", "comma-separated `names` of the object types (required)")
	output := fs.String("output", "", "output `file` (default: <dir>/<first type, lowercased>_stub.go)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stderr)
			fmt.Fprintln(stderr, synopsis)
			fs.PrintDefaults()
			return err
		}
		return usageError{err}
	}
	typeNames, err := parseTypes(*typeList)
	if err != nil {
		return err
	}
	dir := "."
	switch fs.NArg() {
	case 0:
	case 1:
		dir = fs.Arg(0)
	default:
		return usagef("want at most one directory, got %d arguments", fs.NArg())
	}
	out := *output
	if out == "" {
		out = filepath.Join(dir, strings.ToLower(typeNames[0])+"_stub.go")
	}

	p, err := loadPackage(dir)
	if err != nil {
		return err
	}
	src, warnings, err := generate(p, typeNames)
	if err != nil {
		return err
	}
	for _, w := range warnings {
		fmt.Fprintf(stderr, "durable-stub: warning: %s\n", w)
	}
	if err := checkOverwrite(out); err != nil {
		return err
	}
	return os.WriteFile(out, src, 0o666)
}

// parseTypes splits the -type list and checks each name.
func parseTypes(list string) ([]string, error) {
	if list == "" {
		return nil, usagef("-type is required")
	}
	var names []string
	seen := make(map[string]bool)
	for _, name := range strings.Split(list, ",") {
		name = strings.TrimSpace(name)
		if !token.IsIdentifier(name) || name == "_" {
			return nil, usagef("-type: %q is not a type name", name)
		}
		if !seen[name] {
			seen[name] = true
			names = append(names, name)
		}
	}
	return names, nil
}

// checkOverwrite refuses to replace a file that durable-stub did not
// write.
func checkOverwrite(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	line, err := bufio.NewReader(f).ReadSlice('\n')
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
		return err
	}
	if !bytes.Equal(bytes.TrimRight(line, "\r\n"), []byte(generatedHeader)) {
		return fmt.Errorf("%s exists and was not written by durable-stub; not overwriting it", path)
	}
	return nil
}
