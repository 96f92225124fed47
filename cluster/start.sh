#!/usr/bin/env bash
# Start a single-node SLURM on 127.0.0.1 (munged if needed, slurmctld, slurmd) with fake GPUs, for testing the
# workflow's SLURM profile. As root. Writes /etc/slurm/{slurm,gres}.conf (refuses to replace files it did not write)
# and keeps state, logs and pid files in $MINDVIS_SLURM_DIR. Stop it with cluster/stop.sh.
set -euo pipefail
source "$(dirname "$0")/common.sh"

[[ $(id -u) == 0 ]] || die "start the test cluster as root (the daemons run as SlurmUser=root)"
for cmd in slurmctld slurmd munged sinfo; do
    command -v "$cmd" >/dev/null || die "$cmd not found; run cluster/install.sh first"
done
for file in "$SLURM_CONF_DIR/slurm.conf" "$SLURM_CONF_DIR/gres.conf"; do
    if [[ -f $file ]] && ! ours "$file"; then
        die "$file exists and was not written by this project; not replacing a real SLURM configuration"
    fi
done
# A previous run that was killed before stopping: take its daemons down first.
"$CLUSTER_SCRIPTS/stop.sh" --quiet

host=$(hostname -s)
state=$MINDVIS_SLURM_DIR
rm -rf "$state"
mkdir -p "$state/ctld" "$state/d" "$state/gpus" "$SLURM_CONF_DIR"

gpu_lines=""
for ((i = 0; i < MINDVIS_SLURM_GPUS; i++)); do
    touch "$state/gpus/gpu$i"
    gpu_lines+="NodeName=$host Name=gpu Type=$MINDVIS_SLURM_GPU_TYPE File=$state/gpus/gpu$i"$'\n'
done
render() {
    sed -e "s|@MARKER@|$MARKER|" -e "s|@HOST@|$host|g" -e "s|@STATE_DIR@|$state|g" \
        -e "s|@CPUS@|$MINDVIS_SLURM_CPUS|" -e "s|@MEM_MB@|$MINDVIS_SLURM_MEM_MB|" \
        -e "s|@GPUS@|$MINDVIS_SLURM_GPUS|" -e "s|@GPU_TYPE@|$MINDVIS_SLURM_GPU_TYPE|" \
        -e "s|@CTLD_PORT@|$MINDVIS_SLURM_CTLD_PORT|" -e "s|@SLURMD_PORT@|$MINDVIS_SLURM_SLURMD_PORT|" "$1"
}
render "$CLUSTER_SCRIPTS/slurm.conf.in" > "$SLURM_CONF_DIR/slurm.conf"
{ echo "# $MARKER"; render "$CLUSTER_SCRIPTS/gres.conf.in" | sed "s|@GPU_LINES@||"; printf %s "$gpu_lines"; } \
    > "$SLURM_CONF_DIR/gres.conf"

# munge authenticates every SLURM message. Use a running munged if there is one; else start ours (and stop it later).
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    [[ -s /etc/munge/munge.key ]] || { mkdir -p /etc/munge; mungekey --create --keyfile=/etc/munge/munge.key; }
    chown -R munge: /etc/munge 2>/dev/null || true
    chmod 0400 /etc/munge/munge.key
    mkdir -p /run/munge /var/log/munge /var/lib/munge "$state/munge"
    if id munge >/dev/null 2>&1; then
        chown munge: /run/munge /var/log/munge /var/lib/munge "$state/munge"
        runuser -u munge -- munged --pid-file="$state/munge/munged.pid"
    else
        munged --force --pid-file="$state/munge/munged.pid"
    fi
    for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
    munge -n | unmunge >/dev/null || die "munged did not start"
fi

slurmctld -c   # -c: a fresh controller state (no jobs from an earlier test cluster)
slurmd
node_state=""
deadline=$((SECONDS + 30))
while ((SECONDS < deadline)); do
    node_state=$(timeout 3 sinfo -h -N -o %T 2>/dev/null | head -1 || true)
    [[ $node_state == idle ]] && break
    sleep 0.2
done
if [[ $node_state != idle ]]; then
    "$CLUSTER_SCRIPTS/stop.sh" --quiet
    tail -n 20 "$state/slurmctld.log" "$state/slurmd.log" >&2 || true
    die "node not idle after 30 s (state: '${node_state:-no answer}'); logs above"
fi
log "SLURM up on 127.0.0.1: node $host, $MINDVIS_SLURM_CPUS CPUs, $MINDVIS_SLURM_MEM_MB MB," \
    "$MINDVIS_SLURM_GPUS x gpu:$MINDVIS_SLURM_GPU_TYPE, partitions cpu (default) and gpu; state in $state"
