#!/usr/bin/env bash
# Render an AWS Batch template: replace every ${KEY} with its value, JSON-escaped, and refuse
# to print a template that still has a ${KEY} no value was given for.
#   awsbatch/render.sh awsbatch/job-definition-gpu.json IMAGE=... APP=train_flowmodels2 ...
set -euo pipefail
if [ $# -lt 1 ]; then
  echo "usage: $0 TEMPLATE.json KEY=VALUE ..." >&2
  exit 2
fi
template=$1
shift
[ -f "$template" ] || { echo "render: no template $template" >&2; exit 2; }
text=$(<"$template")
for pair in "$@"; do
  case "$pair" in
    *=*) ;;
    *) echo "render: '$pair' is not KEY=VALUE" >&2; exit 2 ;;
  esac
  key=${pair%%=*}
  value=${pair#*=}
  # Quoted patterns and replacements are literal: no `&` or backslash processing (bash 5.2).
  bs='\' dq='"'
  value=${value//"$bs"/"$bs$bs"}
  value=${value//"$dq"/"$bs$dq"}
  placeholder="\${$key}"
  text=${text//"$placeholder"/"$value"}
done
left=$(grep -o '\${[A-Za-z_][A-Za-z0-9_]*}' <<<"$text" | sort -u | tr '\n' ' ' || true)
if [ -n "$left" ]; then
  echo "render: $template needs values for: $left" >&2
  exit 1
fi
printf '%s\n' "$text"
