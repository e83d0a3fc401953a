#!/usr/bin/env bash
# Tear down the single-node SLURM cluster that ci/slurm/up.sh started.
#
# Cancels the cluster's remaining jobs, then stops exactly the daemons whose PIDs up.sh recorded in
# $SLURM_CI_STATE_DIR (slurmd, slurmctld, munged, in that order): SIGTERM, then SIGKILL after 15 s.
# A recorded PID that no longer runs that program (exited, or recycled) is only forgotten.
# Idempotent: with nothing running it does nothing. Packages and logs are left in place; the
# slurm.conf that up.sh wrote is removed once the daemons are down, because with a config but no
# controller every `scontrol` call waits ~9 s (and the Snakemake SLURM plugin makes one whenever
# snakemake starts). A slurm.conf that up.sh did not write is never touched.
set -euo pipefail

STATE_DIR="${SLURM_CI_STATE_DIR:-/run/multihead-icl-slurm}"
CONF=/etc/slurm/slurm.conf
MARKER="# Written by multihead-icl ci/slurm/up.sh"

say() { echo "[slurm-down] $*"; }

if [ ! -d "$STATE_DIR" ]; then
    say "nothing to stop ($STATE_DIR does not exist)"
    exit 0
fi

# alive NAME: the PID recorded for NAME runs the program NAME.
alive() {
    local pid_file="$STATE_DIR/$1.pid" pid
    [ -s "$pid_file" ] || return 1
    pid=$(cat "$pid_file")
    [ -d "/proc/$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ]
}

# Jobs still running would leave their slurmstepd behind once slurmd is gone: cancel them first.
if alive slurmctld && command -v squeue >/dev/null 2>&1; then
    jobs=$(squeue -h -t PENDING,RUNNING,SUSPENDED,COMPLETING -o %i 2>/dev/null || true)
    if [ -n "$jobs" ]; then
        say "cancelling jobs: $(echo $jobs)"
        # shellcheck disable=SC2086
        scancel $jobs 2>/dev/null || true
        for _ in $(seq 30); do
            [ -z "$(squeue -h -t PENDING,RUNNING,SUSPENDED,COMPLETING -o %i 2>/dev/null || true)" ] && break
            sleep 0.5
        done
    fi
fi

status=0
stopped=0
for name in slurmd slurmctld munged; do
    pid_file="$STATE_DIR/$name.pid"
    if ! alive "$name"; then
        [ -e "$pid_file" ] && say "$name not running (forgetting pid $(cat "$pid_file"))"
        rm -f "$pid_file"
        continue
    fi
    pid=$(cat "$pid_file")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 30); do
        alive "$name" || break
        sleep 0.5
    done
    if alive "$name"; then
        say "$name (pid $pid) ignored SIGTERM for 15 s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
    fi
    if alive "$name"; then
        say "ERROR: could not stop $name (pid $pid)" >&2
        status=1
    else
        say "stopped $name (pid $pid)"
        rm -f "$pid_file"
        stopped=$((stopped + 1))
    fi
done
[ "$stopped" -gt 0 ] || [ "$status" -ne 0 ] || say "nothing was running"
if [ "$status" -eq 0 ] && [ -e "$CONF" ] && grep -qF "$MARKER" "$CONF"; then
    rm -f "$CONF"
    say "removed $CONF (written by up.sh)"
fi
exit "$status"
