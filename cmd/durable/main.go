package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"syscall"

	"github.com/durable-go/durable"
	"github.com/durable-go/durable/internal/hook"
	"github.com/durable-go/durable/internal/inspect"
)

// Environment variables the CLI reads.
const (
	envAdminURL   = "DURABLE_ADMIN_URL"
	envAdminToken = "DURABLE_ADMIN_TOKEN"
)

// version is set with -ldflags "-X main.version=..."; else the module's.
var version = ""

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second signal kills the process
	}()
	code := run(ctx, &cli{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}, os.Args[1:])
	stop()
	os.Exit(code)
}

// cli is the command line's environment.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string

	data  string // -data
	admin string // -admin

	resolver inspect.Resolver // of the data folder, once open
}

// usageError is a mistake on the command line (exit status 2).
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// exitError carries an exit status without a message (already printed).
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

const usage = `usage: durable [-data DIR] [-admin URL] <command> [flags] [arguments]

commands:
  ls [NAMESPACE]             list namespaces, or the objects of NAMESPACE (-a: all)
  sql NS NAME|ID "QUERY"     run SQL against an object (read-only unless -write)
  kv NS NAME|ID get KEY...   show KV entries
  kv NS NAME|ID list         list KV entries (-prefix, -start, -start-after, -end, -reverse, -limit)
  alarms                     list pending alarms, earliest first
  export NS NAME|ID          write the object as a SQLite file or JSON (-format, -o FILE)
  import NS NAME|ID FILE     replace the object's content with an export ("-": stdin)
  backup DIR                 copy every object into the new data folder DIR
  check [NAMESPACE]          check the integrity of every object (exit status 1 on damage)
  version                    print the version

"durable COMMAND -h" shows a command's flags. With the folder in use by a
running app, the CLI uses the app's admin API: set DURABLE_ADMIN_URL and
DURABLE_ADMIN_TOKEN (or pass -admin URL). See docs/cli.md.

global flags:
`

// run runs the command line args and returns the exit status.
func run(ctx context.Context, c *cli, args []string) int {
	fs := flag.NewFlagSet("durable", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.StringVar(&c.data, "data", durable.DefaultDir, "data `folder`")
	fs.StringVar(&c.admin, "admin", "", "admin API `URL` of the app that has the folder open (default $"+envAdminURL+" when the folder is in use)")
	fs.Usage = func() {
		fmt.Fprint(c.stderr, usage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	name, rest := fs.Arg(0), fs.Args()[1:]
	cmd, ok := commands[name]
	if !ok {
		fmt.Fprintf(c.stderr, "durable: unknown command %q\n\n", name)
		fs.Usage()
		return 2
	}
	err := cmd(ctx, c, rest)
	var ue *usageError
	var ee *exitError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(c.stderr, "durable %s: %v\n", name, err)
		return 2
	case errors.As(err, &ee):
		return ee.code
	default:
		fmt.Fprintf(c.stderr, "durable %s: %v\n", name, err)
		return 1
	}
}

// commands maps command names to their functions.
var commands map[string]func(ctx context.Context, c *cli, args []string) error

func init() {
	commands = map[string]func(ctx context.Context, c *cli, args []string) error{
		"ls":      cmdLs,
		"sql":     cmdSQL,
		"kv":      cmdKV,
		"alarms":  cmdAlarms,
		"export":  cmdExport,
		"import":  cmdImport,
		"backup":  cmdBackup,
		"check":   cmdCheck,
		"version": cmdVersion,
	}
}

// open returns the API to use: the data folder itself, or, when a running
// app has it open (or -admin is given), the app's admin API.
func (c *cli) open() (inspect.API, func(), error) {
	if c.admin != "" {
		return c.client(c.admin)
	}
	f, err := inspect.OpenFolder(inspect.Config{Dir: c.data, Resolve: c.resolve})
	if url := c.getenv(envAdminURL); url != "" && errors.Is(err, inspect.ErrNotFound) {
		// No such folder here: the app's, named by the environment, is
		// the one meant (the CLI may run on another working directory).
		return c.client(url)
	}
	if errors.Is(err, inspect.ErrLocked) {
		url := c.getenv(envAdminURL)
		if url == "" {
			return nil, nil, fmt.Errorf("the data folder %s is in use by a running app; to go through its admin API, set %s and %s (or pass -admin URL)",
				c.data, envAdminURL, envAdminToken)
		}
		return c.client(url)
	}
	if err != nil {
		return nil, nil, err
	}
	// Read the folder's ID keys under its lock, so no migration moves
	// them meanwhile.
	resolve, err := hook.FolderResolver(c.data)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	c.resolver = inspect.IDResolver(resolve)
	return f, func() { f.Close() }, nil
}

// resolve resolves object references with the folder's ID keys (read by
// open once the folder is locked).
func (c *cli) resolve(namespace, ref string) (inspect.Ref, error) {
	if c.resolver == nil {
		return inspect.Ref{}, errors.New("durable: the data folder's ID keys are not read yet")
	}
	return c.resolver(namespace, ref)
}

// client returns the admin API client of url.
func (c *cli) client(url string) (inspect.API, func(), error) {
	token := c.getenv(envAdminToken)
	if token == "" {
		return nil, nil, fmt.Errorf("the admin API needs its token in %s", envAdminToken)
	}
	cl, err := inspect.NewClient(url, token, nil)
	if err != nil {
		return nil, nil, err
	}
	return cl, func() {}, nil
}

// parse parses flags and positional arguments in any order ("--" ends
// the flags) and checks the number of positional arguments.
func parse(fs *flag.FlagSet, args []string, min, max int) ([]string, error) {
	var pos, tail []string
	if i := slices.Index(args, "--"); i >= 0 {
		args, tail = args[:i], args[i+1:]
	}
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, &usageError{err.Error()}
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos, args = append(pos, args[0]), args[1:]
	}
	pos = append(pos, tail...)
	switch {
	case len(pos) < min:
		return nil, usagef("missing arguments; usage: durable %s", fs.Name())
	case max >= 0 && len(pos) > max:
		return nil, usagef("too many arguments (%q); usage: durable %s", pos[max:], fs.Name())
	}
	return pos, nil
}

// newFlags returns the flag set of a command; name is its usage line.
func (c *cli) newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.Usage = func() {
		fmt.Fprintf(c.stderr, "usage: durable %s\n", name)
		fs.PrintDefaults()
	}
	return fs
}

func cmdVersion(ctx context.Context, c *cli, args []string) error {
	fs := c.newFlags("version")
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	v := version
	if v == "" {
		v = "(devel)"
		if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
			v = bi.Main.Version
		}
	}
	fmt.Fprintln(c.stdout, "durable", v)
	return nil
}
