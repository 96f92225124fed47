#!/usr/bin/env bash
# Stop the test cluster that cluster/start.sh started: only the daemons whose pid files it wrote, then remove the
# configuration it wrote. Removing /etc/slurm/slurm.conf matters: with client commands present but no controller,
# every `scontrol` (the SLURM executor plugin runs one when imported) waits ~10 s; without a config it fails at once.
# Leaves $MINDVIS_SLURM_DIR (logs, job completion log) for inspection. Safe to run when nothing is running.
set -uo pipefail
source "$(dirname "$0")/common.sh"
quiet=${1:-}

stop_pidfile "$MINDVIS_SLURM_DIR/slurmd.pid"
stop_pidfile "$MINDVIS_SLURM_DIR/slurmctld.pid"
stop_pidfile "$MINDVIS_SLURM_DIR/munge/munged.pid"
for file in "$SLURM_CONF_DIR/slurm.conf" "$SLURM_CONF_DIR/gres.conf"; do
    ours "$file" && rm -f "$file"
done
[[ $quiet == --quiet ]] || log "test cluster stopped (logs in $MINDVIS_SLURM_DIR)"
exit 0
