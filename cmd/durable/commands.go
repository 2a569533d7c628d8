package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/durable-go/durable/internal/inspect"
)

func cmdLs(ctx context.Context, c *cli, args []string) error {
	fs := c.newFlags("ls [flags] [NAMESPACE]")
	asJSON := fs.Bool("json", false, "print JSON")
	all := fs.Bool("a", false, "list the objects of every namespace")
	sortBy := fs.String("sort", "", "sort objects by `key`: name, id, size, modified or alarm (default: namespace, then name)")
	reverse := fs.Bool("r", false, "reverse the order")
	nameGlob := fs.String("name", "", "only objects whose name matches the `pattern` (path.Match syntax: *, ?, [a-z])")
	minSize := fs.String("min-size", "", "only objects of at least this `size` (4096, 64k, 10M)")
	since := fs.Duration("since", 0, "only objects written within this `duration` (1h, 15m)")
	withAlarm := fs.Bool("alarm", false, "only objects with a pending alarm")
	limit := fs.Int("limit", 0, "show at most `n` objects")
	pos, err := parse(fs, args, 0, 1)
	if err != nil {
		return err
	}
	var min int64
	if *minSize != "" {
		if min, err = parseBytes(*minSize); err != nil {
			return &usageError{err.Error()}
		}
	}
	if *nameGlob != "" {
		if _, err := path.Match(*nameGlob, ""); err != nil {
			return usagef("-name %q: %v", *nameGlob, err)
		}
	}
	less, ok := objectOrders[*sortBy]
	if *sortBy == "" {
		less, ok = func(a, b inspect.Object) int {
			return cmp.Or(strings.Compare(a.Namespace, b.Namespace), objectOrders["name"](a, b))
		}, true
	}
	if !ok {
		return usagef("-sort %q: want name, id, size, modified or alarm", *sortBy)
	}
	api, done, err := c.open()
	if err != nil {
		return err
	}
	defer done()

	if len(pos) == 0 && !*all {
		nss, err := api.Namespaces(ctx)
		if err != nil {
			return err
		}
		if *reverse {
			slices.Reverse(nss)
		}
		if *asJSON {
			return writeJSON(c.stdout, nss)
		}
		t := newTable(c.stdout, "NAMESPACE", "OBJECTS", "SIZE", "MODIFIED")
		for _, n := range nss {
			t.row(n.Name, strconv.Itoa(n.Objects), formatBytes(n.Size), formatTime(n.Modified))
		}
		return t.flush()
	}
	ns := ""
	if len(pos) == 1 {
		ns = pos[0]
	}
	objs, err := api.Objects(ctx, ns)
	if err != nil {
		return err
	}
	now := time.Now()
	objs = slices.DeleteFunc(objs, func(o inspect.Object) bool {
		if *nameGlob != "" {
			if ok, _ := path.Match(*nameGlob, o.Name); !ok {
				return true
			}
		}
		return o.Size < min || (*since > 0 && now.Sub(o.Modified) > *since) || (*withAlarm && o.Alarm == nil)
	})
	slices.SortStableFunc(objs, func(a, b inspect.Object) int {
		return cmp.Or(less(a, b), strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.ID, b.ID))
	})
	if *reverse {
		slices.Reverse(objs)
	}
	if *limit > 0 && len(objs) > *limit {
		objs = objs[:*limit]
	}
	if *asJSON {
		return writeJSON(c.stdout, objs)
	}
	header := []string{"NAME", "ID", "SIZE", "MODIFIED", "ALARM"}
	if ns == "" {
		header = append([]string{"NAMESPACE"}, header...)
	}
	t := newTable(c.stdout, header...)
	for _, o := range objs {
		name, alarm := o.Name, "-"
		if name == "" {
			name = "-"
		}
		if o.Alarm != nil {
			alarm = formatTime(*o.Alarm)
		}
		row := []string{name, o.ID, formatBytes(o.Size), formatTime(o.Modified), alarm}
		if ns == "" {
			row = append([]string{o.Namespace}, row...)
		}
		t.row(row...)
	}
	return t.flush()
}

// objectOrders are the -sort keys of ls. Objects without a name sort
// last by name; without an alarm, last by alarm.
var objectOrders = map[string]func(a, b inspect.Object) int{
	"name": func(a, b inspect.Object) int {
		return cmp.Or(cmp.Compare(b2i(a.Name == ""), b2i(b.Name == "")), strings.Compare(a.Name, b.Name))
	},
	"id":       func(a, b inspect.Object) int { return strings.Compare(a.ID, b.ID) },
	"size":     func(a, b inspect.Object) int { return cmp.Compare(a.Size, b.Size) },
	"modified": func(a, b inspect.Object) int { return a.Modified.Compare(b.Modified) },
	"alarm": func(a, b inspect.Object) int {
		switch {
		case a.Alarm == nil || b.Alarm == nil:
			return cmp.Compare(b2i(a.Alarm == nil), b2i(b.Alarm == nil))
		}
		return a.Alarm.Compare(*b.Alarm)
	},
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func cmdSQL(ctx context.Context, c *cli, args []string) error {
	fs := c.newFlags(`sql [flags] NAMESPACE NAME|ID "QUERY"`)
	write := fs.Bool("write", false, "allow the query to write (it then runs in one durable transaction)")
	asJSON := fs.Bool("json", false, "print JSON")
	maxRows := fs.Int("max-rows", inspect.DefaultMaxRows, "print at most `n` rows")
	pos, err := parse(fs, args, 3, 3)
	if err != nil {
		return err
	}
	api, done, err := c.open()
	if err != nil {
		return err
	}
	defer done()
	res, err := api.Query(ctx, pos[0], pos[1], inspect.Query{SQL: pos[2], Write: *write, MaxRows: *maxRows})
	if errors.Is(err, inspect.ErrReadOnly) {
		return fmt.Errorf("%w\n(nothing changed; add -write to allow writes)", err)
	}
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(c.stdout, res)
	}
	if len(res.Columns) > 0 {
		t := newTable(c.stdout, res.Columns...)
		for _, row := range res.Rows {
			cells := make([]string, len(row))
			for i, v := range row {
				cells[i] = v.String()
			}
			t.row(cells...)
		}
		if err := t.flush(); err != nil {
			return err
		}
	}
	if res.Truncated {
		fmt.Fprintf(c.stderr, "(only the first %d rows; see -max-rows)\n", len(res.Rows))
	}
	if *write {
		fmt.Fprintf(c.stderr, "%s changed\n", plural(res.Changes, "row"))
	}
	return nil
}

func cmdKV(ctx context.Context, c *cli, args []string) error {
	fs := c.newFlags("kv [flags] NAMESPACE NAME|ID get KEY... | list")
	asJSON := fs.Bool("json", false, "print JSON")
	var opts inspect.KVList
	fs.StringVar(&opts.Prefix, "prefix", "", "list: only keys starting with `prefix`")
	fs.StringVar(&opts.Start, "start", "", "list: from this `key` on (inclusive)")
	fs.StringVar(&opts.StartAfter, "start-after", "", "list: after this `key`")
	fs.StringVar(&opts.End, "end", "", "list: up to this `key` (exclusive)")
	fs.BoolVar(&opts.Reverse, "reverse", false, "list: in descending order")
	fs.IntVar(&opts.Limit, "limit", 0, "list: at most `n` entries")
	pos, err := parse(fs, args, 3, -1)
	if err != nil {
		return err
	}
	ns, ref, verb, keys := pos[0], pos[1], pos[2], pos[3:]
	switch {
	case verb != "get" && verb != "list":
		return usagef("kv: %q: want get or list", verb)
	case verb == "get" && len(keys) == 0:
		return usagef("kv get: which keys?")
	case verb == "list" && len(keys) > 0:
		return usagef("kv list takes no keys (see -prefix, -start, -end)")
	}
	api, done, err := c.open()
	if err != nil {
		return err
	}
	defer done()
	var ents []inspect.KVEntry
	var missing []string
	if verb == "list" {
		if ents, err = api.KVList(ctx, ns, ref, opts); err != nil {
			return err
		}
	} else {
		if ents, err = api.KVGet(ctx, ns, ref, keys); err != nil {
			return err
		}
		for _, k := range keys {
			if !slices.ContainsFunc(ents, func(e inspect.KVEntry) bool { return e.Key == k }) && !slices.Contains(missing, k) {
				missing = append(missing, k)
			}
		}
	}
	if *asJSON {
		if err := writeJSON(c.stdout, ents); err != nil {
			return err
		}
	} else {
		t := newTable(c.stdout, "KEY", "SIZE", "VALUE")
		for _, e := range ents {
			v := string(e.Value)
			if e.Error != "" {
				v = "(undecodable: " + e.Error + ")"
			}
			t.row(e.Key, formatBytes(int64(e.Size)), v)
		}
		if err := t.flush(); err != nil {
			return err
		}
	}
	if len(missing) > 0 {
		for _, k := range missing {
			fmt.Fprintf(c.stderr, "durable kv: key %q not found\n", k)
		}
		return &exitError{1}
	}
	return nil
}

func cmdAlarms(ctx context.Context, c *cli, args []string) error {
	fs := c.newFlags("alarms [flags]")
	asJSON := fs.Bool("json", false, "print JSON")
	ns := fs.String("namespace", "", "only alarms of `namespace`")
	limit := fs.Int("limit", 0, "show at most `n` alarms")
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	api, done, err := c.open()
	if err != nil {
		return err
	}
	defer done()
	alarms, err := api.Alarms(ctx)
	if err != nil {
		return err
	}
	if *ns != "" {
		alarms = slices.DeleteFunc(alarms, func(a inspect.Alarm) bool { return a.Namespace != *ns })
	}
	if *limit > 0 && len(alarms) > *limit {
		alarms = alarms[:*limit]
	}
	if *asJSON {
		return writeJSON(c.stdout, alarms)
	}
	now := time.Now()
	t := newTable(c.stdout, "AT", "WHEN", "NAMESPACE", "NAME", "ID")
	for _, a := range alarms {
		name := a.Name
		if name == "" {
			name = "-"
		}
		t.row(formatTime(a.At), formatUntil(a.At, now), a.Namespace, name, a.ID)
	}
	return t.flush()
}

// formatOf returns the format flag's value, or guesses it from a file name.
func formatOf(flagValue, file string) (inspect.Format, error) {
	if flagValue == "" && strings.EqualFold(filepath.Ext(file), ".json") {
		return inspect.FormatJSON, nil
	}
	f, err := inspect.ParseFormat(flagValue)
	if err != nil {
		return "", &usageError{err.Error()}
	}
	return f, nil
}

func cmdExport(ctx context.Context, c *cli, args []string) error {
	fs := c.newFlags("export [flags] NAMESPACE NAME|ID")
	format := fs.String("format", "", "sqlite (a copy of the database file) or json (default: json if -o ends in .json, else sqlite)")
	out := fs.String("o", "", "write to `file` (default: standard output)")
	pos, err := parse(fs, args, 2, 2)
	if err != nil {
		return err
	}
	f, err := formatOf(*format, *out)
	if err != nil {
		return err
	}
	if *out == "" && f == inspect.FormatSQLite && isTerminal(c.stdout) {
		return usagef("not writing a SQLite file to a terminal: use -o FILE or -format json")
	}
	api, done, err := c.open()
	if err != nil {
		return err
	}
	defer done()
	if *out == "" {
		bw := bufio.NewWriter(c.stdout)
		if err := api.Export(ctx, pos[0], pos[1], f, bw); err != nil {
			return err
		}
		return bw.Flush()
	}
	// Write next to the target and rename, so a failed export leaves no
	// half-written file under the name.
	tmp, err := os.CreateTemp(filepath.Dir(*out), "."+filepath.Base(*out)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	err = api.Export(ctx, pos[0], pos[1], f, tmp)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), *out)
	}
	return err
}

// sqliteMagic starts every SQLite database file.
var sqliteMagic = []byte("SQLite format 3\x00")

func cmdImport(ctx context.Context, c *cli, args []string) error {
	fs := c.newFlags("import [flags] NAMESPACE NAME|ID FILE")
	format := fs.String("format", "", "sqlite or json (default: from the file's first bytes)")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parse(fs, args, 3, 3)
	if err != nil {
		return err
	}
	var in io.Reader = c.stdin
	if pos[2] != "-" {
		fl, err := os.Open(pos[2])
		if err != nil {
			return err
		}
		defer fl.Close()
		in = fl
	}
	br := bufio.NewReaderSize(in, 64<<10)
	f := inspect.Format(*format)
	if f == "" {
		head, _ := br.Peek(len(sqliteMagic))
		f = inspect.FormatJSON
		if bytes.Equal(head, sqliteMagic) {
			f = inspect.FormatSQLite
		}
	} else if f, err = inspect.ParseFormat(*format); err != nil {
		return &usageError{err.Error()}
	}
	api, done, err := c.open()
	if err != nil {
		return err
	}
	defer done()
	res, err := api.Import(ctx, pos[0], pos[1], f, br)
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(c.stdout, res)
	}
	what := res.ID
	if res.Name != "" {
		what = fmt.Sprintf("%q (%s)", res.Name, res.ID)
	}
	alarm := "no alarm"
	if res.Alarm != nil {
		alarm = "alarm at " + formatTime(*res.Alarm)
	}
	fmt.Fprintf(c.stdout, "imported %s %s: %s, %s, %s, %s\n", res.Namespace, what,
		plural(int64(res.Tables), "table"), plural(res.Rows, "row"), plural(int64(res.KV), "KV entry"), alarm)
	return nil
}

func cmdBackup(ctx context.Context, c *cli, args []string) error {
	fs := c.newFlags("backup [flags] DIR")
	progress := progressFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	api, bar, done, err := c.openWithBar(*progress, "backup")
	if err != nil {
		return err
	}
	defer done()
	res, err := inspect.Backup(ctx, api, pos[0], bar.update)
	bar.finish()
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(c.stdout, res)
	}
	fmt.Fprintf(c.stdout, "backed up %s (%s, %s) to %s\n", plural(int64(res.Objects), "object"), formatBytes(res.Bytes),
		plural(int64(res.Alarms), "alarm"), res.Dir)
	return nil
}

func cmdCheck(ctx context.Context, c *cli, args []string) error {
	fs := c.newFlags("check [flags] [NAMESPACE]")
	progress := progressFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	verbose := fs.Bool("v", false, "list every object checked, not only the damaged ones")
	pos, err := parse(fs, args, 0, 1)
	if err != nil {
		return err
	}
	ns := ""
	if len(pos) == 1 {
		ns = pos[0]
	}
	api, bar, done, err := c.openWithBar(*progress, "check")
	if err != nil {
		return err
	}
	defer done()
	results, err := api.Check(ctx, ns, bar.update)
	bar.finish()
	if err != nil {
		return err
	}
	damaged := 0
	for _, r := range results {
		if !r.OK {
			damaged++
		}
	}
	if *asJSON {
		if err := writeJSON(c.stdout, results); err != nil {
			return err
		}
	} else {
		for _, r := range results {
			if r.OK && !*verbose {
				continue
			}
			what := r.ID
			if r.Name != "" {
				what = fmt.Sprintf("%q (%s)", r.Name, r.ID)
			}
			if r.OK {
				fmt.Fprintf(c.stdout, "ok       %s %s\n", r.Namespace, what)
				continue
			}
			fmt.Fprintf(c.stdout, "DAMAGED  %s %s\n", r.Namespace, what)
			for _, p := range r.Problems {
				fmt.Fprintf(c.stdout, "         %s\n", cell(p))
			}
		}
		fmt.Fprintf(c.stdout, "checked %s: %d damaged\n", plural(int64(len(results)), "object"), damaged)
	}
	if damaged > 0 {
		return &exitError{1}
	}
	return nil
}
