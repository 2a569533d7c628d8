package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
)

// table writes aligned columns (text/tabwriter). Cells are cleaned of
// tabs, newlines and other control characters, which would break the
// alignment.
type table struct {
	tw *tabwriter.Writer
}

func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	t.row(header...)
	return t
}

func (t *table) row(cells ...string) {
	for i, c := range cells {
		cells[i] = cell(c)
	}
	fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
}

func (t *table) flush() error { return t.tw.Flush() }

// cell escapes control characters the way Go string literals do.
func cell(s string) string {
	if !strings.ContainsFunc(s, unicode.IsControl) {
		return s
	}
	q := strconv.Quote(s)
	return q[1 : len(q)-1]
}

// writeJSON writes v indented, as the -json output of every command.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// formatBytes formats a size in bytes with binary prefixes.
func formatBytes(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	f := float64(n)
	for _, unit := range []string{"KiB", "MiB", "GiB", "TiB"} {
		f /= 1024
		if f < 1024 || unit == "TiB" {
			return fmt.Sprintf("%.1f %s", f, unit)
		}
	}
	panic("unreachable")
}

// parseBytes parses a size: an integer with an optional suffix k, M, G
// (or KiB, MiB, GiB), powers of 1024.
func parseBytes(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffixes []string
		mult     int64
	}{
		{[]string{"KiB", "k", "K"}, 1 << 10},
		{[]string{"MiB", "M", "m"}, 1 << 20},
		{[]string{"GiB", "G", "g"}, 1 << 30},
		{[]string{"B"}, 1},
	} {
		for _, suf := range u.suffixes {
			if rest, ok := strings.CutSuffix(t, suf); ok {
				t, mult = strings.TrimSpace(rest), u.mult
				goto parsed
			}
		}
	}
parsed:
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("size %q: want a number of bytes, such as 4096, 64k or 10M", s)
	}
	return n * mult, nil
}

// formatTime formats a time for a table, in the local time zone.
func formatTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

// formatUntil says how far t is from now: "in 5m0s", "3s ago".
func formatUntil(t, now time.Time) string {
	d := t.Sub(now).Round(time.Second)
	if d >= 0 {
		return "in " + d.String()
	}
	return (-d).String() + " ago"
}

// plural formats a count of things: "1 row", "2 rows", "3 KV entries".
func plural(n int64, what string) string {
	switch {
	case n == 1:
		return "1 " + what
	case strings.HasSuffix(what, "y"):
		return fmt.Sprintf("%d %sies", n, strings.TrimSuffix(what, "y"))
	}
	return fmt.Sprintf("%d %ss", n, what)
}
