// Command durable inspects and repairs the data folder of a durable app:
// it lists namespaces, objects and alarms, runs SQL against an object,
// reads its KV entries, exports and imports objects, backs the whole
// folder up and checks its integrity.
//
//	go install github.com/durable-go/durable/cmd/durable@latest
//
//	durable [-data DIR] [-admin URL] <command> [flags] [arguments]
//
//	ls [NAMESPACE]                 namespaces; the objects of NAMESPACE (or all, -a)
//	sql NS NAME|ID "QUERY"         run SQL (read-only unless -write)
//	kv NS NAME|ID get KEY...       KV entries by key
//	kv NS NAME|ID list             KV entries by range (-prefix, -start, -end, ...)
//	alarms                         pending alarms, earliest first
//	export NS NAME|ID              the object as a SQLite file or JSON (-format, -o)
//	import NS NAME|ID FILE         replace the object's content with an export
//	backup DIR                     a consistent copy of every object into DIR
//	check [NAMESPACE]              integrity check; exit status 1 on damage
//	version                        the build's version
//
// An object is named by its namespace and either its name or its ID (64
// hexadecimal digits). Most commands take -json.
//
// The CLI works on the data folder (-data, default "durable-data")
// directly, holding its lock meanwhile so no app opens it. When an app has
// the folder open, the CLI talks to the app's admin API instead (see
// durable.Options.AdminAddr): set DURABLE_ADMIN_URL and DURABLE_ADMIN_TOKEN,
// or pass -admin URL (the token is read from DURABLE_ADMIN_TOKEN only, so
// it stays out of the process list). The output is the same either way.
//
// Exit status: 0 on success, 1 on failure (or damage found by check), 2
// on a usage error. See docs/cli.md for a guide with examples.
package main
