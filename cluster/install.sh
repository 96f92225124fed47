#!/usr/bin/env bash
# Install SLURM (controller, node daemon, client commands) and munge from the distribution's packages if missing.
# Debian/Ubuntu, as root. Idempotent: does nothing when the commands are already there.
set -euo pipefail
source "$(dirname "$0")/common.sh"

missing=()
for cmd in slurmctld slurmd sbatch squeue scontrol munged; do
    command -v "$cmd" >/dev/null || missing+=("$cmd")
done
if ((${#missing[@]} == 0)); then
    log "SLURM and munge already installed ($(slurmd -V))"
    exit 0
fi
[[ $(id -u) == 0 ]] || die "missing ${missing[*]}; installing them needs root (apt-get install slurm-wlm munge)"
command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get: install SLURM and munge by hand"
log "installing slurm-wlm and munge (missing: ${missing[*]})"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
log "installed $(slurmd -V)"
