package durabletest_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/durable-go/durable"
	"github.com/durable-go/durable/durabletest"
)

func TestRunIn(t *testing.T) {
	rig := newProbeRig(t, durable.Options{})
	stub := rig.ns.GetByName("r")
	rig.add(t, "r", 2)

	t.Run("SeesTheLiveInstance", func(t *testing.T) {
		var mem, stored int
		var name string
		err := durabletest.RunIn(t.Context(), stub, func(ctx context.Context, p *Probe, st *durable.State) error {
			mem = p.mem // memory of the activation the call above made
			name, _ = st.Name()
			var err error
			_, err = st.Storage().Get("n", &stored)
			return err
		})
		if err != nil || mem != 2 || stored != 2 || name != "r" {
			t.Errorf("RunIn saw mem %d, stored %d, name %q, err %v; want 2, 2, r, nil", mem, stored, name, err)
		}
	})

	t.Run("WritesCommit", func(t *testing.T) {
		err := durabletest.RunIn(t.Context(), stub, func(ctx context.Context, p *Probe, st *durable.State) error {
			p.mem = 40 // memory changes are the instance's own
			return st.Storage().Put("n", 40)
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := rig.add(t, "r", 2); got != 42 {
			t.Errorf("count after RunIn's write = %d, want 42", got)
		}
	})

	t.Run("ErrorRollsBack", func(t *testing.T) {
		errMine := errors.New("mine")
		err := durabletest.RunIn(t.Context(), stub, func(ctx context.Context, p *Probe, st *durable.State) error {
			if err := st.Storage().Put("n", -1); err != nil {
				return err
			}
			return errMine
		})
		if err != errMine {
			t.Errorf("RunIn = %v, want fn's error as it is", err)
		}
		if n, err := durable.Call0(t.Context(), stub, (*Probe).Count); err != nil || n != 42 {
			t.Errorf("count after a failed RunIn = %d, %v; want 42", n, err)
		}
	})

	t.Run("InsideATurn", func(t *testing.T) {
		// ctx is the turn's: BlockConcurrencyWhile accepts it.
		err := durabletest.RunIn(t.Context(), stub, func(ctx context.Context, p *Probe, st *durable.State) error {
			return st.BlockConcurrencyWhile(ctx, func(context.Context) error { return nil })
		})
		if err != nil {
			t.Errorf("BlockConcurrencyWhile with RunIn's ctx: %v", err)
		}
	})

	t.Run("PanicResets", func(t *testing.T) {
		built := rig.env.built.Load()
		err := durabletest.RunIn(t.Context(), stub, func(ctx context.Context, p *Probe, st *durable.State) error {
			panic("boom")
		})
		var re *durable.RemoteError
		if !errors.As(err, &re) || !re.Panic || re.Method != "RunIn" {
			t.Errorf("RunIn after a panic = %v, want a *RemoteError with Panic", err)
		}
		rig.add(t, "r", 0)
		if got := rig.env.built.Load(); got != built+1 {
			t.Errorf("constructions = %d, want %d (the panic resets the object)", got, built+1)
		}
	})

	t.Run("Constructs", func(t *testing.T) {
		built := rig.env.built.Load()
		var stored, ok = 0, true
		err := durabletest.RunIn(t.Context(), rig.ns.GetByName("fresh"), func(ctx context.Context, p *Probe, st *durable.State) error {
			var err error
			ok, err = st.Storage().Get("n", &stored)
			return err
		})
		if err != nil || ok || rig.env.built.Load() != built+1 {
			t.Errorf("RunIn on a new object: err %v, found %v, constructions +%d; want nil, false, +1", err, ok, rig.env.built.Load()-built)
		}
	})

	t.Run("BadStub", func(t *testing.T) {
		fn := func(context.Context, *Probe, *durable.State) error {
			t.Error("fn ran for a bad stub")
			return nil
		}
		if err := durabletest.RunIn(t.Context(), rig.ns.GetByName(""), fn); !errors.Is(err, durable.ErrInvalidName) {
			t.Errorf("RunIn with an empty name = %v, want ErrInvalidName", err)
		}
		if err := durabletest.RunIn(t.Context(), nil, fn); err == nil {
			t.Error("RunIn with a nil stub succeeded")
		}
		other := durable.MustRegister(rig.rt, "Other", newProbe, rig.env)
		if err := durabletest.RunIn(t.Context(), rig.ns.Get(other.NewUniqueID()), fn); !errors.Is(err, durable.ErrForeignID) {
			t.Errorf("RunIn with another namespace's ID = %v, want ErrForeignID", err)
		}
	})
}

func TestFireAlarm(t *testing.T) {
	rig := newProbeRig(t, durable.Options{})
	stub := rig.ns.GetByName("a")

	if ran, err := durabletest.FireAlarm(t.Context(), stub); ran || err != nil {
		t.Errorf("FireAlarm without an alarm = %v, %v; want false, nil", ran, err)
	}

	// An alarm an hour away runs now, once, and is deleted.
	if err := durable.Do1(t.Context(), stub, (*Probe).SetAlarmIn, time.Hour); err != nil {
		t.Fatal(err)
	}
	if ran, err := durabletest.FireAlarm(t.Context(), stub); !ran || err != nil {
		t.Fatalf("FireAlarm = %v, %v; want true, nil", ran, err)
	}
	if n, _ := durable.Call0(t.Context(), stub, (*Probe).Count); n != 1 {
		t.Errorf("count after the alarm = %d, want 1", n)
	}
	if set, _ := durable.Call0(t.Context(), stub, (*Probe).AlarmSet); set {
		t.Error("the alarm is still set after it ran")
	}
	if ran, err := durabletest.FireAlarm(t.Context(), stub); ran || err != nil {
		t.Errorf("second FireAlarm = %v, %v; want false, nil", ran, err)
	}
	// Its time comes: nothing more runs.
	if err := rig.clk.Advance(t.Context(), 2*time.Hour); err != nil {
		t.Fatal(err)
	}
	if fires := rig.env.Fires(); len(fires) != 1 {
		t.Errorf("alarm ran %d times, want 1", len(fires))
	}

	// A failing handler: the error comes back and the alarm stays set.
	if err := durable.Do1(t.Context(), stub, (*Probe).SetAlarmIn, time.Hour); err != nil {
		t.Fatal(err)
	}
	rig.env.alarmErr = errors.New("not now")
	ran, err := durabletest.FireAlarm(t.Context(), stub)
	var re *durable.RemoteError
	if ran || !errors.As(err, &re) || re.Message != "not now" {
		t.Errorf("FireAlarm of a failing handler = %v, %v; want false and its error", ran, err)
	}
	if set, _ := durable.Call0(t.Context(), stub, (*Probe).AlarmSet); !set {
		t.Error("the failed alarm was deleted")
	}
	rig.env.alarmErr = nil
	if ran, err := durabletest.FireAlarm(t.Context(), stub); !ran || err != nil {
		t.Errorf("FireAlarm once it works = %v, %v; want true, nil", ran, err)
	}
}

func TestEvict(t *testing.T) {
	rig := newProbeRig(t, durable.Options{})
	stub := rig.ns.GetByName("e")

	if evicted, err := durabletest.Evict(t.Context(), stub, durabletest.Hibernate); evicted || err != nil {
		t.Errorf("Evict of an object never called = %v, %v; want false, nil", evicted, err)
	}
	rig.add(t, "e", 3)
	if evicted, err := durabletest.Evict(t.Context(), stub, durabletest.Hibernate); !evicted || err != nil {
		t.Fatalf("Evict = %v, %v; want true, nil", evicted, err)
	}
	if live := rig.rt.Stats().Live; live != 0 {
		t.Errorf("live objects after Evict = %d", live)
	}
	// Memory is gone, storage is not.
	if mem, _ := durable.Call0(t.Context(), stub, (*Probe).Mem); mem != 0 {
		t.Errorf("memory after eviction = %d, want 0", mem)
	}
	if got := rig.add(t, "e", 1); got != 4 {
		t.Errorf("count after eviction = %d, want 4", got)
	}
	if got := rig.env.built.Load(); got != 2 {
		t.Errorf("constructions = %d, want 2", got)
	}

	t.Run("WaitsWhileInUse", func(t *testing.T) {
		errc := make(chan error, 1)
		go func() { errc <- durable.Do0(context.Background(), stub, (*Probe).Block) }()
		recv(t, rig.env.entered, "the call to start")
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Millisecond)
		defer cancel()
		if evicted, err := durabletest.Evict(ctx, stub, durabletest.Hibernate); evicted || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Evict of a blocked object = %v, %v; want false, DeadlineExceeded", evicted, err)
		}
		type result struct {
			evicted bool
			err     error
		}
		evc := make(chan result, 1)
		go func() {
			evicted, err := durabletest.Evict(t.Context(), stub, durabletest.Hibernate)
			evc <- result{evicted, err}
		}()
		close(rig.env.release)
		if err := recv(t, errc, "the blocked call"); err != nil {
			t.Fatal(err)
		}
		if r := recv(t, evc, "Evict"); !r.evicted || r.err != nil {
			t.Errorf("Evict once the call ended = %v, %v; want true, nil", r.evicted, r.err)
		}
	})

	t.Run("Hibernate", func(t *testing.T) {
		c := rig.dial(t, "ws")
		if got := call(t, c, "add 5"); got != "5" {
			t.Fatalf("add 5 = %q", got)
		}
		if evicted, err := durabletest.Evict(t.Context(), rig.ns.GetByName("ws"), durabletest.Hibernate); !evicted || err != nil {
			t.Fatalf("Evict = %v, %v", evicted, err)
		}
		// The socket stayed open; its next message wakes a new instance.
		if got := call(t, c, "mem"); got != "0" {
			t.Errorf("memory after hibernation = %q, want 0", got)
		}
		if got := call(t, c, "add 1"); got != "6" {
			t.Errorf("add 1 after hibernation = %q, want 6", got)
		}
		// CloseWebSockets closes the sockets of a hibernated object too.
		if _, err := durabletest.Evict(t.Context(), rig.ns.GetByName("ws"), durabletest.Hibernate); err != nil {
			t.Fatal(err)
		}
		if evicted, err := durabletest.Evict(t.Context(), rig.ns.GetByName("ws"), durabletest.CloseWebSockets); evicted || err != nil {
			t.Errorf("Evict of a hibernated object = %v, %v; want false, nil", evicted, err)
		}
		if code, _, err := c.ExpectClose(t.Context()); code != durable.CloseGoingAway || err != nil {
			t.Errorf("close = %d, %v; want 1001", code, err)
		}
	})

	t.Run("CloseWebSockets", func(t *testing.T) {
		c := rig.dial(t, "ws2")
		call(t, c, "add 1")
		if evicted, err := durabletest.Evict(t.Context(), rig.ns.GetByName("ws2"), durabletest.CloseWebSockets); !evicted || err != nil {
			t.Fatalf("Evict = %v, %v", evicted, err)
		}
		if code, _, err := c.ExpectClose(t.Context()); code != durable.CloseGoingAway || err != nil {
			t.Errorf("close = %d, %v; want 1001", code, err)
		}
	})
}

func TestEvictAll(t *testing.T) {
	rig := newProbeRig(t, durable.Options{})
	for _, name := range []string{"a", "b", "c"} {
		rig.add(t, name, 1)
	}
	c := rig.dial(t, "d")
	call(t, c, "add 1")
	n, err := durabletest.EvictAll(t.Context(), rig.rt, durabletest.Hibernate)
	if n != 4 || err != nil {
		t.Errorf("EvictAll = %d, %v; want 4, nil", n, err)
	}
	if live := rig.rt.Stats().Live; live != 0 {
		t.Errorf("live objects = %d", live)
	}
	if got := call(t, c, "add 1"); got != "2" {
		t.Errorf("after hibernation: %q, want 2", got)
	}
	if n, err := durabletest.EvictAll(t.Context(), rig.rt, durabletest.CloseWebSockets); n != 1 || err != nil {
		t.Errorf("EvictAll = %d, %v; want 1, nil", n, err)
	}
	if code, _, err := c.ExpectClose(t.Context()); code != durable.CloseGoingAway || err != nil {
		t.Errorf("close = %d, %v; want 1001", code, err)
	}
}

func TestListIDs(t *testing.T) {
	rig := newProbeRig(t, durable.Options{})
	if ids, err := durabletest.ListIDs(rig.ns); len(ids) != 0 || err != nil {
		t.Errorf("ListIDs of an empty namespace = %v, %v", ids, err)
	}
	var want []string
	for _, name := range []string{"x", "y", "z"} {
		rig.add(t, name, 1)
		id, _ := rig.ns.IDFromName(name)
		want = append(want, id.String())
	}
	// An object that never touched its storage has no data.
	if _, err := durable.Call0(t.Context(), rig.ns.GetByName("memory-only"), (*Probe).Mem); err != nil {
		t.Fatal(err)
	}
	unique := rig.ns.NewUniqueID()
	if err := durabletest.RunIn(t.Context(), rig.ns.Get(unique), func(ctx context.Context, p *Probe, st *durable.State) error {
		return st.Storage().Put("k", "v")
	}); err != nil {
		t.Fatal(err)
	}
	want = append(want, unique.String())
	slices.Sort(want)

	ids, err := durabletest.ListIDs(rig.ns)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, id := range ids {
		if id.Namespace() != "Probe" {
			t.Errorf("ID %v of namespace %q", id, id.Namespace())
		}
		got = append(got, id.String())
	}
	if !slices.Equal(got, want) {
		t.Errorf("ListIDs = %q, want %q", got, want)
	}
	if _, err := durabletest.ListIDs[Probe](nil); err == nil {
		t.Error("ListIDs(nil) succeeded")
	}
}
