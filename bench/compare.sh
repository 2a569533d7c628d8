#!/usr/bin/env bash
# bench/compare.sh: runs the same load against durable (bench/server, with
# fsync and with -nosync) and workerd (bench/workerd, SQLite-backed Durable
# Objects on local disk), on loopback, and prints a Markdown table with the
# ratio durable / workerd. See bench/README.md.
#
#   bench/compare.sh                     # everything, ~4 minutes
#   DURATION=3s ONLY=ping,counter-1 bench/compare.sh
#
# Settings (environment):
#   WORKERD_VERSION  npm version of workerd to install       (1.20261117.1)
#   DURATION         measured time per workload and server   (10s)
#   WARMUP           unmeasured load before it               (2s)
#   CONNS            HTTP connections                        (16)
#   WS_CLIENTS       WebSocket clients in the room           (10)
#   WS_WINDOW        own messages in flight per WS client    (1)
#   ONLY             comma-separated workload ids (ping, counter-1,
#                    counter-1000, rpc-1, kv-put-1, ws-10)   (all)
#   SERVERS          servers to run, in order                (workerd durable durable-nosync)
#   SERVER_CPU       core of the server (taskset)            (0)
#   LOAD_CPU         core of the load tool (taskset)         (1)
#   MAX_OTHERS       cores other processes may use during a run before
#                    it counts as contended                  (0.1)
#   RETRIES          runs again after a contended run        (2)
#   FSYNC_AUDIT      1: count fsync-family calls per request
#                    under strace, if installed (untimed)    (1)
#   SERVER_BIN       a prebuilt bench/server binary          (go build ./bench/server)
#   DATA_DIR         parent folder of the servers' data      (mktemp -d)
#   OUT              results folder                          (bench/results/<UTC time>)
set -euo pipefail
cd "$(dirname "$0")/.."

WORKERD_VERSION=${WORKERD_VERSION:-1.20261117.1}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNS=${CONNS:-16}
WS_CLIENTS=${WS_CLIENTS:-10}
WS_WINDOW=${WS_WINDOW:-1}
ONLY=${ONLY:-}
SERVERS=${SERVERS:-workerd durable durable-nosync}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
FSYNC_AUDIT=${FSYNC_AUDIT:-1}
MAX_OTHERS=${MAX_OTHERS:-0.1}
RETRIES=${RETRIES:-2}
OUT=${OUT:-bench/results/$(date -u +%Y%m%dT%H%M%SZ)}
PORT=${PORT:-18787}
URL=http://127.0.0.1:$PORT

# Workloads: id | label | kind | path | names.
WORKLOADS=(
	"ping|ping|http|/ping|1"
	"counter-1|counter inc, 1 object|http|/counter/{name}/inc|1"
	"counter-1000|counter inc, 1,000 objects|http|/counter/{name}/inc|1000"
	"rpc-1|rpc, 1 object|http|/rpc/{name}?note=n{seq}|1"
	"kv-put-1|kv put (new value each), 1 object|http|/kv/{name}/put?k=key&v=v{seq}|1"
	"ws-10|ws broadcast, ${WS_CLIENTS} clients, 1 room|ws|/ws/{name}|1"
)

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'compare.sh: %s\n' "$*" >&2; exit 1; }

for tool in go node npm curl; do
	command -v "$tool" >/dev/null || die "$tool is needed"
done
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/durable-compare.XXXXXX")
DATA_DIR=${DATA_DIR:-$WORK/data}
mkdir -p "$DATA_DIR"
RESULTS=$OUT/results.jsonl
: >"$RESULTS"

SERVER_PID=
cleanup() {
	[ -n "$SERVER_PID" ] && stop_server
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- workerd, pinned, from npm into bench/.workerd (git-ignored) ---------
WD_DIR=bench/.workerd
wd_version() { (cd "$WD_DIR" 2>/dev/null && node -p 'require("workerd").version' 2>/dev/null) || true; }
if [ "$(wd_version)" != "$WORKERD_VERSION" ]; then
	log "installing workerd@$WORKERD_VERSION into $WD_DIR"
	npm install --prefix "$WD_DIR" --no-audit --no-fund --loglevel=error "workerd@$WORKERD_VERSION" >&2
fi
WORKERD=$(cd "$WD_DIR" && node -p 'require("workerd").default')
[ -x "$WORKERD" ] || die "no workerd binary at $WORKERD"

# --- our binaries, built once so compilation is not timed ----------------
log "building bench/load and bench/server"
go build -o "$WORK/load" ./bench/load
if [ -n "${SERVER_BIN:-}" ]; then
	cp "$SERVER_BIN" "$WORK/server"
else
	go build -o "$WORK/server" ./bench/server
fi

# --- pinning -------------------------------------------------------------
PIN_SERVER=()
PIN_LOAD=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
	PIN_SERVER=(taskset -c "$SERVER_CPU")
	PIN_LOAD=(taskset -c "$LOAD_CPU")
	PINNING="server on core $SERVER_CPU, load tool on core $LOAD_CPU (taskset)"
else
	PINNING="NOT pinned (no taskset or fewer than 2 cores): server and load tool share all cores"
fi

# server_cmd NAME prints the command line of server NAME with data in $2.
server_cmd() {
	case $1 in
	workerd) echo "$WORKERD serve bench/workerd/config.capnp --experimental --socket-addr http=127.0.0.1:$PORT --directory-path do-storage=$2" ;;
	durable) echo "$WORK/server -addr 127.0.0.1:$PORT -data $2" ;;
	durable-nosync) echo "$WORK/server -addr 127.0.0.1:$PORT -data $2 -nosync" ;;
	*) die "unknown server $1" ;;
	esac
}

# start_server NAME TAG [WRAPPER...]: starts server NAME on fresh data,
# pinned, and waits until /ping answers. Sets SERVER_PID.
start_server() {
	local name=$1 tag=$2
	shift 2
	local data=$DATA_DIR/$name-$tag
	rm -rf "$data"
	mkdir -p "$data"
	# shellcheck disable=SC2046 # the command line is split on purpose
	"${PIN_SERVER[@]}" "$@" $(server_cmd "$name" "$data") >>"$OUT/$name.log" 2>&1 &
	SERVER_PID=$!
	for _ in $(seq 200); do
		if curl -fs -o /dev/null "$URL/ping"; then
			return 0
		fi
		kill -0 "$SERVER_PID" 2>/dev/null || die "$name exited; see $OUT/$name.log"
		sleep 0.05
	done
	die "$name did not answer $URL/ping in 10 s; see $OUT/$name.log"
}

# stop_server stops the server that start_server started. Under strace,
# the traced server (strace's child) is stopped first, so that strace sees
# it exit and writes its summary.
stop_server() {
	local children
	children=$(pgrep -P "$SERVER_PID" 2>/dev/null || true)
	if [ -n "$children" ]; then
		# shellcheck disable=SC2086 # one pid per word
		kill -TERM $children 2>/dev/null || true
	else
		kill -TERM "$SERVER_PID" 2>/dev/null || true
	fi
	wait "$SERVER_PID" 2>/dev/null || true
	SERVER_PID=
}

selected() { [ -z "$ONLY" ] || [[ ",$ONLY," == *",$1,"* ]]; }

# run_load NAME LABEL KIND PATH NAMES: one measured run against the server
# that is up; writes its JSON line to $WORK/run.json. Returns 3 if other
# processes were busy during the run.
run_load() {
	local name=$1 label=$2 kind=$3 path=$4 names=$5
	local common=(-url "$URL" -path "$path" -names "$names" -prefix "$name" -d "$DURATION" -warmup "$WARMUP"
		-server "$name" -workload "$label" -server-pid "$SERVER_PID" -max-others "$MAX_OTHERS" -json)
	if [ "$kind" = ws ]; then
		"${PIN_LOAD[@]}" "$WORK/load" ws "${common[@]}" -clients "$WS_CLIENTS" -window "$WS_WINDOW" >"$WORK/run.json"
	else
		"${PIN_LOAD[@]}" "$WORK/load" http "${common[@]}" -c "$CONNS" -prime >"$WORK/run.json"
	fi
}

skip() { # skip WORKLOAD SERVER REASON
	printf '{"workload":"%s","server":"%s","skipped":"%s"}\n' "$1" "$2" "$3" >>"$RESULTS"
}

# --- the comparison --------------------------------------------------------
{
	echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
	echo "nproc: $(nproc)"
	lscpu | head -n 10 | sed 's/^/lscpu: /'
	echo "kernel: $(uname -r)"
	echo "go: $(go version)"
	echo "workerd: $WORKERD_VERSION ($("$WORKERD" --version))"
	if [ -n "${SERVER_BIN:-}" ]; then
		echo "durable: prebuilt $SERVER_BIN"
	else
		echo "durable: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD 2>/dev/null || echo ' + uncommitted changes')"
	fi
	echo "data: $DATA_DIR on $(df -T "$DATA_DIR" | awk 'NR==2 {print $2 " (" $1 ")"}')"
	echo "disk at start: $("$WORK/load" fsync -dir "$DATA_DIR")"
	echo "pinning: $PINNING"
	echo "load: $CONNS HTTP connections (closed loop, 1 request in flight each), $WS_CLIENTS WS clients x $WS_WINDOW message(s) in flight; fresh server and data for each workload and server; one untimed request per object (-prime), $WARMUP warmup, $DURATION measured"
	echo "contention: a run is repeated (up to $RETRIES times) if other processes used more than $MAX_OTHERS cores during it"
	echo "loadavg at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$OUT/machine.txt" >&2

for w in "${WORKLOADS[@]}"; do
	IFS='|' read -r id label kind path names <<<"$w"
	selected "$id" || continue
	# Servers alternate within a workload, so that a change in the machine's
	# background load hits them alike.
	for name in $SERVERS; do
		for attempt in $(seq 0 "$RETRIES"); do
			log "$id on $name$([ "$attempt" = 0 ] || echo " (retry $attempt)")"
			start_server "$name" "$id"
			if [ "$kind" = ws ] && [ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/ws/probe")" = 404 ]; then
				# A server build from before /ws/{room} (SERVER_BIN): say so
				# in the table instead of failing the whole comparison.
				skip "$label" "$name" "the server has no /ws/{room} route"
				stop_server
				break
			fi
			rc=0
			run_load "$name" "$label" "$kind" "$path" "$names" || rc=$?
			stop_server
			[ "$rc" = 0 ] || [ "$rc" = 3 ] || die "load failed (status $rc) on $name, $id"
			if [ "$rc" = 0 ] || [ "$attempt" = "$RETRIES" ]; then
				cat "$WORK/run.json" >>"$RESULTS"
				break
			fi
			log "other processes were busy: running $id on $name again in 10 s"
			sleep 10
		done
	done
done

# --- durability: fsync-family calls per request, under strace --------------
if [ "$FSYNC_AUDIT" = 1 ] && command -v strace >/dev/null; then
	audit=$OUT/fsync-audit.txt
	{
		echo "fsync-family syscalls (fsync, fdatasync, sync_file_range, msync, syncfs, sync) per committed"
		echo "counter increment, whole server process under strace -f (startup and shutdown included; untimed)."
		echo
		echo "| server | connections | increments | fsync | fdatasync | other syncs | syncs per increment |"
		echo "|---|--:|--:|--:|--:|--:|--:|"
	} >"$audit"
	for name in $SERVERS; do
		for c in 1 16; do
			log "fsync audit: $name, $c connection(s)"
			st=$WORK/strace-$name-$c.txt
			start_server "$name" "audit-$c" strace -f -c -o "$st" -e trace=fsync,fdatasync,sync_file_range,msync,syncfs,sync --
			"${PIN_LOAD[@]}" "$WORK/load" http -url "$URL" -path "/counter/{name}/inc" -prefix audit -c "$c" -d 3s -warmup 0 2>/dev/null
			n=$(curl -fs "$URL/counter/audit-0/get")
			stop_server
			awk -v name="$name" -v c="$c" -v n="$n" '
				$NF == "fsync" { f = $4 } $NF == "fdatasync" { d = $4 }
				$NF ~ /^(sync_file_range|msync|syncfs|sync)$/ { o += $4 }
				END { printf "| %s | %d | %d | %d | %d | %d | %.2f |\n", name, c, n, f, d, o, (f + d + o) / (n ? n : 1) }
			' "$st" >>"$audit"
		done
	done
else
	echo "fsync audit skipped (FSYNC_AUDIT=$FSYNC_AUDIT; strace: $(command -v strace || echo missing))" >"$OUT/fsync-audit.txt"
fi

{
	echo "disk at end: $("$WORK/load" fsync -dir "$DATA_DIR")"
	echo "loadavg at end: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee -a "$OUT/machine.txt" >&2
"$WORK/load" table -baseline workerd "$RESULTS" >"$OUT/table.md"
{
	echo
	cat "$OUT/machine.txt"
	echo
	cat "$OUT/table.md"
	echo
	cat "$OUT/fsync-audit.txt"
	echo
	echo "results: $OUT (results.jsonl, table.md, fsync-audit.txt, server logs)"
} | tee "$OUT/report.md"
