#!/usr/bin/env bash
# The fault-injection suite, slow cases, on built binaries (the fast cases are
# apps/tests/faults/ in `cargo test`):
#   - SIGKILL at random moments of a run, then resume, repeatedly: the result is bit-identical
#     to a straight run, and the tracking run is continued and marked interrupted;
#   - SIGKILL while a checkpoint is being written, then resume: the same;
#   - a full disk (a small tmpfs, mounted in a private namespace where the machine allows it,
#     skipped with a message where not): an error naming the cause, the earlier checkpoints
#     unchanged by hash, no temporary or truncated file left, and a resume that finishes once
#     there is room;
#   - a tracking server that is down, answers 500, or hangs: the run finishes, says so, and is
#     tracked in the local store.
# Usage: scripts/fault-injection.sh [BIN_DIR]   (default: target/release, else target/debug)
# Prints one row per case (case | expected | observed) and exits 1 if any case failed.
set -uo pipefail
cd "$(dirname "$0")/.."

bin_dir=${1:-}
if [ -z "$bin_dir" ]; then
  if [ -x target/release/train_flowmodels1 ]; then bin_dir=target/release; else bin_dir=target/debug; fi
fi
APP1=$(cd "$bin_dir" && pwd)/train_flowmodels1
if [ ! -x "$APP1" ]; then
  echo "fault-injection: no $APP1; build it first (cargo build --release -p flowapps)" >&2
  exit 2
fi
command -v python3 >/dev/null || { echo "fault-injection: needs python3" >&2; exit 2; }

work=$(mktemp -d /tmp/flowfaults-slow.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
RANDOM=20261201 # the kill moments repeat from run to run

failures=0
row() { # case, expected, observed, ok(0/1)
  local mark=PASS
  if [ "$4" != 0 ]; then mark=FAIL; failures=$((failures + 1)); fi
  printf '| %s | %s | %s | %s |\n' "$1" "$2" "$3" "$mark"
}

# A small model that trains for a few seconds, a checkpoint each epoch.
SETS=(--set training.epochs=8 --set training.steps_per_epoch=150 --set 'model.hidden_units=[128,128]'
  --set model.num_layers=4 --set run.plot_points=64 --set run.validation_size=256)

# The weights of a model file: its tensors' names, shapes and bytes, not its metadata (which
# holds burn's random parameter ids).
weights() {
  python3 - "$1" <<'EOF'
import hashlib, json, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
header = json.loads(b[8:8 + n])
header.pop("__metadata__", None)
h = hashlib.sha256(json.dumps(header, sort_keys=True).encode())
h.update(b[8 + n:])
print(h.hexdigest()[:16])
EOF
}

# Hashes of every file under a folder, one line each.
tree_hash() { (cd "$1" && find . -type f ! -name .lock -print0 | sort -z | xargs -0 sha256sum); }

# Start a run in the background; sets $run_pid.
start() { "$APP1" "$@" "${SETS[@]}" >>"$work/log" 2>&1 & run_pid=$!; pids+=("$run_pid"); }

echo "fault-injection: $APP1"
echo
echo "| case | expected | observed | |"
echo "|---|---|---|---|"

# --- straight run: the reference -----------------------------------------------------------
t0=$(date +%s.%N)
"$APP1" --run-dir straight "${SETS[@]}" >"$work/straight.log" 2>&1
rc=$?
t1=$(date +%s.%N)
duration=$(python3 -c "print($t1 - $t0)")
if [ $rc != 0 ]; then
  cat "$work/straight.log" >&2
  echo "fault-injection: the reference run failed" >&2
  exit 1
fi
reference=$(weights straight/model.safetensors)

# --- SIGKILL at random moments, then resume (each resume may be killed too) -----------------
# Kills land anywhere in the first third of what is left: before the first checkpoint, between
# checkpoints, at the end; each resume goes on from where the last one stopped.
kills=0
moments=()
start --run-dir killed
for attempt in $(seq 1 12); do
  moment=$(python3 -c "import random; random.seed($RANDOM); print(round(random.uniform(0.05, $duration / 3), 2))")
  sleep "$moment"
  if kill -9 "$run_pid" 2>/dev/null; then
    kills=$((kills + 1))
    moments+=("${moment}s")
  fi
  wait "$run_pid" 2>/dev/null
  [ -f killed/report.json ] && break
  start --resume killed
  [ "$kills" -ge 5 ] && { wait "$run_pid" 2>/dev/null; break; }
done
got=$( [ -f killed/model.safetensors ] && weights killed/model.safetensors || echo none)
tracking=$(python3 -c "import json; print(json.load(open('killed/run.json'))['tracking_run'])" 2>/dev/null)
runs=$(find mlruns -mindepth 2 -maxdepth 2 -type d -name '[0-9a-f]*' | wc -l)
leftovers=$(find killed -name '*.tmp*' | wc -l)
ok=1
[ "$got" = "$reference" ] && [ -e "$tracking/tags/interrupted" ] && [ "$leftovers" = 0 ] && ok=0
row "SIGKILL $kills times, at ${moments[*]} into a run or resume of ${duration%.*} s, resumed each time" \
  "weights bit-identical to a straight run; one tracking run, marked interrupted; no temporary file" \
  "weights $got vs $reference; $runs tracking runs in the store (2 expected: straight, killed); interrupted tag $( [ -e "$tracking/tags/interrupted" ] && echo set || echo missing); $leftovers temporary files" \
  $ok
[ "$runs" = 2 ] || row "one tracking run per run folder" "2 runs" "$runs" 1

# --- SIGKILL while a checkpoint is written -----------------------------------------------------
# A busy poll for the hidden temporary checkpoint; a write lasts milliseconds, so a run in which
# the poll missed every write is followed by another, up to five.
caught=no
for attempt in 1 2 3 4 5; do
  folder=during-write-$attempt
  start --run-dir "$folder"
  deadline=$((SECONDS + 120))
  while [ $SECONDS -lt $deadline ] && kill -0 "$run_pid" 2>/dev/null; do
    if compgen -G "$folder/checkpoints/.*.tmp" >/dev/null; then
      kill -9 "$run_pid" && caught="yes, run $attempt"
      break
    fi
  done
  wait "$run_pid" 2>/dev/null
  [ "$caught" != no ] && break
done
partial=$(find "$folder/checkpoints" -maxdepth 1 -name '.*.tmp' | wc -l)
"$APP1" --resume "$folder" "${SETS[@]}" >>"$work/log" 2>&1
rc=$?
got=$( [ -f "$folder/model.safetensors" ] && weights "$folder/model.safetensors" || echo none)
ok=1
[ $rc = 0 ] && [ "$got" = "$reference" ] && [ "$caught" != no ] && ok=0
row "SIGKILL during a checkpoint write (caught: $caught, $partial partial checkpoint left hidden)" \
  "the partial checkpoint is ignored; resume exits 0, bit-identical" \
  "exit $rc; weights $got vs $reference" $ok

# --- a full disk -----------------------------------------------------------------------------
full_disk() {
  set -u
  local mnt=$1
  mount -t tmpfs -o size=6m tmpfs "$mnt" || return 3
  cd "$mnt"
  local sets=(--set training.epochs=2 --set training.steps_per_epoch=20 --set 'model.hidden_units=[64,64]'
    --set model.num_layers=4 --set run.plot_points=64 --set run.validation_size=256)
  "$APP1" --run-dir run "${sets[@]}" >/dev/null 2>&1 || { echo "the first run failed"; return 1; }
  local before
  before=$(cd run/checkpoints && find . -type f ! -path './.*' -print0 | sort -z | xargs -0 sha256sum)
  # Fill the disk, all but a few kilobytes.
  dd if=/dev/zero of=filler bs=64k status=none 2>/dev/null
  truncate -s -16k filler
  local err rc
  err=$("$APP1" --resume run "${sets[@]}" --set training.epochs=6 2>&1 >/dev/null)
  rc=$?
  local after
  after=$(cd run/checkpoints && find . -type f ! -path './.*' -print0 | sort -z | xargs -0 sha256sum)
  local leftovers
  leftovers=$(find run -name '*.tmp*' | wc -l)
  local kept=no
  if [ "$before" = "$after" ]; then kept=yes; fi
  rm -f filler
  "$APP1" --resume run "${sets[@]}" --set training.epochs=6 >/dev/null 2>&1
  local rc2=$?
  echo "exit $rc, message: $(echo "$err" | grep -o 'No space left on device' | head -1 || echo "$err" | tail -1); earlier checkpoints unchanged: $kept; $leftovers temporary files; resume with room: exit $rc2"
  [ $rc = 1 ] && echo "$err" | grep -q 'No space left' && [ $kept = yes ] && [ "$leftovers" = 0 ] && [ $rc2 = 0 ]
}
export -f full_disk
export APP1
mkdir -p "$work/small-disk"
if [ "$(id -u)" = 0 ] && mount -t tmpfs -o size=1m tmpfs "$work/small-disk" 2>/dev/null; then
  umount "$work/small-disk"
  observed=$(unshare -m bash -c "full_disk $work/small-disk")
  rc=$?
elif unshare -rm true 2>/dev/null; then
  observed=$(unshare -rm bash -c "full_disk $work/small-disk")
  rc=$?
else
  observed="skipped: this machine allows no tmpfs mount (no root, no user namespaces)"
  rc=3
fi
if [ $rc = 3 ]; then
  echo "| a full disk (6 MiB tmpfs) during a resume | | $observed | SKIPPED |"
else
  row "a full disk (6 MiB tmpfs) during a resume" \
    "exit 1 naming 'No space left on device'; earlier checkpoints unchanged; nothing temporary left; a resume with room finishes" \
    "$observed" $rc
fi

# --- a tracking server that is down, answers 500, or hangs ---------------------------------
port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
serve() { # mode port
  python3 - "$1" "$2" <<'EOF' &
import socket, sys, time, http.server
mode, port = sys.argv[1], int(sys.argv[2])
if mode == "hang":
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port)); s.listen(64)
    held = []
    while True:
        c, _ = s.accept(); held.append(c)  # read nothing, answer nothing
else:
    class H(http.server.BaseHTTPRequestHandler):
        def answer(self):
            n = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(n)
            self.send_response(500); self.send_header("Content-Type", "application/json")
            self.end_headers(); self.wfile.write(b'{"error_code":"INTERNAL_ERROR","message":"injected"}')
        do_GET = do_POST = answer
        def log_message(self, *a): pass
    http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
EOF
  pids+=($!)
}
tracking_case() { # name, uri
  local name=$1 uri=$2 t0 rc err
  t0=$SECONDS
  err=$(MLFLOW_TRACKING_URI=$uri MLFLOW_HTTP_REQUEST_TIMEOUT=3 "$APP1" --run-dir "server-$name" \
    "${SETS[@]}" --set training.epochs=2 2>&1 >/dev/null)
  rc=$?
  local local_run status
  local_run=$(python3 -c "import json; print(json.load(open('server-$name/run.json'))['tracking_run'])" 2>/dev/null)
  status=$(grep -o '^status: [0-9]' "$local_run/meta.yaml" 2>/dev/null)
  local warned
  warned=$(echo "$err" | grep -c "tracking server")
  local ok=1
  [ $rc = 0 ] && [ "$status" = "status: 3" ] && [ "$warned" = 1 ] && ok=0
  row "tracking server: $name" \
    "the run finishes (exit 0), warns once, and is tracked locally (FINISHED)" \
    "exit $rc in $((SECONDS - t0)) s; $warned warning; local run $status" $ok
}
closed=$(port)
tracking_case down "http://127.0.0.1:$closed"
p500=$(port); serve 500 "$p500"; sleep 0.5
tracking_case 500 "http://127.0.0.1:$p500"
phang=$(port); serve hang "$phang"; sleep 0.5
tracking_case hang "http://127.0.0.1:$phang"

echo
if [ $failures != 0 ]; then
  echo "fault-injection: $failures case(s) failed; the runs' output:" >&2
  tail -40 "$work/log" >&2
  exit 1
fi
echo "fault-injection: every case passed"
