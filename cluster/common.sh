# Shared settings of the test-cluster scripts (sourced, not run). Every value can be overridden from the environment.
MINDVIS_SLURM_DIR=${MINDVIS_SLURM_DIR:-/tmp/mindvis-slurm}     # state, spool, logs, pid files, job completion log
MINDVIS_SLURM_CPUS=${MINDVIS_SLURM_CPUS:-8}                     # what the node declares (see SlurmdParameters)
MINDVIS_SLURM_MEM_MB=${MINDVIS_SLURM_MEM_MB:-64000}
MINDVIS_SLURM_GPUS=${MINDVIS_SLURM_GPUS:-2}
MINDVIS_SLURM_GPU_TYPE=${MINDVIS_SLURM_GPU_TYPE:-fakegpu}
MINDVIS_SLURM_CTLD_PORT=${MINDVIS_SLURM_CTLD_PORT:-6817}
MINDVIS_SLURM_SLURMD_PORT=${MINDVIS_SLURM_SLURMD_PORT:-6818}
SLURM_CONF_DIR=/etc/slurm            # the executor plugin strips SLURM_CONF in jobs: the config must be here
MARKER="written by mindvis cluster/start.sh"
CLUSTER_SCRIPTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

log() { echo "[cluster] $*" >&2; }
die() { log "error: $*"; exit 1; }

# True when the config file exists and this project wrote it.
ours() { [[ -f $1 ]] && grep -q "$MARKER" "$1"; }

# Kill the daemon whose pid is in file $1 (only that pid): SIGTERM, then SIGKILL after 10 s (a slurmd that cannot
# reach its controller ignores SIGTERM while it retries registering).
stop_pidfile() {
    local file=$1 pid
    [[ -f $file ]] || return 0
    pid=$(<"$file")
    if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    fi
    rm -f "$file"
}
