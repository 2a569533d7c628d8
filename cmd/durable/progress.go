package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/durable-go/durable/internal/inspect"
)

// progressBar draws "label [=====>    ] done/total  pct  elapsed" on one
// line of a terminal, redrawn at most every 100 ms and at the end. It is a
// few lines of code rather than a library: the module is a library first,
// and every dependency of the CLI would become one of its users' too.
type progressBar struct {
	mu      sync.Mutex // guards every field below
	w       io.Writer
	label   string
	on      bool
	start   time.Time
	drawn   time.Time
	visible bool
}

// Progress modes of the -progress flag.
const (
	progressAuto   = "auto" // when stderr is a terminal
	progressAlways = "always"
	progressNever  = "never"
)

// progressFlag adds the -progress flag to fs.
func progressFlag(fs *flag.FlagSet) *string {
	return fs.String("progress", progressAuto, "draw a progress bar on standard error: auto (on a terminal), always or never")
}

// openWithBar opens the API (see cli.open) and makes a progress bar.
func (c *cli) openWithBar(mode, label string) (inspect.API, *progressBar, func(), error) {
	bar, err := newProgressBar(c.stderr, mode, label)
	if err != nil {
		return nil, nil, nil, err
	}
	api, done, err := c.open()
	if err != nil {
		return nil, nil, nil, err
	}
	return api, bar, done, nil
}

// newProgressBar returns a bar writing to w, drawn according to mode.
func newProgressBar(w io.Writer, mode, label string) (*progressBar, error) {
	p := &progressBar{w: w, label: label, start: time.Now()}
	switch mode {
	case progressAlways:
		p.on = true
	case progressNever:
	case progressAuto:
		p.on = isTerminal(w)
	default:
		return nil, usagef("-progress %q: want auto, always or never", mode)
	}
	return p, nil
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), ioctlGetTermios)
	return err == nil
}

// update shows done of total.
func (p *progressBar) update(done, total int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.on {
		return
	}
	now := time.Now()
	if done < total && now.Sub(p.drawn) < 100*time.Millisecond && p.visible {
		return
	}
	p.drawn = now
	p.visible = true
	fmt.Fprint(p.w, "\r"+renderBar(p.label, done, total, now.Sub(p.start)))
}

// finish ends the bar's line.
func (p *progressBar) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.visible {
		fmt.Fprintln(p.w)
		p.visible = false
	}
}

// renderBar renders one state of the bar.
func renderBar(label string, done, total int, elapsed time.Duration) string {
	const width = 30
	frac := 1.0
	if total > 0 {
		frac = float64(done) / float64(total)
	}
	fill := int(frac * width)
	bar := strings.Repeat("=", fill)
	if fill < width {
		bar += ">" + strings.Repeat(" ", width-fill-1)
	}
	return fmt.Sprintf("%s [%s] %d/%d %3.0f%% %v", label, bar, done, total, 100*frac, elapsed.Round(100*time.Millisecond))
}
