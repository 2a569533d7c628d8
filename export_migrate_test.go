package durable

// SetMigrationHook makes each step of applying a migration call fn with
// the step's name ("plan", "committed", "rename-folder", ..., "applied");
// nil removes it. The crash test uses it to kill a migration at a chosen
// step. Not safe to call while a runtime is opening.
func SetMigrationHook(fn func(point string)) { migrateHook = fn }
