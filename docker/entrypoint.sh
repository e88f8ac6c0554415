#!/bin/sh
# Runs the app named by the first argument (any train_flowmodelsN on PATH, or bench), else the
# one in TRAINING_APP with all arguments; `mpi-run APP ...` runs it as a data-parallel job over
# MPI across the nodes of an AWS Batch multi-node job (flowmodels-mpi-run). A config passed in
# the environment (FLOWMODELS_CONFIG_B64, base64 TOML, as awsbatch/submit.sh sends it) is written
# to a file and given as --config; for mpi-run at a fixed path, which every node writes alike.
set -eu
app="${TRAINING_APP:-train_flowmodels2}"
mpi=0
if [ "${1:-}" = mpi-run ]; then
  mpi=1
  shift
fi
case "${1:-}" in
  train_flowmodels[0-9]* | bench)
    app="$1"
    shift
    ;;
esac
# The apps this image has: every train_flowmodelsN on PATH, and the bench.
apps() {
  for dir in $(echo "$PATH" | tr ':' ' '); do
    for f in "$dir"/train_flowmodels[0-9]*; do
      [ -x "$f" ] && basename "$f"
    done
  done | sort -u -V | awk 'NR == 1 { first = $0 } { last = $0; n++ }
    END { if (n > 1) printf "%s ... %s, ", first, last; else if (n == 1) printf "%s, ", first }'
  echo bench
}
case "$app" in
  train_flowmodels[0-9]* | bench)
    if ! command -v "$app" >/dev/null 2>&1; then
      echo "flowmodels: unknown app '$app' (this image has $(apps))" >&2
      exit 2
    fi
    ;;
  *)
    echo "flowmodels: unknown app '$app' (this image has $(apps))" >&2
    exit 2
    ;;
esac
if [ -n "${FLOWMODELS_CONFIG_B64:-}" ]; then
  if [ "$mpi" = 1 ]; then
    mkdir -p "$HOME/.flowmodels-mpi"
    config="$HOME/.flowmodels-mpi/config.toml"
  else
    config="$(mktemp /tmp/flowmodels-config.XXXXXX.toml)"
  fi
  printf '%s' "$FLOWMODELS_CONFIG_B64" | base64 -d > "$config"
  set -- "$@" --config "$config"
fi
if [ "$mpi" = 1 ]; then
  exec flowmodels-mpi-run "$app" "$@"
fi
exec "$app" "$@"
