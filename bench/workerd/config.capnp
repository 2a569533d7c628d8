# workerd side of the benchmark comparison (bench/compare.sh): one Worker
# with SQLite-backed Durable Objects stored on local disk, serving the same
# HTTP contract as bench/server.
#
#   workerd serve bench/workerd/config.capnp --experimental \
#     --socket-addr http=127.0.0.1:8788 --directory-path do-storage=/tmp/do
#
# The socket address and the storage folder are given on the command line so
# the config carries no machine-specific paths.
using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [
    (name = "main", worker = .benchWorker),
    (name = "do-storage", disk = (writable = true)),
  ],
  sockets = [
    (name = "http", service = "main"),
  ],
);

const benchWorker :Workerd.Worker = (
  modules = [
    (name = "worker.js", esModule = embed "worker.js"),
  ],
  compatibilityDate = "2026-11-01",
  durableObjectNamespaces = [
    (className = "Counter", uniqueKey = "bench-counter", enableSql = true),
    (className = "KV", uniqueKey = "bench-kv", enableSql = true),
    (className = "Notes", uniqueKey = "bench-notes", enableSql = true),
    (className = "Room", uniqueKey = "bench-room", enableSql = true),
  ],
  durableObjectStorage = (localDisk = "do-storage"),
  bindings = [
    (name = "COUNTER", durableObjectNamespace = "Counter"),
    (name = "KV", durableObjectNamespace = "KV"),
    (name = "NOTES", durableObjectNamespace = "Notes"),
    (name = "ROOM", durableObjectNamespace = "Room"),
  ],
);
