// The crash test runs a few seconds normally but half a minute under the
// race detector, which adds nothing to a test of processes being killed.

//go:build !race

package durable_test

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/durable-go/durable"
)

var alarmCrashKills = flag.Int("alarmcrash.kills", 10, "SIGKILLs in TestAlarmCrash_EveryAlarmFires (use 200 for the long run)")

const (
	chainObjects = 1000 // objects of the alarm crash test
	chainLength  = 10   // alarms per object, one after the other
)

// Chain is the alarm crash test's object: each alarm records its number
// in the object's storage and sets the next one, chainLength in all. Every
// delivery is also appended to an external log before the handler
// returns, so a delivery whose commit a crash lost shows up there twice.
type Chain struct {
	st  *durable.State
	env *chainEnv
}

type chainEnv struct {
	log    *os.File      // O_APPEND log of deliveries: "name i" lines; nil for none
	spread time.Duration // the next alarm comes after a random 0 to 2*spread
}

func newChain(st *durable.State, env *chainEnv) (*Chain, error) {
	return &Chain{st: st, env: env}, nil
}

// Start sets the first alarm, once.
func (c *Chain) Start(ctx context.Context, first time.Time) error {
	s := c.st.Storage()
	if _, ok, err := durable.Get[int](s, "i"); err != nil || ok {
		return err
	}
	if err := s.Put("i", 0); err != nil {
		return err
	}
	return s.SetAlarm(first)
}

func (c *Chain) Alarm(ctx context.Context, info durable.AlarmInfo) error {
	s := c.st.Storage()
	i, ok, err := durable.Get[int](s, "i")
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("alarm before Start")
	}
	name, _ := c.st.Name()
	if c.env.log != nil {
		if _, err := fmt.Fprintf(c.env.log, "%s %d\n", name, i); err != nil {
			return err
		}
	}
	if err := s.Put(fmt.Sprintf("fired/%02d", i), time.Now()); err != nil {
		return err
	}
	if err := s.Put("i", i+1); err != nil {
		return err
	}
	if i+1 < chainLength {
		return s.SetAlarm(time.Now().Add(time.Duration(rand.Int64N(int64(2*c.env.spread) + 1))))
	}
	return nil
}

// Fired returns the numbers of the alarms recorded as fired, in order.
func (c *Chain) Fired(ctx context.Context) ([]int, error) {
	entries, err := durable.List[time.Time](c.st.Storage(), durable.ListOptions{Prefix: "fired/"})
	if err != nil {
		return nil, err
	}
	var out []int
	for _, e := range entries {
		i, err := strconv.Atoi(strings.TrimPrefix(e.Key, "fired/"))
		if err != nil {
			return nil, err
		}
		out = append(out, i)
	}
	return out, nil
}

func chainSpread() time.Duration {
	// Spread the chains over about 120 ms per kill, so that alarms are
	// due during every kill.
	return time.Duration(*alarmCrashKills) * 120 * time.Millisecond / chainLength
}

// TestAlarmCrashChild is the child process of the alarm crash test: it
// opens the runtime, so that the alarms due fire, logs each delivery and
// prints "ready", until it is killed.
func TestAlarmCrashChild(t *testing.T) {
	dir := os.Getenv("DURABLE_ALARMCRASH_DIR")
	if dir == "" {
		t.Skip("child of TestAlarmCrash_EveryAlarmFires")
	}
	spread, _ := time.ParseDuration(os.Getenv("DURABLE_ALARMCRASH_SPREAD"))
	log, err := os.OpenFile(os.Getenv("DURABLE_ALARMCRASH_LOG"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		fmt.Println("log:", err)
		os.Exit(2)
	}
	rt, err := durable.Open(durable.Options{Dir: dir})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(2)
	}
	durable.MustRegister(rt, "Chain", newChain, &chainEnv{log: log, spread: spread})
	fmt.Println("ready")
	select {} // until killed
}

// TestAlarmCrash_EveryAlarmFires sets 10,000 alarms (chains of 10 over
// 1,000 objects), SIGKILLs the process that delivers them again and again
// while they are due, then checks that every alarm fired and reports how
// many were delivered more than once.
func TestAlarmCrash_EveryAlarmFires(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test skipped in -short mode")
	}
	dir := t.TempDir()
	logDir := t.TempDir()
	spread := chainSpread()

	// Set the first alarms, spread over the next second. (Only the
	// children, which are killed, need the default fsync durability.)
	rt, err := durable.Open(durable.Options{Dir: dir, Durability: durable.NoSync, IdleTimeout: noEviction})
	if err != nil {
		t.Fatal(err)
	}
	setupLog, err := os.OpenFile(filepath.Join(logDir, "setup"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer setupLog.Close()
	ns := durable.MustRegister(rt, "Chain", newChain, &chainEnv{log: setupLog, spread: spread})
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, chainObjects)
	sem := make(chan struct{}, 64)
	for i := range chainObjects {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			first := start.Add(200*time.Millisecond + time.Duration(rand.Int64N(int64(time.Second))))
			if err := durable.Do1(context.Background(), ns.GetByName(fmt.Sprint("c", i)), (*Chain).Start, first); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := rt.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Logf("setup: %v", time.Since(start).Round(time.Millisecond))
	killStart := time.Now()

	rng := rand.New(rand.NewPCG(2, uint64(time.Now().UnixNano())))
	for kill := range *alarmCrashKills {
		cmd := exec.Command(os.Args[0], "-test.run=^TestAlarmCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), "DURABLE_ALARMCRASH_DIR="+dir,
			"DURABLE_ALARMCRASH_LOG="+filepath.Join(logDir, fmt.Sprint("child", kill)),
			"DURABLE_ALARMCRASH_SPREAD="+spread.String())
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		ready := make(chan string, 1)
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				select {
				case ready <- sc.Text():
				default:
				}
			}
		}()
		select {
		case l := <-ready:
			if l != "ready" {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("child %d: %s", kill, l)
			}
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("child %d never became ready", kill)
		}
		time.Sleep(time.Duration(10+rng.IntN(140)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
	}
	firedBeforeFinal := len(countDeliveries(t, logDir))
	t.Logf("kills: %v", time.Since(killStart).Round(time.Millisecond))

	// Restart for good and let every remaining alarm fire.
	finalLog, err := os.OpenFile(filepath.Join(logDir, "final"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer finalLog.Close()
	rt = openRuntime(t, durable.Options{Dir: dir, Durability: durable.NoSync, IdleTimeout: noEviction})
	ns = durable.MustRegister(rt, "Chain", newChain, &chainEnv{log: finalLog, spread: spread})
	waitForAlarms := time.Now()
	deadline := time.Now().Add(60 * time.Second)
	for st := rt.AlarmStats(); st.Scheduled+st.Running > 0; st = rt.AlarmStats() {
		if time.Now().After(deadline) {
			t.Fatalf("alarms still pending after 60 s: %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("remaining alarms fired %v after the final restart", time.Since(waitForAlarms).Round(time.Millisecond))

	missing := 0
	for i := range chainObjects {
		got, err := durable.Call0(context.Background(), ns.GetByName(fmt.Sprint("c", i)), (*Chain).Fired)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != chainLength {
			missing += chainLength - len(got)
			if missing < 10 {
				t.Errorf("c%d fired %v, want 0 to %d", i, got, chainLength-1)
			}
		}
	}
	deliveries := countDeliveries(t, logDir)
	distinct, dups := len(deliveries), 0
	for _, n := range deliveries {
		dups += n - 1
	}
	t.Logf("%d kills; %d alarms over %d objects; %d delivered before the final restart; %d distinct delivered, %d deliveries were duplicates",
		*alarmCrashKills, chainObjects*chainLength, chainObjects, firedBeforeFinal, distinct, dups)
	if missing > 0 {
		t.Fatalf("%d alarms never fired", missing)
	}
	if distinct != chainObjects*chainLength {
		t.Fatalf("the delivery logs hold %d distinct alarms, want %d", distinct, chainObjects*chainLength)
	}
	if firedBeforeFinal == chainObjects*chainLength {
		t.Logf("warning: every alarm had fired before the last kill")
	}
}

// countDeliveries reads the delivery logs: "name i" -> deliveries.
func countDeliveries(t *testing.T, logDir string) map[string]int {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(logDir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			if name, i, ok := strings.Cut(l, " "); ok {
				if _, err := strconv.Atoi(i); err == nil {
					out[name+" "+i]++
				}
			}
		}
	}
	return out
}
