package durable_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/durable-go/durable"
)

// Bank keeps accounts in SQL and a transfer log in KV.
type Bank struct {
	st  *durable.State
	sql *durable.SQL
}

func newBank(st *durable.State, _ struct{}) (*Bank, error) {
	b := &Bank{st: st, sql: st.Storage().SQL()}
	_, err := b.sql.Exec(`CREATE TABLE IF NOT EXISTS accounts (name TEXT PRIMARY KEY, balance INTEGER NOT NULL);
		INSERT OR IGNORE INTO accounts VALUES ('a', 1000), ('b', 1000), ('c', 1000)`)
	return b, err
}

func (b *Bank) balance(name string) (int64, error) {
	var v int64
	cur, err := b.sql.Exec("SELECT balance FROM accounts WHERE name = ?", name)
	if err != nil {
		return 0, err
	}
	return v, cur.One(&v)
}

// Transfer moves amount from one account to another, in two statements.
// It fails after the first write if the source would go negative.
func (b *Bank) Transfer(ctx context.Context, from, to string, amount int64) error {
	if _, err := b.sql.Exec("UPDATE accounts SET balance = balance + ? WHERE name = ?", amount, to); err != nil {
		return err
	}
	n, _, err := durable.Get[int64](b.st.Storage(), "transfers")
	if err != nil {
		return err
	}
	if err := b.st.Storage().Put("transfers", n+1); err != nil {
		return err
	}
	bal, err := b.balance(from)
	if err != nil {
		return err
	}
	if bal < amount {
		return fmt.Errorf("insufficient funds in %s", from)
	}
	_, err = b.sql.Exec("UPDATE accounts SET balance = balance - ? WHERE name = ?", amount, from)
	return err
}

func (b *Bank) Total(ctx context.Context) (int64, error) {
	var total int64
	cur, err := b.sql.Exec("SELECT sum(balance) FROM accounts")
	if err != nil {
		return 0, err
	}
	return total, cur.One(&total)
}

func (b *Bank) Transfers(ctx context.Context) (int64, error) {
	n, _, err := durable.Get[int64](b.st.Storage(), "transfers")
	return n, err
}

func (b *Bank) Balance(ctx context.Context, name string) (int64, error) { return b.balance(name) }

func TestStorage_FailedTurnWritesNothing(t *testing.T) {
	rt := openRuntime(t, durable.Options{Durability: durable.NoSync})
	ns := durable.MustRegister(rt, "Bank", newBank, struct{}{})
	bank := ns.GetByName("bank")
	ctx := t.Context()
	// The credit to b and the KV counter are written, then the turn fails.
	err := durable.Do3(ctx, bank, (*Bank).Transfer, "a", "b", int64(5000))
	var re *durable.RemoteError
	if !errors.As(err, &re) {
		t.Fatalf("err = %v, want a RemoteError", err)
	}
	if got, _ := durable.Call1(ctx, bank, (*Bank).Balance, "b"); got != 1000 {
		t.Fatalf("b = %d after a failed transfer, want 1000", got)
	}
	if got, _ := durable.Call0(ctx, bank, (*Bank).Transfers); got != 0 {
		t.Fatalf("transfers = %d after a failed transfer, want 0 (KV rolled back with SQL)", got)
	}
}

func TestStorage_BankTotalConstant(t *testing.T) {
	rt := openRuntime(t, durable.Options{})
	ns := durable.MustRegister(rt, "Bank", newBank, struct{}{})
	bank := ns.GetByName("bank")
	ctx := t.Context()
	names := []string{"a", "b", "c"}
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				from, to := names[(g+i)%3], names[(g+i+1)%3]
				err := durable.Do3(ctx, bank, (*Bank).Transfer, from, to, int64(1+(g*7+i)%400))
				if err == nil {
					mu.Lock()
					ok++
					mu.Unlock()
				}
				if total, err := durable.Call0(ctx, bank, (*Bank).Total); err != nil || total != 3000 {
					t.Errorf("total = %d, %v; want 3000", total, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if n, _ := durable.Call0(ctx, bank, (*Bank).Transfers); n != int64(ok) {
		t.Fatalf("transfers = %d, successful calls = %d", n, ok)
	}
}

type Named struct{ st *durable.State }

func newNamed(st *durable.State, _ struct{}) (*Named, error) { return &Named{st: st}, nil }

func (n *Named) Touch(ctx context.Context) (string, error) {
	if err := n.st.Storage().Put("k", "v"); err != nil {
		return "", err
	}
	name, _ := n.st.Name()
	return name, nil
}

func (n *Named) StorageOutsideTurn(ctx context.Context) error {
	errc := make(chan error)
	go func() {
		// Not the handler's goroutine, but still during the turn: allowed.
		errc <- n.st.Storage().Put("x", 1)
	}()
	return <-errc
}

func TestStorage_NameRemembered(t *testing.T) {
	rt := openRuntime(t, durable.Options{Durability: durable.NoSync})
	ns := durable.MustRegister(rt, "Named", newNamed, struct{}{})
	ctx := t.Context()
	got, err := durable.Call0(ctx, ns.GetByName("alice"), (*Named).Touch)
	if err != nil || got != "alice" {
		t.Fatalf("by name: %q, %v", got, err)
	}
	rt.EvictIdle()
	id, _ := ns.IDFromName("alice")
	byID, _ := ns.IDFromString(id.String())
	got, err = durable.Call0(ctx, ns.Get(byID), (*Named).Touch)
	if err != nil || got != "alice" {
		t.Fatalf("by ID after eviction: %q, %v; want the stored name", got, err)
	}
}

func TestStorage_OutsideTurn(t *testing.T) {
	rt := openRuntime(t, durable.Options{Durability: durable.NoSync})
	var saved *durable.State
	ns := durable.MustRegister(rt, "Leaky", func(st *durable.State, _ struct{}) (*Named, error) {
		saved = st
		return &Named{st: st}, nil
	}, struct{}{})
	if _, err := durable.Call0(t.Context(), ns.GetByName("l"), (*Named).Touch); err != nil {
		t.Fatal(err)
	}
	if err := saved.Storage().Put("k", 1); !errors.Is(err, durable.ErrNoTurn) {
		t.Fatalf("Put between turns: err = %v, want ErrNoTurn", err)
	}
}
