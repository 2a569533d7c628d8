// Package alarm is the node-wide alarm scheduler: it knows when each
// object's alarm is due without opening the object's database, wakes the
// object when it is, and retries a failed alarm with exponential backoff.
//
// # The index
//
// Each object's database holds its alarm (one optional time) and stays the
// source of truth. The scheduler keeps a hint of it in one SQLite file per
// data folder, the index, read once at Open: a node with 100,000 objects
// holding alarms starts by reading 100,000 rows, not by opening 100,000
// databases. The index keeps one row per object and maintains this
// invariant, durable across crashes and power loss:
//
//	if an object's database holds an alarm at time T, the index holds
//	a row for that object with a time <= T.
//
// A row may be early (the alarm moved later) or stale (the alarm is gone);
// a delivery reads the object's stored alarm and reports it back, and the
// row is repaired. It is never missing, because the caller runs every turn
// that changes an alarm through Prepare and Committed:
//
//  1. Before the object's COMMIT, Prepare(key, t, ok) makes sure the index
//     holds a row <= t (writing one and waiting for its fsync if not). The
//     COMMIT therefore never reaches the disk, even through the kernel's own
//     writeback, before the row that announces it.
//  2. After the COMMIT, Committed updates the schedule at once and, once the
//     object's commit is durable (its Ticket), lets the row follow the new
//     value lazily: raised to a later alarm or deleted. A lazy write is
//     issued only while no other alarm commit of the object is in flight,
//     and always after any earlier index write of that object (one writer
//     applies writes in order), so it never overtakes a newer Prepare.
//
// Index writes are batched: one transaction and one fsync cover every
// write queued while the previous one ran (group commit).
//
// # Delivery
//
// When an alarm falls due the scheduler calls Config.Deliver on one of a
// bounded pool of workers, never twice at once for one object. Due alarms
// wait in arrival order, except when more are due than objects fit in
// memory (Config.Room): then an alarm an object commits for a time already
// passed (its handler re-arming, say) goes ahead of the others, a bounded
// number in a row, since its object is in memory while the others' may
// have to be activated (see enqueueLocked).
//
// Deliver runs the alarm as a turn of the object: it reads the stored
// alarm, runs the handler if the alarm is due, and commits through
// Prepare/Committed, which tells the scheduler what the object's alarm is
// now. A failed delivery is retried after Policy.Backoff; after
// Policy.Retries retries the alarm is dropped (Delivery.Drop) and counted.
// Alarms of a namespace wait until Ready names it.
//
// # Usage
//
//	s, err := alarm.Open(alarm.Config{Path: dir + "/.alarms.sqlite", Deliver: deliver, ...})
//	s.Ready("Counter")                    // after registering the namespace
//	ch, err := s.Prepare(key, t, ok)      // before an object's COMMIT that changed its alarm
//	ticket, err := db.Commit()
//	s.Committed(ch, ticket, err)
//	...
//	s.Stop()                              // no new deliveries
//	s.Close()                             // wait for deliveries, flush the index
//
// Every goroutine (workers, the index writer, the ticket resolver) belongs
// to the Scheduler; Close stops and awaits them. Time comes only from
// Config.Clock.
package alarm
