package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"time"
)

// fsyncCmd is "load fsync": the latency of appending 4 KiB to a file and
// fsyncing it, the floor under every durable commit. Run next to a
// comparison, it tells how fast the disk was at the time: on a shared or
// virtual disk this varies more than anything else.
type fsyncCmd struct {
	dir string
	n   int
}

func (c *fsyncCmd) parseFlags(args []string) error {
	fs := flag.NewFlagSet("load fsync", flag.ContinueOnError)
	fs.StringVar(&c.dir, "dir", os.TempDir(), "folder on the file system to probe")
	fs.IntVar(&c.n, "n", 200, "fsyncs to time")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if c.n < 1 {
		return errors.New("-n: want at least 1")
	}
	return nil
}

func (c *fsyncCmd) run(out io.Writer) error {
	f, err := os.CreateTemp(c.dir, "fsync-probe-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	page := make([]byte, 4096)
	lat := make([]time.Duration, 0, c.n)
	for range c.n {
		t0 := time.Now()
		if _, err := f.Write(page); err != nil {
			return err
		}
		if err := f.Sync(); err != nil {
			return err
		}
		lat = append(lat, time.Since(t0))
	}
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	_, err = fmt.Fprintf(out, "4 KiB append + fsync, %d times: p50 %.3f ms, p99 %.3f ms, max %.3f ms\n",
		c.n, ms(percentile(lat, 50)), ms(percentile(lat, 99)), ms(lat[len(lat)-1]))
	return err
}
