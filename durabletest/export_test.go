package durabletest

import "time"

// SetCleanupGrace sets how long the end of a test waits for what still
// runs, and returns a function that restores it. Tests using it must not
// run in parallel with others of this package.
func SetCleanupGrace(d time.Duration) (restore func()) {
	old := cleanupGrace
	cleanupGrace = d
	return func() { cleanupGrace = old }
}
