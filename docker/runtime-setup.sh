#!/bin/sh
# The runtime images' system set-up, the same on Debian (cpu) and Ubuntu (gpu): OpenMPI and ssh
# for data-parallel jobs, the non-root user `flow` (uid 10001), its volumes, and its key pair.
set -eu
apt-get update
apt-get install -y --no-install-recommends ca-certificates openmpi-bin openssh-server \
  openssh-client
rm -rf /var/lib/apt/lists/*
useradd --create-home --uid 10001 flow
mkdir -p /data /work
chown flow /data /work
# One key pair per image: the nodes of a multi-node job run the same image and reach each
# other with it (only on the job's own network; sshd runs as flow, on port 2222, for mpirun).
install -d -m 700 -o flow /home/flow/.ssh
su flow -s /bin/sh -c "ssh-keygen -q -t ed25519 -N '' -f /home/flow/.ssh/id_ed25519"
cp /home/flow/.ssh/id_ed25519.pub /home/flow/.ssh/authorized_keys
printf 'Host *\n  StrictHostKeyChecking no\n  Port 2222\n' >/home/flow/.ssh/config
chown -R flow /home/flow/.ssh
