package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// common holds the flags shared by the http and ws commands.
type common struct {
	url       string
	path      string
	duration  time.Duration
	warmup    time.Duration
	timeout   time.Duration
	names     int
	prefix    string
	server    string
	workload  string
	json      bool
	pid       int
	maxOthers float64

	host string // host:port of url, set by validate
}

func (c *common) register(fs *flag.FlagSet, path string) {
	fs.StringVar(&c.url, "url", "http://127.0.0.1:8787", "base URL of the server (http://host:port, loopback only)")
	fs.StringVar(&c.path, "path", path, "path template: {name} is an object name, {seq} a number unique to the request")
	fs.DurationVar(&c.duration, "d", 10*time.Second, "measured duration")
	fs.DurationVar(&c.warmup, "warmup", time.Second, "load before the measured duration, not counted")
	fs.DurationVar(&c.timeout, "timeout", 5*time.Second, "per-request (per-message) timeout; a longer wait is an error")
	fs.IntVar(&c.names, "names", 1, "number of object names {name} cycles through")
	fs.StringVar(&c.prefix, "prefix", "bench", "object names are <prefix>-0 ... <prefix>-(names-1)")
	fs.StringVar(&c.server, "server", "", "label of the server under test, for -json and table")
	fs.StringVar(&c.workload, "workload", "", "label of the workload, for -json and table (default: the path)")
	fs.BoolVar(&c.json, "json", false, "also print the result as one JSON line on stdout")
	fs.IntVar(&c.pid, "server-pid", 0, "process id of the server, to report its CPU use (Linux)")
	fs.Float64Var(&c.maxOthers, "max-others", 0, "if other processes used more than this many cores in the window, mark the result contended and exit with status 3 (0: no check)")
}

func (c *common) validate() error {
	u, err := url.Parse(c.url)
	if err != nil {
		return fmt.Errorf("-url: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "ws" {
		return fmt.Errorf("-url %q: want http://host:port (no TLS)", c.url)
	}
	if h := u.Hostname(); h != "localhost" && !net.ParseIP(h).IsLoopback() {
		return fmt.Errorf("-url %q: the load tool only drives loopback servers (localhost, 127.0.0.0/8, ::1)", c.url)
	}
	c.host = u.Host
	if u.Port() == "" {
		c.host = net.JoinHostPort(u.Hostname(), "80")
	}
	switch {
	case !strings.HasPrefix(c.path, "/"):
		return fmt.Errorf("-path %q: want a path starting with /", c.path)
	case c.duration <= 0:
		return fmt.Errorf("-d %v: want a positive duration", c.duration)
	case c.warmup < 0:
		return fmt.Errorf("-warmup %v: want zero or more", c.warmup)
	case c.timeout <= 0:
		return fmt.Errorf("-timeout %v: want a positive duration", c.timeout)
	case c.names < 1:
		return fmt.Errorf("-names %d: want at least 1", c.names)
	}
	if c.workload == "" {
		c.workload = c.path
	}
	return nil
}

// expand fills in the path template for request number seq.
func (c *common) expand(dst []byte, seq uint64) []byte {
	p := c.path
	for {
		i := strings.IndexByte(p, '{')
		if i < 0 {
			return append(dst, p...)
		}
		dst = append(dst, p[:i]...)
		p = p[i:]
		switch {
		case strings.HasPrefix(p, "{name}"):
			dst = append(dst, c.prefix...)
			dst = append(dst, '-')
			dst = strconv.AppendUint(dst, seq%uint64(c.names), 10)
			p = p[len("{name}"):]
		case strings.HasPrefix(p, "{seq}"):
			dst = strconv.AppendUint(dst, seq, 10)
			p = p[len("{seq}"):]
		default:
			dst = append(dst, '{')
			p = p[1:]
		}
	}
}

// Result is the outcome of one run, printed as one JSON line with -json.
type Result struct {
	Workload string  `json:"workload"`
	Server   string  `json:"server"`
	Unit     string  `json:"unit"` // of Rate: "req/s" or "msg/s"
	Conns    int     `json:"conns"`
	Names    int     `json:"names,omitempty"`
	Seconds  float64 `json:"seconds"`        // measured window
	Count    int64   `json:"count"`          // successful requests, or messages delivered
	Sent     int64   `json:"sent,omitempty"` // ws: own messages sent in the window
	Rate     float64 `json:"rate"`           // Count / Seconds
	// Latencies in milliseconds, from the raw samples.
	P50  float64 `json:"p50_ms"`
	P99  float64 `json:"p99_ms"`
	Mean float64 `json:"mean_ms"`
	Max  float64 `json:"max_ms"`
	// Samples is the number of latencies behind the percentiles.
	Samples    int              `json:"samples"`
	Errors     int64            `json:"errors"`
	ErrorKinds map[string]int64 `json:"error_kinds,omitempty"`
	// CPU is the CPU use in the window, where /proc tells.
	CPU *CPU `json:"cpu,omitempty"`
	// Contended is set when other processes used more CPU than -max-others.
	Contended bool `json:"contended,omitempty"`
	// Skipped, when set, says why the workload was not run on this server;
	// compare.sh writes such lines by hand.
	Skipped string `json:"skipped,omitempty"`
}

// summarize fills in the latency figures of r from raw samples, sorting
// them.
func (r *Result) summarize(lat []time.Duration) {
	r.Samples = len(lat)
	if r.Seconds > 0 {
		r.Rate = float64(r.Count) / r.Seconds
	}
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	var sum time.Duration
	for _, d := range lat {
		sum += d
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	r.P50 = ms(percentile(lat, 50))
	r.P99 = ms(percentile(lat, 99))
	r.Mean = ms(sum / time.Duration(len(lat)))
	r.Max = ms(lat[len(lat)-1])
}

// percentile returns the p-th percentile of sorted samples, nearest-rank
// method: the smallest sample with at least p% of samples at or below it.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(p/100*float64(len(sorted))+0.999999999) - 1
	rank = max(0, min(rank, len(sorted)-1))
	return sorted[rank]
}

// print writes the human summary of r to w.
func (r *Result) print(w io.Writer) {
	fmt.Fprintf(w, "%s on %s: %d conns, %.1fs: %s %s (%d ok), p50 %.2f ms, p99 %.2f ms, mean %.2f ms, max %.2f ms, %d errors\n",
		r.Workload, orDash(r.Server), r.Conns, r.Seconds, formatRate(r.Rate), r.Unit, r.Count, r.P50, r.P99, r.Mean, r.Max, r.Errors)
	if c := r.CPU; c != nil {
		fmt.Fprintf(w, "  CPU in cores:")
		if c.HasServer {
			fmt.Fprintf(w, " server %.2f,", c.Server)
		}
		fmt.Fprintf(w, " load tool %.2f, other processes %.2f, kernel %.2f, steal %.2f\n", c.Load, c.Others, c.Kernel, c.Steal)
	}
	if r.Contended {
		fmt.Fprintln(w, "  CONTENDED: other processes were busy during the window")
	}
	for _, k := range slices.Sorted(maps.Keys(r.ErrorKinds)) {
		fmt.Fprintf(w, "  %d × %s\n", r.ErrorKinds[k], k)
	}
}

// errContended is returned by a run marked contended (-max-others).
var errContended = errors.New("other processes were busy during the measured window (-max-others)")

// finish marks r contended if other processes used more than the
// -max-others limit, prints it, and returns errContended if so.
func (c *common) finish(r *Result, out, human io.Writer) error {
	if c.maxOthers > 0 && r.CPU != nil && r.CPU.Others > c.maxOthers {
		r.Contended = true
	}
	r.print(human)
	if c.json {
		if err := r.writeJSON(out); err != nil {
			return err
		}
	}
	if r.Contended {
		return errContended
	}
	return nil
}

func (r *Result) writeJSON(w io.Writer) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// formatRate writes v with thousands separators and no decimals.
func formatRate(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 && s[i-1] != '-' {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// errorCounter counts errors by kind. It is not safe for concurrent use:
// each worker has its own, merged at the end.
type errorCounter map[string]int64

func (e errorCounter) add(kind string) { e[kind]++ }

func (e errorCounter) merge(o errorCounter) {
	for k, n := range o {
		e[k] += n
	}
}

func (e errorCounter) total() int64 {
	var n int64
	for _, v := range e {
		n += v
	}
	return n
}
