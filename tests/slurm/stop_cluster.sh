#!/usr/bin/env bash
# Stop the single-node CI SLURM cluster started by start_cluster.sh.
# Only the daemons recorded in the pid files are signalled.
#   --purge   also delete slurmctld's saved state (job ids restart at 1)
set -uo pipefail

# alive PID: process exists and is not a zombie (containers without an init
# that reaps orphans leave zombies behind)
alive() {
    [[ -n "$1" ]] && kill -0 "$1" 2>/dev/null \
        && ! grep -qs '^State:[[:space:]]*Z' "/proc/$1/status"
}

stop_pid() {
    local name="$1" f="$2" pid
    pid="$(cat "$f" 2>/dev/null || true)"
    if alive "$pid"; then
        echo "stop_cluster.sh: stopping $name ($pid)"
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 20); do alive "$pid" || break; sleep 0.5; done
        if alive "$pid"; then
            echo "stop_cluster.sh: $name did not stop, sending SIGKILL"
            kill -9 "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$f"
}

# cancel whatever is still queued/running so slurmd has nothing to wait for
if pid_ok="$(cat /run/slurm/slurmctld.pid 2>/dev/null)" && alive "$pid_ok"; then
    timeout 10 scancel --user="$(id -un)" 2>/dev/null || true
fi

stop_pid slurmd /run/slurm/slurmd.pid
stop_pid slurmctld /run/slurm/slurmctld.pid
stop_pid munged /run/munge/munged.pid

if [[ "${1:-}" == "--purge" ]]; then
    rm -rf /var/lib/slurm/slurmctld/* /var/lib/slurm/slurmd/*
fi
exit 0
