// Package durability is the seam between a committed transaction and the
// output gate. Storage commits a transaction into an object's SQLite WAL
// (which reaches only the page cache, since the connection runs with
// synchronous=NORMAL), calls File.CommitWAL with the bytes the commit
// added to get a Ticket, and the runtime holds every reply, frame and
// outgoing call of that object until the Ticket's Wait returns nil.
//
// On one node a Group opened with a journal (Open, Config.Journal) makes
// commits durable by copying those bytes into one node-wide journal and
// syncing it once per batch: while one batch is written and synced, the
// commits of every object accumulate, and the next sync covers them all
// (group commit across objects), so commits per second can far exceed
// syncs per second. Recover replays the journal after a crash. The
// journal's format and the rules that make replaying it safe are described
// in journal.go.
//
// Without a journal (New) a Group makes commits durable by fsyncing each
// WAL file, batching the commits to one file behind its fsync in flight,
// running the fsyncs of different files in parallel on a bounded pool of
// workers, and syncing the whole file system at once when enough files
// wait. Tests use this mode to inject faults per file.
//
// A cluster would replace both with replication to a quorum behind the
// same API.
//
// # Failure
//
// When an fsync fails the File is poisoned: every waiting and later Ticket
// of it fails with the error. The caller must then reset the object (close
// its database and open it again), because the kernel may have dropped the
// dirty pages the failed fsync was meant to persist. When a sync of the
// journal fails, the journal is poisoned: every File with a commit in that
// batch or a later one fails, until the process restarts and Recover
// replays what the journal holds.
package durability
