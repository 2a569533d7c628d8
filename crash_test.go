package durable_test

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/durable-go/durable"
)

var crashKills = flag.Int("crash.kills", 20, "SIGKILLs in TestCrash_AcknowledgedWritesSurvive (use 1000 for the long run)")

// Journal appends numbers to its SQLite table.
type Journal struct{ sql *durable.SQL }

func newJournal(st *durable.State, _ struct{}) (*Journal, error) {
	j := &Journal{sql: st.Storage().SQL()}
	_, err := j.sql.Exec("CREATE TABLE IF NOT EXISTS entries (n INTEGER PRIMARY KEY, note TEXT NOT NULL)")
	return j, err
}

func (j *Journal) Append(ctx context.Context, n int64) error {
	_, err := j.sql.Exec("INSERT INTO entries (n, note) VALUES (?, ?)", n, strings.Repeat("x", int(n%200)))
	return err
}

func (j *Journal) All(ctx context.Context) ([]int64, error) {
	cur, err := j.sql.Exec("SELECT n FROM entries ORDER BY n")
	if err != nil {
		return nil, err
	}
	var out []int64
	for cur.Next() {
		var n int64
		if err := cur.Scan(&n); err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, cur.Err()
}

func (j *Journal) Check(ctx context.Context) (string, error) {
	var res string
	cur, err := j.sql.Exec("PRAGMA quick_check")
	if err != nil {
		return "", err
	}
	return res, cur.One(&res)
}

const journalObjects = 10

// TestCrashChild is the child process of the crash test: it appends
// numbers from $DURABLE_CRASH_START on and prints each one once its write
// is acknowledged, until it is killed.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv("DURABLE_CRASH_DIR")
	if dir == "" {
		t.Skip("child of TestCrash_AcknowledgedWritesSurvive")
	}
	start, _ := strconv.ParseInt(os.Getenv("DURABLE_CRASH_START"), 10, 64)
	rt, err := durable.Open(durable.Options{Dir: dir})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(2)
	}
	ns := durable.MustRegister(rt, "Journal", newJournal, struct{}{})
	out := bufio.NewWriter(os.Stdout)
	var mu sync.Mutex
	var next atomic.Int64
	next.Store(start)
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				n := next.Add(1)
				stub := ns.GetByName(fmt.Sprint("j", n%journalObjects))
				if err := durable.Do1(context.Background(), stub, (*Journal).Append, n); err != nil {
					mu.Lock()
					fmt.Fprintln(out, "error", n, err)
					out.Flush()
					mu.Unlock()
					continue
				}
				mu.Lock()
				fmt.Fprintln(out, "ack", n)
				out.Flush()
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

func TestCrash_AcknowledgedWritesSurvive(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test skipped in -short mode")
	}
	dir := t.TempDir()
	acked := map[int64]bool{}
	var start int64
	rng := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	for kill := range *crashKills {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), "DURABLE_CRASH_DIR="+dir, fmt.Sprint("DURABLE_CRASH_START=", start))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string, 1024)
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		// Let it run a random while after its first acknowledgement.
		first := true
		deadline := time.After(30 * time.Second)
		var timer <-chan time.Time
	read:
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					break read
				}
				if n, found := strings.CutPrefix(l, "ack "); found {
					v, _ := strconv.ParseInt(n, 10, 64)
					acked[v] = true
					start = max(start, v)
					if first {
						first = false
						timer = time.After(time.Duration(rng.IntN(150)) * time.Millisecond)
					}
				} else if strings.HasPrefix(l, "error") || strings.HasPrefix(l, "open") {
					t.Errorf("child: %s", l)
				}
			case <-timer:
				cmd.Process.Signal(syscall.SIGKILL)
				timer = nil
			case <-deadline:
				cmd.Process.Kill()
				t.Fatalf("kill %d: child made no progress", kill)
			}
		}
		cmd.Wait()
		start += 1000 // numbers in flight at the kill may or may not exist
	}

	// Restart and check every acknowledged write.
	rt := openRuntime(t, durable.Options{Dir: dir})
	ns := durable.MustRegister(rt, "Journal", newJournal, struct{}{})
	present := map[int64]bool{}
	for i := range journalObjects {
		stub := ns.GetByName(fmt.Sprint("j", i))
		if res, err := durable.Call0(t.Context(), stub, (*Journal).Check); err != nil || res != "ok" {
			t.Fatalf("quick_check of j%d = %q, %v", i, res, err)
		}
		all, err := durable.Call0(t.Context(), stub, (*Journal).All)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range all {
			present[n] = true
		}
	}
	missing := 0
	for n := range acked {
		if !present[n] {
			missing++
		}
	}
	t.Logf("%d kills, %d acknowledged writes, %d present, %d acknowledged but missing", *crashKills, len(acked), len(present), missing)
	if missing > 0 {
		t.Fatalf("%d acknowledged writes lost", missing)
	}
	if len(acked) == 0 {
		t.Fatal("no write was acknowledged")
	}
}

// powerLoss records, at each fsync of a WAL file, the WAL and database
// contents as they were when the fsync began: what a power loss right
// after it would leave on disk.
type powerLoss struct {
	mu      sync.Mutex
	images  map[string][]byte // path -> content
	batches int
}

func (p *powerLoss) sync(f *os.File) error {
	return p.syncAll([]*os.File{f})
}

// syncAll snapshots every file, then makes them durable, then publishes the
// snapshots: only what was written before the sync began counts as synced.
func (p *powerLoss) syncAll(files []*os.File) error {
	images := map[string][]byte{}
	for _, f := range files {
		wal := f.Name()
		db := strings.TrimSuffix(wal, "-wal")
		walImg, err1 := os.ReadFile(wal)
		dbImg, err2 := os.ReadFile(db)
		if err1 != nil || err2 != nil {
			return fmt.Errorf("snapshot: %v %v", err1, err2)
		}
		images[wal], images[db] = walImg, dbImg
	}
	for _, f := range files {
		if err := f.Sync(); err != nil {
			return err
		}
	}
	p.mu.Lock()
	maps.Copy(p.images, images)
	if len(files) > 1 {
		p.batches++
	}
	p.mu.Unlock()
	return nil
}

// crash puts every object database under dir back to its last synced image
// (files never synced vanish).
func (p *powerLoss) crash(t *testing.T, dir string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() || !strings.Contains(path, "Journal") {
			return err
		}
		if img, ok := p.images[path]; ok {
			return os.WriteFile(path, img, 0o644)
		}
		return os.Remove(path)
	})
}

func runPowerLoss(t *testing.T, mode durable.Durability) (acked, missing, batches int) {
	dir := t.TempDir()
	pl := &powerLoss{images: map[string][]byte{}}
	rt, err := durable.OpenWithSyncHooks(durable.Options{Dir: dir, Durability: mode}, pl.sync, pl.syncAll, 2)
	if err != nil {
		t.Fatal(err)
	}
	ackedNs := appendFromMany(t, durable.MustRegister(rt, "Journal", newJournal, struct{}{}), powerLossObjects)
	// Power loss: whatever was not synced is gone. (Shutting down first
	// would checkpoint; crash() discards that too.)
	rt.Close()
	pl.crash(t, dir)

	missing = countMissing(t, dir, powerLossObjects, ackedNs)
	return len(ackedNs), missing, pl.batches
}

const powerLossObjects = 16

// appendFromMany appends 1..2000 from 32 callers, spread over objects
// Journal objects, and returns the numbers acknowledged.
func appendFromMany(t *testing.T, ns *durable.Namespace[Journal], objects int) []int64 {
	var mu sync.Mutex
	var acked []int64
	var wg sync.WaitGroup
	var next atomic.Int64
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				n := next.Add(1)
				if n > 2000 {
					return
				}
				stub := ns.GetByName(fmt.Sprint("j", n%int64(objects)))
				if err := durable.Do1(context.Background(), stub, (*Journal).Append, n); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				acked = append(acked, n)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return acked
}

// countMissing opens the folder dir again and counts the numbers of acked
// that none of the objects Journal objects holds.
func countMissing(t *testing.T, dir string, objects int, acked []int64) (missing int) {
	rt := openRuntime(t, durable.Options{Dir: dir, Durability: durable.NoSync})
	ns := durable.MustRegister(rt, "Journal", newJournal, struct{}{})
	present := map[int64]bool{}
	for i := range objects {
		all, err := durable.Call0(t.Context(), ns.GetByName(fmt.Sprint("j", i)), (*Journal).All)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range all {
			present[n] = true
		}
	}
	for _, n := range acked {
		if !present[n] {
			missing++
		}
	}
	return missing
}

// TestPowerLoss_AckFollowsFsync fails if a write is ever acknowledged
// before the fsync that makes it durable: after a simulated power loss
// that keeps only synced data, every acknowledged write must be there.
func TestPowerLoss_AckFollowsFsync(t *testing.T) {
	acked, missing, batches := runPowerLoss(t, durable.Fsync)
	t.Logf("fsync mode: %d acknowledged, %d missing after power loss (%d syncfs batches)", acked, missing, batches)
	if missing != 0 {
		t.Fatalf("%d acknowledged writes lost", missing)
	}
	if batches == 0 {
		t.Error("no batched sync happened: the syncfs path went untested")
	}
	// Negative control: without fsync, the same check must see losses.
	acked, missing, _ = runPowerLoss(t, durable.NoSync)
	t.Logf("nosync control: %d acknowledged, %d missing after power loss", acked, missing)
	if missing == 0 {
		t.Fatal("negative control: NoSync lost nothing, so the check cannot detect a missing fsync")
	}
}
