#!/bin/sh
# Runs the app named by the first argument (train_flowmodels1..7 or bench), else the one in
# TRAINING_APP with all arguments. A config passed in the environment (FLOWMODELS_CONFIG_B64,
# base64 TOML, as awsbatch/submit.sh sends it) is written to a file and given as --config.
set -eu
app="${TRAINING_APP:-train_flowmodels2}"
case "${1:-}" in
  train_flowmodels[1-7] | bench)
    app="$1"
    shift
    ;;
esac
case "$app" in
  train_flowmodels[1-7] | bench) ;;
  *)
    echo "flowmodels: unknown app '$app' (train_flowmodels1 ... train_flowmodels7, bench)" >&2
    exit 2
    ;;
esac
if [ -n "${FLOWMODELS_CONFIG_B64:-}" ]; then
  config="$(mktemp /tmp/flowmodels-config.XXXXXX.toml)"
  printf '%s' "$FLOWMODELS_CONFIG_B64" | base64 -d > "$config"
  exec "$app" "$@" --config "$config"
fi
exec "$app" "$@"
