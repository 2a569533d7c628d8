package durable_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durable-go/durable"
	"github.com/durable-go/durable/internal/clock"
)

// Ledger exercises Storage.Transaction: it writes rows before, inside and
// after a transaction that calls a peer object.
type Ledger struct {
	st  *durable.State
	env *ledgerEnv
	gen int64
}

type ledgerEnv struct {
	ns      *durable.Namespace[Ledger]
	built   atomic.Int64
	entered chan string   // a Wait call announces itself
	release chan struct{} // and waits for this
	clock   *clock.Fake
}

var errLedger = errors.New("ledger: planned failure")

func newLedger(st *durable.State, e *ledgerEnv) (*Ledger, error) {
	_, err := st.Storage().SQL().Exec("CREATE TABLE IF NOT EXISTS rows (k TEXT PRIMARY KEY)")
	return &Ledger{st: st, env: e, gen: e.built.Add(1)}, err
}

func (l *Ledger) add(k string) error {
	_, err := l.st.Storage().SQL().Exec("INSERT INTO rows VALUES (?)", k)
	return err
}

// Gen tells which instance answered.
func (l *Ledger) Gen(ctx context.Context) (int64, error) { return l.gen, nil }

// Rows returns the stored row keys and KV keys, sorted.
func (l *Ledger) Rows(ctx context.Context) ([]string, error) {
	var out []string
	cur, err := l.st.Storage().SQL().Exec("SELECT k FROM rows ORDER BY k")
	if err != nil {
		return nil, err
	}
	for cur.Next() {
		var k string
		if err := cur.Scan(&k); err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	if err := cur.Err(); err != nil {
		return nil, err
	}
	kv, err := durable.List[int](l.st.Storage(), durable.ListOptions{})
	for _, e := range kv {
		out = append(out, "kv:"+e.Key)
	}
	return out, err
}

// Wait announces itself and blocks until the test releases it.
func (l *Ledger) Wait(ctx context.Context) error {
	name, _ := l.st.Name()
	l.env.entered <- name
	<-l.env.release
	return nil
}

// Touch writes a row; the tests use it to see when other events get in.
func (l *Ledger) Touch(ctx context.Context, k string) error { return l.add(k) }

// Transfer writes "pre", then in a transaction writes "in" (SQL and KV)
// and sets the alarm, calls peer.Wait and fails if fail is set; then
// writes "post". It returns the transaction's error as a string.
func (l *Ledger) Transfer(ctx context.Context, peer string, fail bool) (string, error) {
	if err := l.add("pre"); err != nil {
		return "", err
	}
	err := l.st.Storage().Transaction(ctx, func(ctx context.Context) error {
		if err := l.add("in"); err != nil {
			return err
		}
		if err := l.st.Storage().Put("in", 1); err != nil {
			return err
		}
		if err := l.st.Storage().SetAlarm(time.Unix(4e9, 0)); err != nil {
			return err
		}
		if peer != "" {
			if err := durable.Do0(ctx, l.env.ns.GetByName(peer), (*Ledger).Wait); err != nil {
				return err
			}
		}
		if fail {
			return errLedger
		}
		return nil
	})
	if err != nil && !errors.Is(err, errLedger) {
		return "", err
	}
	if err := l.add("post"); err != nil {
		return "", err
	}
	if err != nil {
		return err.Error(), nil
	}
	return "", nil
}

// Alarm makes SetAlarm legal; the alarm set is far in the future.
func (l *Ledger) Alarm(ctx context.Context, info durable.AlarmInfo) error { return nil }

// AlarmAt returns the stored alarm as Unix seconds, 0 if none.
func (l *Ledger) AlarmAt(ctx context.Context) (int64, error) {
	at, ok, err := l.st.Storage().GetAlarm()
	if !ok || err != nil {
		return 0, err
	}
	return at.Unix(), nil
}

// Nested writes "outer" in a transaction holding a failing inner one
// that writes "inner".
func (l *Ledger) Nested(ctx context.Context) error {
	return l.st.Storage().Transaction(ctx, func(ctx context.Context) error {
		if err := l.add("outer"); err != nil {
			return err
		}
		err := l.st.Storage().Transaction(ctx, func(ctx context.Context) error {
			if err := l.add("inner"); err != nil {
				return err
			}
			return errLedger
		})
		if !errors.Is(err, errLedger) {
			return errors.New("inner transaction: want errLedger, got " + errString(err))
		}
		return nil
	})
}

// Misuse tries what a transaction forbids and returns the errors.
func (l *Ledger) Misuse(ctx context.Context, peer string) ([]string, error) {
	s := l.st.Storage()
	var out []string
	// An outgoing call inside TransactionSync.
	err := s.TransactionSync(func() error {
		if err := l.add("sync-call"); err != nil {
			return err
		}
		return durable.Do1(ctx, l.env.ns.GetByName(peer), (*Ledger).Touch, "x")
	})
	out = append(out, txErrKind(err))
	// Transaction inside TransactionSync.
	err = s.TransactionSync(func() error {
		return s.Transaction(ctx, func(ctx context.Context) error { return nil })
	})
	out = append(out, txErrKind(err))
	// Sync inside Transaction, and inside TransactionSync.
	err = s.Transaction(ctx, func(ctx context.Context) error { return s.Sync(ctx) })
	out = append(out, txErrKind(err))
	err = s.TransactionSync(func() error { return s.Sync(ctx) })
	out = append(out, txErrKind(err))
	// Transaction with a ctx that is not this turn's.
	err = s.Transaction(context.Background(), func(ctx context.Context) error { return nil })
	out = append(out, txErrKind(err))
	return out, nil
}

// Panics panics inside a transaction after writing "panic".
func (l *Ledger) Panics(ctx context.Context) error {
	return l.st.Storage().Transaction(ctx, func(ctx context.Context) error {
		if err := l.add("panic"); err != nil {
			return err
		}
		panic("inside a transaction")
	})
}

// Stuck holds a transaction open until its ctx ends.
func (l *Ledger) Stuck(ctx context.Context) error {
	return l.st.Storage().Transaction(ctx, func(ctx context.Context) error {
		if err := l.add("stuck"); err != nil {
			return err
		}
		<-ctx.Done()
		return ctx.Err()
	})
}

func errString(err error) string {
	if err == nil {
		return "nil"
	}
	return err.Error()
}

func txErrKind(err error) string {
	switch {
	case err == nil:
		return "nil"
	case errors.Is(err, durable.ErrInTransaction):
		return "ErrInTransaction"
	case errors.Is(err, durable.ErrNoTurn):
		return "ErrNoTurn"
	}
	return err.Error()
}

func newLedgers(t *testing.T, opts durable.Options) *ledgerEnv {
	t.Helper()
	return registerLedgers(t, openRuntime(t, opts), opts)
}

func registerLedgers(t *testing.T, rt *durable.Runtime, opts durable.Options) *ledgerEnv {
	t.Helper()
	e := &ledgerEnv{entered: make(chan string, 1), release: make(chan struct{})}
	if fc, ok := opts.Clock.(*clock.Fake); ok {
		e.clock = fc
	}
	e.ns = durable.MustRegister(rt, "Ledger", newLedger, e)
	return e
}

func rowsOf(t *testing.T, e *ledgerEnv, name string) string {
	t.Helper()
	rows, err := durable.Call0(t.Context(), e.ns.GetByName(name), (*Ledger).Rows)
	if err != nil {
		t.Fatalf("Rows(%s): %v", name, err)
	}
	return strings.Join(rows, " ")
}

func TestTransaction_CommitsWithTheTurn(t *testing.T) {
	e := newLedgers(t, durable.Options{Durability: durable.Fsync})
	close(e.release)
	got, err := durable.Call2(t.Context(), e.ns.GetByName("a"), (*Ledger).Transfer, "b", false)
	if err != nil || got != "" {
		t.Fatalf("Transfer = %q, %v", got, err)
	}
	if rows := rowsOf(t, e, "a"); rows != "in post pre kv:in" {
		t.Fatalf("rows = %q, want in post pre kv:in", rows)
	}
	if at, err := durable.Call0(t.Context(), e.ns.GetByName("a"), (*Ledger).AlarmAt); err != nil || at != 4e9 {
		t.Fatalf("alarm = %d, %v; want the one set inside the transaction", at, err)
	}
}

func TestTransaction_ErrorRollsBackOnlyItsWrites(t *testing.T) {
	e := newLedgers(t, durable.Options{Durability: durable.NoSync})
	close(e.release)
	a := e.ns.GetByName("a")
	gen, _ := durable.Call0(t.Context(), a, (*Ledger).Gen)
	got, err := durable.Call2(t.Context(), a, (*Ledger).Transfer, "b", true)
	if err != nil || got != errLedger.Error() {
		t.Fatalf("Transfer = %q, %v; want the transaction's error returned to the handler", got, err)
	}
	// The transaction's SQL row, KV pair and alarm are gone; the writes
	// before and after it stand.
	if rows := rowsOf(t, e, "a"); rows != "post pre" {
		t.Fatalf("rows = %q, want post pre", rows)
	}
	if at, err := durable.Call0(t.Context(), a, (*Ledger).AlarmAt); err != nil || at != 0 {
		t.Fatalf("alarm = %d, %v; want none (rolled back)", at, err)
	}
	if g, _ := durable.Call0(t.Context(), a, (*Ledger).Gen); g != gen {
		t.Fatalf("instance %d after a failed transaction, want %d: a failed transaction must not reset the object", g, gen)
	}
}

func TestTransaction_HoldsEventsAcrossCalls(t *testing.T) {
	e := newLedgers(t, durable.Options{Durability: durable.NoSync})
	a := e.ns.GetByName("a")
	done := make(chan error, 1)
	go func() {
		_, err := durable.Call2(context.Background(), a, (*Ledger).Transfer, "b", false)
		done <- err
	}()
	waitEntered(t, e, done)
	// a waits on b inside its transaction: another event must stay queued.
	touched := make(chan error, 1)
	go func() { touched <- durable.Do1(context.Background(), a, (*Ledger).Touch, "touch") }()
	select {
	case err := <-touched:
		t.Fatalf("Touch ran inside the transaction (err %v)", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(e.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := <-touched; err != nil {
		t.Fatalf("Touch after the transaction: %v", err)
	}
	if rows := rowsOf(t, e, "a"); rows != "in post pre touch kv:in" {
		t.Fatalf("rows = %q", rows)
	}
}

func TestTransaction_Nested(t *testing.T) {
	e := newLedgers(t, durable.Options{Durability: durable.NoSync})
	if err := durable.Do0(t.Context(), e.ns.GetByName("a"), (*Ledger).Nested); err != nil {
		t.Fatal(err)
	}
	if rows := rowsOf(t, e, "a"); rows != "outer" {
		t.Fatalf("rows = %q, want outer only", rows)
	}
}

func TestTransaction_Misuse(t *testing.T) {
	e := newLedgers(t, durable.Options{Durability: durable.NoSync})
	a := e.ns.GetByName("a")
	gen, _ := durable.Call0(t.Context(), a, (*Ledger).Gen)
	got, err := durable.Call1(t.Context(), a, (*Ledger).Misuse, "b")
	if err != nil {
		t.Fatal(err)
	}
	want := "ErrInTransaction ErrInTransaction ErrInTransaction ErrInTransaction ErrNoTurn"
	if strings.Join(got, " ") != want {
		t.Fatalf("Misuse = %q, want %q", strings.Join(got, " "), want)
	}
	if g, _ := durable.Call0(t.Context(), a, (*Ledger).Gen); g != gen {
		t.Fatalf("instance %d, want %d: a refused call must not reset the object", g, gen)
	}
	if rows := rowsOf(t, e, "a"); rows != "" {
		t.Fatalf("rows = %q, want none (each refused TransactionSync rolled back)", rows)
	}
	if rows := rowsOf(t, e, "b"); rows != "" {
		t.Fatalf("b has rows %q: the call inside TransactionSync must not have left", rows)
	}
}

func TestTransaction_PanicRollsBackAndResets(t *testing.T) {
	e := newLedgers(t, durable.Options{Durability: durable.NoSync})
	a := e.ns.GetByName("a")
	gen, _ := durable.Call0(t.Context(), a, (*Ledger).Gen)
	err := durable.Do0(t.Context(), a, (*Ledger).Panics)
	var re *durable.RemoteError
	if !errors.As(err, &re) || !re.Panic {
		t.Fatalf("Panics err = %v, want a RemoteError with Panic", err)
	}
	if g, _ := durable.Call0(t.Context(), a, (*Ledger).Gen); g != gen+1 {
		t.Fatalf("instance %d, want %d (reset by the panic)", g, gen+1)
	}
	if rows := rowsOf(t, e, "a"); rows != "" {
		t.Fatalf("rows = %q, want none", rows)
	}
}

func TestTransaction_Timeout(t *testing.T) {
	fc := clock.NewFake(time.Unix(0, 0))
	e := newLedgers(t, durable.Options{Durability: durable.NoSync, Clock: fc})
	a := e.ns.GetByName("a")
	done := make(chan error, 1)
	go func() { done <- durable.Do0(context.Background(), a, (*Ledger).Stuck) }()
	for { // until Stuck holds the turn
		select {
		case err := <-done:
			t.Fatalf("Stuck returned early: %v", err)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
		_, err := durable.Call0(ctx, a, (*Ledger).Gen)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			break
		}
	}
	fc.Advance(durable.DefaultBlockConcurrencyTimeout)
	if err := <-done; !errors.Is(err, durable.ErrBlockTimeout) || !errors.Is(err, durable.ErrObjectReset) {
		t.Fatalf("Stuck err = %v, want ErrBlockTimeout and ErrObjectReset", err)
	}
	if rows := rowsOf(t, e, "a"); rows != "" {
		t.Fatalf("rows = %q, want none", rows)
	}
}

// TestTransaction_CallWaitsForEarlierWrites checks the output gate: the
// writes made before a transaction are durable before a call made inside
// it leaves. Fsyncs are held back until the test lets them run.
func TestTransaction_CallWaitsForEarlierWrites(t *testing.T) {
	var hold atomic.Bool
	gate := make(chan struct{})
	syncFile := func(f *os.File) error {
		if hold.Load() {
			<-gate
		}
		return f.Sync()
	}
	opts := durable.Options{Dir: t.TempDir(), Durability: durable.Fsync}
	rt, err := durable.OpenWithSyncHooks(opts, syncFile, nil, 1000)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	e := registerLedgers(t, rt, opts)
	// Create both objects' databases first.
	for _, n := range []string{"a", "b"} {
		if err := durable.Do1(t.Context(), e.ns.GetByName(n), (*Ledger).Touch, "init"); err != nil {
			t.Fatal(err)
		}
	}
	hold.Store(true)
	done := make(chan error, 1)
	go func() {
		_, err := durable.Call2(context.Background(), e.ns.GetByName("a"), (*Ledger).Transfer, "b", false)
		done <- err
	}()
	select {
	case who := <-e.entered:
		t.Fatalf("%s was called before a's earlier write was durable", who)
	case <-time.After(50 * time.Millisecond):
	}
	hold.Store(false)
	close(gate)
	waitEntered(t, e, done)
	close(e.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// waitEntered waits until object b's Wait is called, failing the test if
// the call that should reach it (whose error arrives on done) ends first.
func waitEntered(t *testing.T, e *ledgerEnv, done <-chan error) {
	t.Helper()
	select {
	case who := <-e.entered:
		if who != "b" {
			t.Fatalf("entered %q, want b", who)
		}
	case err := <-done:
		t.Fatalf("the transfer ended before calling b: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("b was not called within 30 s")
	}
}
