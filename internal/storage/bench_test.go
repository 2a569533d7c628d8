package storage_test

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"zombiezen.com/go/sqlite"

	"github.com/durable-go/durable/internal/durability"
	"github.com/durable-go/durable/internal/storage"
)

func seedTable(b *testing.B, db *storage.DB, n int) {
	b.Helper()
	exec(b, db, "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL, n INTEGER NOT NULL)")
	for i := range n {
		exec(b, db, "INSERT INTO t (id, name, n) VALUES (?, ?, ?)", i, "name-"+strconv.Itoa(i), i*2)
	}
	commit(b, db)
}

// BenchmarkExecPointRead reads one row by primary key through Exec and
// Scan, inside one long turn (as a handler doing many reads would).
func BenchmarkExecPointRead(b *testing.B) {
	db := openDB(b, storage.Options{})
	seedTable(b, db, 1000)
	var name string
	var n int64
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cur, err := db.Exec("SELECT name, n FROM t WHERE id = ?", i%1000)
		if err != nil {
			b.Fatal(err)
		}
		if err := cur.One(&name, &n); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	db.Rollback()
}

// BenchmarkRawPointRead is the same read with the bare driver.
func BenchmarkRawPointRead(b *testing.B) {
	path := filepath.Join(b.TempDir(), "raw.sqlite")
	c, err := storage.OpenConn(path, sqlite.OpenReadWrite|sqlite.OpenCreate)
	if err != nil {
		b.Fatal(err)
	}
	defer storage.CloseConn(c)
	run := func(q string, args ...any) {
		s := c.Prep(q)
		for i, a := range args {
			switch v := a.(type) {
			case int:
				s.BindInt64(i+1, int64(v))
			case string:
				s.BindText(i+1, v)
			}
		}
		for {
			row, err := s.Step()
			if err != nil {
				b.Fatal(err)
			}
			if !row {
				break
			}
		}
	}
	run("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL, n INTEGER NOT NULL)")
	run("BEGIN")
	for i := range 1000 {
		run("INSERT INTO t (id, name, n) VALUES (?, ?, ?)", i, "name-"+strconv.Itoa(i), i*2)
	}
	run("COMMIT")
	run("BEGIN")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s := c.Prep("SELECT name, n FROM t WHERE id = ?")
		s.BindInt64(1, int64(i%1000))
		row, err := s.Step()
		if err != nil || !row {
			b.Fatal(err)
		}
		_ = s.ColumnText(0)
		_ = s.ColumnInt64(1)
		if row, err := s.Step(); err != nil || row {
			b.Fatal("second row", err)
		}
		s.Reset()
	}
	b.StopTimer()
	run("ROLLBACK")
}

func BenchmarkKVPut(b *testing.B) {
	db := openDB(b, storage.Options{})
	val := make([]byte, 100)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := db.Put("key-"+strconv.Itoa(i%10000), val); err != nil {
			b.Fatal(err)
		}
		if i%1000 == 999 {
			commit(b, db)
		}
	}
	b.StopTimer()
	commit(b, db)
}

func BenchmarkKVGet(b *testing.B) {
	db := openDB(b, storage.Options{})
	val := make([]byte, 100)
	for i := range 1000 {
		if err := db.Put("key-"+strconv.Itoa(i), val); err != nil {
			b.Fatal(err)
		}
	}
	commit(b, db)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, ok, err := db.Get("key-" + strconv.Itoa(i%1000)); err != nil || !ok {
			b.Fatal(ok, err)
		}
	}
	b.StopTimer()
	db.Rollback()
}

// benchCommit measures one turn that writes one KV entry and commits,
// waiting for the ticket.
func benchCommit(b *testing.B, mode durability.Mode) {
	db := openDB(b, storage.Options{Durability: newGroup(b, mode)})
	val := make([]byte, 100)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := db.Put("key-"+strconv.Itoa(i%1000), val); err != nil {
			b.Fatal(err)
		}
		commit(b, db)
	}
}

func BenchmarkCommitNoSync(b *testing.B) { benchCommit(b, durability.NoSync) }
func BenchmarkCommitFsync(b *testing.B)  { benchCommit(b, durability.Fsync) }

// BenchmarkOpenNew activates a new object: Open of a path that does not
// exist, one KV read and Commit (Close is not timed). It reports the median
// as p50-ns. With Spares, the pool is filled before the timer starts and
// is large enough not to refill during the run: refilling competes with
// Open for the file system journal, and that cost belongs to the
// background, not to activation latency.
func BenchmarkOpenNew(b *testing.B) {
	for _, tc := range []struct {
		name   string
		spares bool
		mode   durability.Mode
		warm   int // other databases kept open (see BenchmarkOpenExisting)
		// continuous: the pool has its default size and refills while
		// objects are created back to back, as in a burst of new objects.
		continuous bool
	}{
		{"Template/NoSync", false, durability.NoSync, 0, false},
		{"Template/Fsync", false, durability.Fsync, 0, false},
		{"Spares/NoSync", true, durability.NoSync, 0, false},
		{"Spares/Fsync", true, durability.Fsync, 0, false},
		{"Spares/NoSync/Warm", true, durability.NoSync, 10, false},
		{"Spares/Fsync/Continuous", true, durability.Fsync, 0, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			dir := b.TempDir()
			opts := storage.Options{Durability: newGroup(b, tc.mode)}
			for i := range tc.warm {
				db := openAt(b, filepath.Join(dir, "warm", strconv.Itoa(i)), opts)
				if err := db.Put("k", []byte("v")); err != nil {
					b.Fatal(err)
				}
				commit(b, db)
			}
			if tc.spares {
				n := 2*b.N + 2
				if tc.continuous {
					n = 0 // the default
				}
				sp, err := storage.NewSpares(storage.SparesConfig{Dir: filepath.Join(dir, "spares"), Count: n, Sync: tc.mode == durability.Fsync})
				if err != nil {
					b.Fatal(err)
				}
				defer sp.Close()
				opts.Spares = sp
				if n == 0 {
					n = storage.DefaultSpares
				}
				for sp.Ready() < n {
					if err := sp.Err(); err != nil {
						b.Fatal(err)
					}
					runtime.Gosched()
				}
			}
			times := make([]time.Duration, 0, b.N)
			misses := 0
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if opts.Spares != nil && opts.Spares.Ready() == 0 {
					misses++
				}
				start := time.Now()
				db, err := storage.Open(filepath.Join(dir, "objects", strconv.Itoa(i)), opts)
				if err != nil {
					b.Fatal(err)
				}
				if _, _, err := db.Get("k"); err != nil {
					b.Fatal(err)
				}
				if _, err := db.Commit(); err != nil {
					b.Fatal(err)
				}
				times = append(times, time.Since(start))
				b.StopTimer()
				db.Close()
				b.StartTimer()
			}
			b.StopTimer()
			var create time.Duration
			if tc.continuous {
				// The pool refills by creating files as fast as the file
				// system allows: report what one creation in the pool's
				// folder costs now, since it varies (ext4 without a
				// journal, as on the reference machine, scans past every
				// inode freed in the last 30 s, so after a mass delete a
				// creation takes 0.3-0.8 ms instead of 20-50 µs).
				create = createCost(b, filepath.Join(dir, "spares"))
			}
			slices.Sort(times)
			b.ReportMetric(float64(times[len(times)/2].Nanoseconds()), "p50-ns")
			b.ReportMetric(float64(times[len(times)*99/100].Nanoseconds()), "p99-ns")
			if opts.Spares != nil {
				b.ReportMetric(float64(misses)/float64(b.N), "no-spare/op")
			}
			if create > 0 {
				b.ReportMetric(float64(create.Nanoseconds()), "create-ns")
			}
		})
	}
}

// createCost returns the median time to create an empty file in dir over
// 64 creations. The files stay until the benchmark's cleanup.
func createCost(b *testing.B, dir string) time.Duration {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	var d []time.Duration
	for i := range 64 {
		start := time.Now()
		f, err := os.OpenFile(filepath.Join(dir, "probe-"+strconv.Itoa(i)), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			b.Fatal(err)
		}
		d = append(d, time.Since(start))
		f.Close()
	}
	slices.Sort(d)
	return d[len(d)/2]
}

// BenchmarkOpenExisting reactivates an object: Open, one read, Commit,
// Close (all timed: a hibernated object pays both).
//
// With Warm, ten other databases stay open meanwhile, as in a running
// server: the C allocator then has partly used pages to serve from instead
// of mapping and unmapping memory for every Open and Close.
func BenchmarkOpenExisting(b *testing.B) {
	b.Run("Cold", func(b *testing.B) { benchOpenExisting(b, openCase{}) })
	b.Run("Warm", func(b *testing.B) { benchOpenExisting(b, openCase{others: 10}) })
	// Activation: Warm, plus what the runtime reads of an object it
	// activates to deliver an alarm: its name and its alarm.
	b.Run("Activation", func(b *testing.B) { benchOpenExisting(b, openCase{others: 10, activation: true}) })
	// LongWAL: Activation of a busy object, whose WAL holds 500 commits
	// since its last checkpoint (SQLite checkpoints at 1,000 pages), all
	// read when the database opens to rebuild the WAL index.
	b.Run("LongWAL", func(b *testing.B) { benchOpenExisting(b, openCase{others: 10, activation: true, commits: 500}) })
	// Crowded: 4,000 other databases open, as with thousands of live
	// objects; SQLiteLocks is the same through SQLite's default VFS, whose
	// opens walk a list of every open file (the baseline). Both report
	// ns/op for one Open, a Get, a Commit and a Close.
	b.Run("Crowded", func(b *testing.B) { benchOpenExisting(b, openCase{others: 4000}) })
	// Distinct: Activation of 10,000 databases in turn, as the alarm
	// benchmark does: every open finds the files, their metadata and
	// their pages cold in the CPU's caches.
	b.Run("Distinct", func(b *testing.B) { benchOpenExisting(b, openCase{activation: true, distinct: 10000}) })
	if runtime.GOOS == "linux" {
		b.Run("CrowdedSQLiteLocks", func(b *testing.B) {
			defer storage.UseSQLiteLocks()()
			benchOpenExisting(b, openCase{others: 4000})
		})
	}
}

// openCase is a case of BenchmarkOpenExisting.
type openCase struct {
	others     int  // other databases kept open meanwhile
	activation bool // also read the name and the alarm, as an activation does
	commits    int  // commits in the WAL when it opens (0: 1)
	distinct   int  // databases opened in turn (0: 1)
}

func benchOpenExisting(b *testing.B, c openCase) {
	others, activation, commits := c.others, c.activation, max(c.commits, 1)
	opts := storage.Options{Durability: newGroup(b, durability.NoSync)}
	for i := range others {
		db := openAt(b, filepath.Join(b.TempDir(), strconv.Itoa(i)), opts)
		if err := db.Put("k", []byte("v")); err != nil {
			b.Fatal(err)
		}
		commit(b, db)
	}
	dir := b.TempDir()
	paths := make([]string, max(c.distinct, 1))
	for i := range paths {
		paths[i] = filepath.Join(dir, strconv.Itoa(i)+".sqlite")
		db, err := storage.Open(paths[i], opts)
		if err != nil {
			b.Fatal(err)
		}
		for j := range commits {
			if err := db.Put("k", []byte(strconv.Itoa(j))); err != nil {
				b.Fatal(err)
			}
			setRuntimeRows(b, db)
			commit(b, db)
		}
		db.Close()
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		db, err := storage.Open(paths[i%len(paths)], opts)
		if err != nil {
			b.Fatal(err)
		}
		if activation {
			if _, ok, err := db.GetMeta("name"); err != nil || !ok {
				b.Fatal(ok, err)
			}
			if _, ok, err := db.Alarm(); err != nil || !ok {
				b.Fatal(ok, err)
			}
		}
		if _, _, err := db.Get("k"); err != nil {
			b.Fatal(err)
		}
		if _, err := db.Commit(); err != nil {
			b.Fatal(err)
		}
		if err := db.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIdleMemory opens b.N small databases (at least 100), leaves
// them idle after one turn each, and reports the resident memory each one
// costs (rss-bytes/db) and the part SQLite accounts for in its page cache,
// schema and statements before any release (sqlite-bytes/db). Run with
// -benchtime=500x.
//
// Released calls ReleaseMemory after the turn, as an engine would for an
// idle object.
func BenchmarkIdleMemory(b *testing.B) {
	b.Run("Cached", func(b *testing.B) { benchIdleMemory(b, false) })
	b.Run("Released", func(b *testing.B) { benchIdleMemory(b, true) })
}

func benchIdleMemory(b *testing.B, release bool) {
	n := max(b.N, 100)
	dir := b.TempDir()
	opts := storage.Options{Durability: newGroup(b, durability.NoSync)}
	// Create them first, so that file creation does not count.
	for i := range n {
		db, err := storage.Open(filepath.Join(dir, strconv.Itoa(i)), opts)
		if err != nil {
			b.Fatal(err)
		}
		db.Close()
	}
	runtime.GC()
	before := rss(b)
	dbs := make([]*storage.DB, n)
	var sqliteMem int64
	for i := range dbs {
		db, err := storage.Open(filepath.Join(dir, strconv.Itoa(i)), opts)
		if err != nil {
			b.Fatal(err)
		}
		if err := db.Put("k", []byte("v")); err != nil {
			b.Fatal(err)
		}
		cur, err := db.Exec("SELECT count(*) FROM sqlite_schema")
		if err != nil {
			b.Fatal(err)
		}
		cur.Close()
		if _, err := db.Commit(); err != nil {
			b.Fatal(err)
		}
		sqliteMem += db.Stats().Memory
		if release {
			db.ReleaseMemory()
		}
		dbs[i] = db
	}
	runtime.GC()
	after := rss(b)
	b.ReportMetric(float64(after-before)/float64(n), "rss-bytes/db")
	b.ReportMetric(float64(sqliteMem)/float64(n), "sqlite-bytes/db")
	for _, db := range dbs {
		db.Close()
	}
}

func rss(b *testing.B) int64 {
	data, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		b.Skip("no /proc/self/statm")
	}
	var size, res int64
	fmt.Sscan(string(data), &size, &res)
	return res * int64(os.Getpagesize())
}
