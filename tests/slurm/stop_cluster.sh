#!/usr/bin/env bash
# Stop the single-node CI SLURM cluster started by start_cluster.sh.
# Only the daemons recorded in the pid files are signalled.
#   --purge   also delete slurmctld's saved state (job ids restart at 1)
set -uo pipefail

stop_pid() {
    local name="$1" f="$2"
    if [[ -f "$f" ]] && kill -0 "$(cat "$f")" 2>/dev/null; then
        echo "stop_cluster.sh: stopping $name ($(cat "$f"))"
        kill "$(cat "$f")"
        for _ in $(seq 1 20); do kill -0 "$(cat "$f")" 2>/dev/null || break; sleep 0.5; done
        if kill -0 "$(cat "$f")" 2>/dev/null; then
            echo "stop_cluster.sh: $name did not stop, sending SIGKILL"
            kill -9 "$(cat "$f")" 2>/dev/null || true
        fi
    fi
    rm -f "$f"
}

# cancel whatever is still queued/running so slurmd has nothing to wait for
command -v scancel >/dev/null && scancel --user="$(id -un)" 2>/dev/null || true

stop_pid slurmd /run/slurm/slurmd.pid
stop_pid slurmctld /run/slurm/slurmctld.pid
stop_pid munged /run/munge/munged.pid

if [[ "${1:-}" == "--purge" ]]; then
    rm -rf /var/lib/slurm/slurmctld/* /var/lib/slurm/slurmd/*
fi
exit 0
