#!/usr/bin/env bash
# Submit a flowmodels training job to AWS Batch (AWS CLI v2).
#
#   awsbatch/submit.sh --app train_flowmodels2 --params params.toml \
#     --data s3://my-bucket/images --queue flowmodels-gpu --job-definition flowmodels-gpu \
#     [--image 123456789012.dkr.ecr.eu-west-1.amazonaws.com/flowmodels:gpu --set KEY=VALUE ...] \
#     [--name NAME] [--nodes N] [--dry-run]
#
# --nodes N submits a multi-node parallel job: data-parallel training over MPI across N nodes
# (the job definition from job-definition-multinode.json; the image's mpi-run launcher starts
# mpirun on the main node). With --image, a revision of the job definition is registered first
# from job-definition-gpu.json (or job-definition-multinode.json) with that image (the template's other values come from --set, e.g.
# --set JOB_ROLE_ARN=... --set VCPUS=8 --set MEMORY_MIB=30000 --set GPUS=1 ...).
# The params file (TOML, any keys of the app's config; it overrides the default config) travels
# base64-encoded in FLOWMODELS_CONFIG_B64, which the image's entrypoint turns into --config. The
# data location goes to the app as --images (apps 2 and 3). The Batch job id is set by Batch
# (AWS_BATCH_JOB_ID) and tracked as the run's tag aws_batch_job_id. --dry-run prints the AWS CLI
# call instead of making it.
set -euo pipefail

app="" params="" image="" data="" queue="" definition="" name="" nodes=0 dry_run=0
sets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --app) app=$2; shift 2 ;;
    --params) params=$2; shift 2 ;;
    --image) image=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    --queue) queue=$2; shift 2 ;;
    --job-definition) definition=$2; shift 2 ;;
    --name) name=$2; shift 2 ;;
    --nodes) nodes=$2; shift 2 ;;
    --set) sets+=("$2"); shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h | --help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "submit: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
missing=()
for v in app queue definition; do
  [ -n "${!v}" ] || missing+=("--${v/definition/job-definition}")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "submit: missing ${missing[*]}" >&2
  exit 2
fi
case "$nodes" in
  '' | *[!0-9]*) echo "submit: --nodes must be a number of nodes, got '$nodes'" >&2; exit 2 ;;
esac
# The apps of this repository (a binary each in apps/src/bin), and those that train
# data-parallel (their AppInfo says `data_parallel: true`).
repo=$(cd "$(dirname "$0")/.." && pwd)
numbers() { sed -n 's/.*train_flowmodels\([0-9][0-9]*\).*/\1/p' | sort -n -u; }
all=$(ls "$repo"/apps/src/bin/ | numbers)
parallel=$(grep -rh -B4 'data_parallel: true' "$repo"/apps/src --include='*.rs' | numbers)
known=0
for n in $all; do [ "$app" = "train_flowmodels$n" ] && known=1; done
if [ "$app" != bench ] && [ "$known" = 0 ]; then
  echo "submit: --app must be an app of this repository (train_flowmodels$(echo "$all" | head -1) ... train_flowmodels$(echo "$all" | tail -1), bench), got '$app'" >&2
  exit 2
fi
if [ "$nodes" -gt 0 ]; then
  ok=0
  for n in $parallel; do [ "$app" = "train_flowmodels$n" ] && ok=1; done
  if [ "$ok" = 0 ]; then
    p=($parallel)
    list=${p[0]}
    for ((i = 1; i < ${#p[@]} - 1; i++)); do list+=", ${p[i]}"; done
    if [ ${#p[@]} -gt 1 ]; then list+=" and ${p[${#p[@]} - 1]}"; fi
    echo "submit: --nodes: data-parallel training is in train_flowmodels$list, not '$app'" >&2
    exit 2
  fi
fi
# A JSON string literal of $1 (backslashes and quotes escaped; quoted replacements are literal).
json_string() {
  local bs='\' dq='"' v=$1
  v=${v//"$bs"/"$bs$bs"}
  v=${v//"$dq"/"$bs$dq"}
  printf '"%s"' "$v"
}
[ -n "$name" ] || name="flowmodels-${app#train_}-$(date -u +%Y%m%d-%H%M%S)"

command=("$app")
if [ "$nodes" -gt 0 ]; then
  command=(mpi-run "$app")
fi
if [ -n "$data" ]; then
  case "$data" in
    s3://*) ;;
    *) echo "submit: --data must be an s3:// URL, got '$data'" >&2; exit 2 ;;
  esac
  command+=(--images "$data")
fi
environment='[{"name":"TRAINING_APP","value":'"$(json_string "$app")"'}'
if [ -n "$params" ]; then
  [ -f "$params" ] || { echo "submit: no params file $params" >&2; exit 2; }
  encoded=$(base64 -w0 "$params")
  if [ ${#encoded} -gt 7000 ]; then
    echo "submit: $params is too large to travel in the environment (${#encoded} bytes base64)" >&2
    exit 2
  fi
  environment+=',{"name":"FLOWMODELS_CONFIG_B64","value":"'"$encoded"'"}'
fi
environment+=']'
json_command=""
for part in "${command[@]}"; do
  json_command+="$(json_string "$part"),"
done
overrides='{"command":['"${json_command%,}"'],"environment":'"$environment"'}'
template=job-definition-gpu.json
sizing=()
if [ "$nodes" -gt 0 ]; then
  template=job-definition-multinode.json
  sizing=(NUM_NODES="$nodes")
fi

here=$(cd "$(dirname "$0")" && pwd)
register=()
if [ -n "$image" ]; then
  rendered=$("$here/render.sh" "$here/$template" IMAGE="$image" APP="$app" \
    JOB_DEFINITION_NAME="$definition" "${sizing[@]}" "${sets[@]}")
  register=(aws batch register-job-definition --cli-input-json "$rendered")
fi
call=(aws batch submit-job --job-name "$name" --job-queue "$queue" --job-definition "$definition")
if [ "$nodes" -gt 0 ]; then
  call+=(--node-overrides '{"numNodes":'"$nodes"',"nodePropertyOverrides":[{"targetNodes":"0:","containerOverrides":'"$overrides"'}]}')
else
  call+=(--container-overrides "$overrides")
fi
if [ "$dry_run" = 1 ]; then
  if [ ${#register[@]} -gt 0 ]; then
    printf '%q ' "${register[@]}"
    printf '\n'
  fi
  printf '%q ' "${call[@]}"
  printf '\n'
  exit 0
fi
if [ ${#register[@]} -gt 0 ]; then
  "${register[@]}" >/dev/null
fi
"${call[@]}"
