package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// tableCmd is "load table": a Markdown table comparing the -json results of
// several servers, workload by workload, with the ratio of each figure to
// the baseline server's.
type tableCmd struct {
	baseline string
	files    []string
}

func (c *tableCmd) parseFlags(args []string) error {
	fs := flag.NewFlagSet("load table", flag.ContinueOnError)
	fs.StringVar(&c.baseline, "baseline", "workerd", "server label the ratios divide by")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c.files = fs.Args()
	if len(c.files) == 0 {
		return errors.New("table: want at least one file of -json results")
	}
	return nil
}

func (c *tableCmd) run(out io.Writer) error {
	var results []Result
	for _, name := range c.files {
		rs, err := readResults(name)
		if err != nil {
			return err
		}
		results = append(results, rs...)
	}
	return writeTable(out, results, c.baseline)
}

// readResults reads one JSON result per line; blank lines are skipped.
func readResults(name string) ([]Result, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var rs []Result
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var r Result
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, n, err)
		}
		rs = append(rs, r)
	}
	return rs, sc.Err()
}

// writeTable prints one group of rows per workload (throughput, p50, p99,
// errors) and one column per server, each non-baseline server followed by
// its ratio to the baseline. Workloads and servers keep their order of
// first appearance, the baseline first. A later result for the same
// workload and server replaces an earlier one, unless the earlier one was
// clean and the later one contended or skipped: several runs' files can
// be combined to fill in the cells a busy machine spoiled.
func writeTable(w io.Writer, results []Result, baseline string) error {
	var workloads, servers []string
	byKey := map[[2]string]Result{}
	for _, r := range results {
		if !slices.Contains(workloads, r.Workload) {
			workloads = append(workloads, r.Workload)
		}
		if !slices.Contains(servers, r.Server) {
			servers = append(servers, r.Server)
		}
		k := [2]string{r.Workload, r.Server}
		if old, ok := byKey[k]; ok && !old.Contended && old.Skipped == "" && (r.Contended || r.Skipped != "") {
			continue // keep a clean result over a later contended or skipped one
		}
		byKey[k] = r
	}
	if i := slices.Index(servers, baseline); i > 0 {
		servers = slices.Insert(slices.Delete(servers, i, i+1), 0, baseline)
	}
	hasBase := slices.Contains(servers, baseline)

	var b strings.Builder
	b.WriteString("| workload | figure |")
	align := "|---|---|"
	for _, s := range servers {
		fmt.Fprintf(&b, " %s |", s)
		align += "--:|"
		if hasBase && s != baseline {
			fmt.Fprintf(&b, " %s / %s |", s, baseline)
			align += "--:|"
		}
	}
	b.WriteString("\n" + align + "\n")

	var notes []string
	contended := false
	type figure struct {
		name string
		get  func(Result) float64
		fmt  func(float64) string
	}
	ms := func(v float64) string { return fmt.Sprintf("%.2f", v) }
	for _, wl := range workloads {
		unit := "req/s"
		for _, s := range servers {
			if r, ok := byKey[[2]string{wl, s}]; ok && r.Unit != "" {
				unit = r.Unit
			}
		}
		figures := []figure{
			{unit, func(r Result) float64 { return r.Rate }, formatRate},
			{"p50 ms", func(r Result) float64 { return r.P50 }, ms},
			{"p99 ms", func(r Result) float64 { return r.P99 }, ms},
			{"errors", func(r Result) float64 { return float64(r.Errors) }, func(v float64) string { return fmt.Sprintf("%.0f", v) }},
		}
		for fi, f := range figures {
			label := ""
			if fi == 0 {
				label = wl
			}
			fmt.Fprintf(&b, "| %s | %s |", label, f.name)
			base, baseOK := byKey[[2]string{wl, baseline}]
			baseOK = baseOK && base.Skipped == ""
			for _, s := range servers {
				r, ok := byKey[[2]string{wl, s}]
				switch {
				case !ok:
					b.WriteString(" – |")
				case r.Skipped != "":
					b.WriteString(" n/a |")
					if fi == 0 {
						notes = append(notes, fmt.Sprintf("%s on %s: not run: %s", wl, s, r.Skipped))
					}
				case r.Contended:
					fmt.Fprintf(&b, " %s † |", f.fmt(f.get(r)))
					contended = true
				default:
					fmt.Fprintf(&b, " %s |", f.fmt(f.get(r)))
				}
				if !hasBase || s == baseline {
					continue
				}
				switch {
				case f.name == "errors", !ok, r.Skipped != "", !baseOK, f.get(base) == 0:
					b.WriteString(" |")
				default:
					fmt.Fprintf(&b, " %.2f |", f.get(r)/f.get(base))
				}
			}
			b.WriteString("\n")
		}
	}
	if hasBase {
		fmt.Fprintf(&b, "\nRatios are server / %s: above 1 is better for throughput, below 1 is better for latency.\n", baseline)
	}
	if contended {
		b.WriteString("\n† Other processes were busy during this run (see the CPU table): the figure is not trustworthy.\n")
	}
	for _, n := range notes {
		b.WriteString("\n" + n + "\n")
	}
	writeCPUTable(&b, workloads, servers, byKey)
	_, err := io.WriteString(w, b.String())
	return err
}

// writeCPUTable adds, if any result has CPU figures, a table of the CPU
// used during each measured window: by the server, by the load tool and by
// everything else (a busy "other" means the run shared the machine).
func writeCPUTable(b *strings.Builder, workloads, servers []string, byKey map[[2]string]Result) {
	has := false
	for _, r := range byKey {
		has = has || r.CPU != nil
	}
	if !has {
		return
	}
	b.WriteString("\nCPU used in the measured window, in cores: server / load tool / other processes / kernel (fsync journaling, loopback, interrupts).\n\n| workload |")
	align := "|---|"
	for _, s := range servers {
		fmt.Fprintf(b, " %s |", s)
		align += "--:|"
	}
	b.WriteString("\n" + align + "\n")
	for _, wl := range workloads {
		fmt.Fprintf(b, "| %s |", wl)
		for _, s := range servers {
			r, ok := byKey[[2]string{wl, s}]
			switch {
			case !ok || r.CPU == nil:
				b.WriteString(" – |")
			case !r.CPU.HasServer:
				fmt.Fprintf(b, " ? / %.2f / %.2f / %.2f |", r.CPU.Load, r.CPU.Others, r.CPU.Kernel)
			default:
				fmt.Fprintf(b, " %.2f / %.2f / %.2f / %.2f |", r.CPU.Server, r.CPU.Load, r.CPU.Others, r.CPU.Kernel)
			}
		}
		b.WriteString("\n")
	}
}
