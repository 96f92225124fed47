#!/usr/bin/env bash
# Stop the test cluster that cluster/start.sh started: only the daemons whose pid files it wrote, then remove the
# configuration it wrote. Removing /etc/slurm/slurm.conf matters: with client commands present but no controller,
# every `scontrol` (the SLURM executor plugin runs one when imported) waits ~10 s; without a config it fails at once.
# Leaves $MINDVIS_SLURM_DIR (logs, job completion log) for inspection. Safe to run when nothing is running.
set -uo pipefail
source "$(dirname "$0")/common.sh"
quiet=${1:-}

# Jobs still queued or running (a test that was killed mid-run): cancel them while the controller is up, so that no
# job processes outlive the daemons. Every job on this cluster is a test job.
if ours "$SLURM_CONF_DIR/slurm.conf" && [[ -f $MINDVIS_SLURM_DIR/slurmctld.pid ]]; then
    jobs=$(timeout 10 squeue -h -o %i 2>/dev/null || true)
    if [[ -n $jobs ]]; then
        timeout 10 scancel $jobs 2>/dev/null || true
        for _ in $(seq 30); do [[ -z $(timeout 5 squeue -h -o %i 2>/dev/null) ]] && break; sleep 0.5; done
    fi
fi
stop_pidfile "$MINDVIS_SLURM_DIR/slurmd.pid"
stop_pidfile "$MINDVIS_SLURM_DIR/slurmctld.pid"
stop_pidfile "$MINDVIS_SLURM_DIR/munge/munged.pid"
for file in "$SLURM_CONF_DIR/slurm.conf" "$SLURM_CONF_DIR/gres.conf"; do
    ours "$file" && rm -f "$file"
done
[[ $quiet == --quiet ]] || log "test cluster stopped (logs in $MINDVIS_SLURM_DIR)"
exit 0
