#!/usr/bin/env bash
# Start a single-node SLURM cluster (munged + slurmctld + slurmd) on this
# machine, for tests/test_slurm.py. Idempotent: safe to run repeatedly.
#
# Must run as root (CI container, Debian/Ubuntu). No systemd is needed; the
# daemons are started by hand and write their pid files to /run/slurm.
#
# Environment:
#   SLURM_CONF_DIR        where slurm.conf goes                [/etc/slurm]
#   SLURM_CI_PARTITION    partition name (see write_conf.sh)   [ci]
#   SLURM_CI_WAIT         seconds to wait for the node         [60]
#   SLURM_CI_NO_INSTALL   set to 1 to never call apt-get
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CONF_DIR="${SLURM_CONF_DIR:-/etc/slurm}"
PARTITION="${SLURM_CI_PARTITION:-ci}"
WAIT="${SLURM_CI_WAIT:-60}"
export SLURM_CI_PARTITION="$PARTITION"

log() { echo "start_cluster.sh: $*"; }
die() {
    echo "start_cluster.sh: ERROR: $*" >&2
    for f in /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log /var/log/munge/munged.log; do
        if [[ -s "$f" ]]; then
            echo "---- last lines of $f ----" >&2
            tail -n 20 "$f" >&2
        fi
    done
    exit 1
}

[[ "$(id -u)" -eq 0 ]] || die "must be run as root"

# ---------------------------------------------------------------- packages
if ! command -v sbatch >/dev/null || ! command -v slurmctld >/dev/null \
    || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
    [[ "${SLURM_CI_NO_INSTALL:-0}" == 1 ]] && die "SLURM is not installed and SLURM_CI_NO_INSTALL=1"
    log "installing slurm-wlm and munge"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends slurm-wlm munge
fi

# pid file names a live process (not a zombie: containers without an init that
# reaps orphans keep dead daemons around as zombies)
pid_alive() {
    local pid
    pid="$(cat "$1" 2>/dev/null || true)"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null \
        && ! grep -qs '^State:[[:space:]]*Z' "/proc/$pid/status"
}

# ---------------------------------------------------------------- munge
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 0755 /run/munge
if [[ ! -s /etc/munge/munge.key ]]; then
    log "creating munge key"
    if command -v mungekey >/dev/null; then
        runuser -u munge -- mungekey --create --keyfile=/etc/munge/munge.key
    else
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key

if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
    log "munged already running"
else
    log "starting munged"
    rm -f /run/munge/munged.pid
    runuser -u munge -- /usr/sbin/munged
    for _ in $(seq 1 20); do
        munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && break
        sleep 0.5
    done
    munge -n </dev/null | unmunge >/dev/null || die "munged does not work"
fi

# ---------------------------------------------------------------- config
export SLURM_CONF="$CONF_DIR/slurm.conf"
before="$(cat "$SLURM_CONF" 2>/dev/null || true)"
"$HERE/write_conf.sh" "$CONF_DIR"
after="$(cat "$SLURM_CONF")"
restart=0
[[ "$before" != "$after" ]] && restart=1

install -d -m 0755 /run/slurm /var/log/slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd

stop_pid() {
    local f="$1" pid
    pid="$(cat "$f" 2>/dev/null || true)"
    if pid_alive "$f"; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 20); do pid_alive "$f" || break; sleep 0.5; done
    fi
    rm -f "$f"
}
if [[ "$restart" == 1 ]]; then
    log "slurm.conf changed: (re)starting slurm daemons"
    stop_pid /run/slurm/slurmd.pid
    stop_pid /run/slurm/slurmctld.pid
fi

# ---------------------------------------------------------------- daemons
if pid_alive /run/slurm/slurmctld.pid; then
    log "slurmctld already running"
else
    log "starting slurmctld"
    # -i: ignore state files that don't match the config (e.g. a changed node)
    /usr/sbin/slurmctld -i || die "slurmctld failed to start"
fi
for _ in $(seq 1 "$WAIT"); do
    scontrol ping 2>/dev/null | grep -q "is UP" && break
    sleep 1
done
scontrol ping 2>/dev/null | grep -q "is UP" || die "slurmctld does not answer 'scontrol ping'"

if pid_alive /run/slurm/slurmd.pid; then
    log "slurmd already running"
else
    log "starting slurmd"
    /usr/sbin/slurmd || die "slurmd failed to start"
fi

# ---------------------------------------------------------------- wait for node
NODE="$(hostname -s)"
state=""
for i in $(seq 1 "$WAIT"); do
    state="$(sinfo -h -n "$NODE" -o '%t' 2>/dev/null | head -n1 || true)"
    case "$state" in
        idle|mix|alloc|comp) break ;;
        drain*|drng|down*)
            # e.g. left drained/down by an earlier run
            if (( i % 5 == 1 )); then
                scontrol update NodeName="$NODE" State=RESUME 2>/dev/null || true
            fi ;;
    esac
    sleep 1
done
case "$state" in
    idle|mix|alloc|comp) ;;
    *) sinfo -N -l >&2 || true
       scontrol show node "$NODE" >&2 || true
       die "node $NODE did not become idle within ${WAIT}s (state: '${state:-unknown}')" ;;
esac

log "cluster is up:"
sinfo
