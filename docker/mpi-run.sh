#!/bin/bash
# Data-parallel training across the nodes of an AWS Batch multi-node parallel job (or on one
# machine): every node runs this script. The main node gathers the nodes' addresses into an
# MPI hostfile and starts `mpirun ... APP --distributed mpi|nccl ARGS` over ssh; the other nodes run
# an sshd for mpirun to reach them and wait until the main node ends the job.
#
#   mpi-run.sh APP [ARGS...]
#
# From AWS Batch: AWS_BATCH_JOB_NODE_INDEX, AWS_BATCH_JOB_MAIN_NODE_INDEX,
# AWS_BATCH_JOB_NUM_NODES, AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS. Without them this is a
# job of one node. Ranks per node: FLOWMODELS_RANKS_PER_NODE (default: the node's GPUs, else 1).
# How gradients are summed: FLOWMODELS_DISTRIBUTED=mpi (through host memory) or nccl (between
# the GPUs); by default nccl when the app is given a `--device cuda...`, else mpi.
# FLOWMODELS_MPI_DRY_RUN=1 prints the mpirun command instead of running it.
set -euo pipefail

app=${1:?usage: mpi-run.sh APP [ARGS...]}
shift
nodes=${AWS_BATCH_JOB_NUM_NODES:-1}
index=${AWS_BATCH_JOB_NODE_INDEX:-0}
main_index=${AWS_BATCH_JOB_MAIN_NODE_INDEX:-0}
main_ip=${AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS:-127.0.0.1}
ssh_port=${FLOWMODELS_SSH_PORT:-2222}
state=${FLOWMODELS_MPI_DIR:-$HOME/.flowmodels-mpi}
hostfile=$state/hostfile
if [ -z "${FLOWMODELS_RANKS_PER_NODE:-}" ]; then
  gpus=0
  if command -v nvidia-smi >/dev/null 2>&1; then
    gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
  fi
  FLOWMODELS_RANKS_PER_NODE=$((gpus > 0 ? gpus : 1))
fi
ranks_per_node=$FLOWMODELS_RANKS_PER_NODE
my_ip=$(hostname -I 2>/dev/null | awk '{print $1}')
my_ip=${my_ip:-127.0.0.1}
log() { echo "mpi-run (node $index of $nodes): $*" >&2; }

distributed=${FLOWMODELS_DISTRIBUTED:-}
if [ -z "$distributed" ]; then
  distributed=mpi
  for arg in "$@"; do
    case "$arg" in cuda | cuda:* | --device=cuda*) distributed=nccl ;; esac
  done
fi
case "$distributed" in
  mpi | nccl) ;;
  *) echo "mpi-run: FLOWMODELS_DISTRIBUTED=$distributed: expected mpi or nccl" >&2; exit 2 ;;
esac

mpirun_command() {
  local np=$((nodes * ranks_per_node))
  local pass=()
  for v in RAYON_NUM_THREADS MLFLOW_TRACKING_URI AWS_BATCH_JOB_ID FLOWMODELS_GIT_COMMIT; do
    if [ -n "${!v:-}" ]; then pass+=(-x "$v"); fi
  done
  printf '%q ' mpirun --hostfile "$hostfile" -np "$np" --map-by "ppr:$ranks_per_node:node" \
    --mca plm_rsh_args "-p $ssh_port -o StrictHostKeyChecking=no" "${pass[@]}" \
    "$app" --distributed "$distributed" "$@"
  echo
}

start_sshd() {
  # A user sshd on a high port: the image's key pair (made at build time) lets the nodes of
  # one job, which all run the same image, reach each other.
  mkdir -p "$state"
  [ -f "$state/host_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$state/host_key"
  cat >"$state/sshd_config" <<CONF
Port $ssh_port
HostKey $state/host_key
PidFile $state/sshd.pid
AuthorizedKeysFile $HOME/.ssh/authorized_keys
PasswordAuthentication no
StrictModes no
CONF
  /usr/sbin/sshd -f "$state/sshd_config"
}

mkdir -p "$state"
if [ "$nodes" -le 1 ]; then
  echo "localhost slots=$ranks_per_node" >"$hostfile"
  if [ "${FLOWMODELS_MPI_DRY_RUN:-0}" = 1 ]; then
    mpirun_command "$@"
    exit 0
  fi
  eval "exec $(mpirun_command "$@")"
fi

start_sshd
if [ "$index" != "$main_index" ]; then
  # Tell the main node this node's address, then serve mpirun until the job ends.
  for _ in $(seq 1 60); do
    if ssh -p "$ssh_port" -o StrictHostKeyChecking=no "$main_ip" \
      "echo '$my_ip slots=$ranks_per_node' >> '$hostfile'"; then
      log "registered $my_ip with the main node $main_ip"
      exec sleep infinity
    fi
    sleep 5
  done
  log "cannot reach the main node $main_ip over ssh port $ssh_port"
  exit 1
fi

echo "$my_ip slots=$ranks_per_node" >"$hostfile"
for _ in $(seq 1 120); do
  [ "$(wc -l <"$hostfile")" -ge "$nodes" ] && break
  sleep 5
done
if [ "$(wc -l <"$hostfile")" -lt "$nodes" ]; then
  log "only $(wc -l <"$hostfile") of $nodes nodes registered within 10 minutes"
  exit 1
fi
log "all $nodes nodes registered; starting mpirun"
if [ "${FLOWMODELS_MPI_DRY_RUN:-0}" = 1 ]; then
  mpirun_command "$@"
  exit 0
fi
eval "exec $(mpirun_command "$@")"
