package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestFormatBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 10 << 20: "10.0 MiB", 3 << 40: "3.0 TiB"} {
		if got := formatBytes(n); got != want {
			t.Errorf("formatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "4096": 4096, "64k": 64 << 10, "64KiB": 64 << 10, "10M": 10 << 20, "2G": 2 << 30, "12B": 12} {
		got, err := parseBytes(in)
		if err != nil || got != want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "x", "-1", "1.5M", "10T"} {
		if _, err := parseBytes(in); err == nil {
			t.Errorf("parseBytes(%q) succeeded", in)
		}
	}
}

func TestProgressBar(t *testing.T) {
	if got := renderBar("check", 0, 4, 0); got != "check [>                             ] 0/4   0% 0s" {
		t.Errorf("empty: %q", got)
	}
	if got := renderBar("check", 4, 4, 1500*time.Millisecond); got != "check [==============================] 4/4 100% 1.5s" {
		t.Errorf("full: %q", got)
	}
	if got := renderBar("x", 0, 0, 0); !strings.Contains(got, "0/0 100%") {
		t.Errorf("nothing to do: %q", got)
	}
	var buf bytes.Buffer
	p, err := newProgressBar(&buf, progressAlways, "backup")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		p.update(i, 4)
	}
	p.finish()
	out := buf.String()
	last := out[strings.LastIndex(out, "\r"):]
	if !strings.HasPrefix(out, "\rbackup [") || !strings.Contains(last, "4/4 100%") || !strings.HasSuffix(out, "\n") || strings.Count(out, "\r") > 5 {
		t.Errorf("bar drawn as %q (the last update must be drawn, then a newline)", out)
	}
	buf.Reset()
	p, _ = newProgressBar(&buf, progressAuto, "x") // a buffer is not a terminal
	p.update(1, 1)
	p.finish()
	if buf.Len() != 0 {
		t.Errorf("auto mode drew on a non-terminal: %q", buf.String())
	}
}

func TestCell(t *testing.T) {
	if got := cell("a\tb\nc"); got != `a\tb\nc` {
		t.Errorf("cell = %q", got)
	}
	if got := cell("plain text é"); got != "plain text é" {
		t.Errorf("cell = %q", got)
	}
}
