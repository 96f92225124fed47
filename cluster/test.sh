#!/usr/bin/env bash
# `make test-cluster`: install SLURM if missing, start the local test cluster, run the tests marked `cluster` against
# it (the workflow through --profile profiles/slurm), and stop the cluster again, also when the tests fail or time out.
# As root, from the repository root, with the SLURM executor plugin installed in .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
source cluster/common.sh
TEST_TIMEOUT_S=${MINDVIS_CLUSTER_TEST_TIMEOUT_S:-2400}

timeout -k 10 900 cluster/install.sh
cleanup() {
    local status=$?
    if ((status != 0)); then
        log "failed ($status); last lines of the SLURM logs:"
        tail -n 15 "$MINDVIS_SLURM_DIR/slurmctld.log" "$MINDVIS_SLURM_DIR/slurmd.log" >&2 2>/dev/null || true
    fi
    cluster/stop.sh
    exit "$status"
}
trap cleanup EXIT
trap 'exit 143' TERM INT
timeout -k 5 120 cluster/start.sh
export MLFLOW_DISABLE_TELEMETRY=true MINDVIS_REQUIRE_SLURM=1
timeout -k 30 "$TEST_TIMEOUT_S" .venv/bin/python -m pytest -q -m cluster tests/cluster
