package main

import (
	"bytes"
	"context"
	"errors"
	"math"
	"os"
	"strconv"
	"strings"
	"time"
)

// CPU accounting from /proc (Linux), so that a result says whether the
// server saturated its core and whether something else was running: the
// benchmark machine may be shared. Elsewhere the figures are left out.

// userHZ is the unit of the /proc tick counters (USER_HZ, 100 on every
// Linux architecture).
const userHZ = 100

// pfKthread is PF_KTHREAD in the flags field of /proc/<pid>/stat.
const pfKthread = 0x00200000

// CPU is the CPU use during the measured window, in cores (1.0 is one
// core busy all the time).
type CPU struct {
	Server float64 `json:"server"` // the -server-pid process, all threads
	Load   float64 `json:"load"`   // this load tool
	// Others is every other user-space process: a sign that the run
	// shared the machine. Processes that both started and ended inside
	// the window are missed.
	Others float64 `json:"others"`
	// Kernel is the rest of the busy time: kernel threads (the file
	// system's journal and writeback under fsync), interrupts and
	// loopback networking not charged to a process.
	Kernel float64 `json:"kernel"`
	Steal  float64 `json:"steal,omitempty"` // taken by the hypervisor
	// HasServer is false when no server process was measured.
	HasServer bool `json:"has_server"`
}

// cpuSample is one reading of the tick counters.
type cpuSample struct {
	ok          bool
	busy, steal int64           // machine-wide
	procs       map[int64]int64 // user+system ticks of user-space processes by pid
}

func readCPU() cpuSample {
	busy, steal, err := machineTicks()
	if err != nil {
		return cpuSample{}
	}
	s := cpuSample{ok: true, busy: busy, steal: steal, procs: map[int64]int64{}}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return cpuSample{}
	}
	for _, e := range ents {
		pid, err := strconv.ParseInt(e.Name(), 10, 64)
		if err != nil {
			continue
		}
		ticks, kthread, err := procTicks("/proc/" + e.Name() + "/stat")
		if err != nil || kthread {
			continue // gone, or a kernel thread
		}
		s.procs[pid] = ticks
	}
	return s
}

// procTicks returns utime+stime of a /proc/<pid>/stat file, all threads
// included, and whether the process is a kernel thread.
func procTicks(name string) (ticks int64, kthread bool, err error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return 0, false, err
	}
	i := bytes.LastIndexByte(b, ')') // the command name may hold spaces
	if i < 0 {
		return 0, false, errors.New(name + ": no command name")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); flags is field 9, utime and stime 14 and 15.
	if len(f) < 13 {
		return 0, false, errors.New(name + ": short")
	}
	flags, err0 := strconv.ParseUint(f[6], 10, 64)
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	return u + s, flags&pfKthread != 0, errors.Join(err0, err1, err2)
}

// machineTicks returns the busy (user, nice, system, irq, softirq) and
// steal ticks of all CPUs from /proc/stat.
func machineTicks() (busy, steal int64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, errors.New("/proc/stat: no cpu line")
	}
	var v [8]int64
	for i := range v {
		if v[i], err = strconv.ParseInt(f[i+1], 10, 64); err != nil {
			return 0, 0, err
		}
	}
	// user nice system idle iowait irq softirq steal
	return v[0] + v[1] + v[2] + v[5] + v[6], v[7], nil
}

// cpuWindow samples the counters at the start and the end of w and sends
// the CPU use in between (the zero CPU without /proc) on the returned
// channel.
func cpuWindow(ctx context.Context, w window, serverPID int) <-chan CPU {
	done := make(chan CPU, 1)
	go func() {
		sleep(ctx, time.Until(w.from))
		a := readCPU()
		sleep(ctx, time.Until(w.to))
		b := readCPU()
		done <- cpuBetween(a, b, w.to.Sub(w.from), int64(os.Getpid()), int64(serverPID))
	}()
	return done
}

func cpuBetween(a, b cpuSample, d time.Duration, self, server int64) CPU {
	if !a.ok || !b.ok || d <= 0 {
		return CPU{}
	}
	cores := func(ticks int64) float64 { return math.Round(float64(ticks)/userHZ/d.Seconds()*1000) / 1000 }
	var c CPU
	var procs int64
	for pid, t := range b.procs {
		dt := t - a.procs[pid] // a process born in the window counts whole
		switch pid {
		case self:
			c.Load = cores(dt)
		case server:
			c.Server, c.HasServer = cores(dt), server > 0
		default:
			c.Others += cores(dt)
		}
		procs += dt
	}
	c.Kernel = max(0, cores(b.busy-a.busy-procs))
	c.Steal = cores(b.steal - a.steal)
	return c
}
