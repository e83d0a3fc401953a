#!/usr/bin/env bash
# Bring up a single-node SLURM cluster on loopback (root only; what CI uses for the SLURM test).
#
#   ci/slurm/up.sh            # install what is missing, write the config, start the daemons, wait
#   ci/slurm/down.sh          # stop exactly the daemons this script started
#
# What it does (facts in shared/docs/slurm.md):
#   1. installs Debian's SLURM and munge with `apt-get install --no-install-recommends` if a binary
#      is missing (6.7 s measured on a fresh machine of ours, apt included; nothing when they are there);
#   2. makes sure a munge key exists (`mungekey --create` if the package did not make one);
#   3. writes /etc/slurm/slurm.conf: one node `localhost` (127.0.0.1) whose CPU topology is what
#      `slurmd -C` reports and whose memory is a bit below the machine's, one default partition
#      `debug`, no cgroups, no accounting, MinJobAge=300 so that `squeue` sees finished jobs;
#      it refuses to overwrite a slurm.conf it did not write;
#   4. starts munged, slurmctld and slurmd in the background (foreground mode, detached) and records
#      their PIDs in $STATE_DIR/<daemon>.pid; a daemon whose recorded PID is alive is left alone;
#   5. waits until `sinfo` shows the node idle.
# Idempotent: running it again on a cluster that is up only checks that the node is idle.
#
# Environment: SLURM_CI_STATE_DIR (default /run/multihead-icl-slurm: PIDs, logs, spool),
#              SLURM_CI_WAIT (seconds to wait for the node, default 60).
# Exit status: 0 up and idle; 2 not root; 3 the packages could not be installed (no apt, no network);
#              1 anything else (the daemons' logs are printed).
set -euo pipefail

STATE_DIR="${SLURM_CI_STATE_DIR:-/run/multihead-icl-slurm}"
WAIT="${SLURM_CI_WAIT:-60}"
CONF=/etc/slurm/slurm.conf
MARKER="# Written by multihead-icl ci/slurm/up.sh"
PARTITION=debug

say() { echo "[slurm-up] $*"; }
die() { local code="$1"; shift; echo "[slurm-up] ERROR: $*" >&2; exit "$code"; }

[ "$(id -u)" -eq 0 ] || die 2 "must run as root (it installs packages and starts daemons as root)"
start_time=$(date +%s.%N)

# --- 1. packages -------------------------------------------------------------------------------
missing=()
for bin in munged mungekey slurmctld slurmd sbatch squeue sinfo scontrol srun; do
    command -v "$bin" >/dev/null 2>&1 || missing+=("$bin")
done
if [ "${#missing[@]}" -gt 0 ]; then
    command -v apt-get >/dev/null 2>&1 || die 3 "missing ${missing[*]} and no apt-get to install them"
    say "installing SLURM and munge (missing: ${missing[*]})"
    export DEBIAN_FRONTEND=noninteractive
    packages=(munge slurm-wlm slurmctld slurmd slurm-client)
    if ! apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=120 "${packages[@]}" >"/tmp/slurm-ci-apt.log" 2>&1; then
        say "apt-get install failed; running apt-get update first"
        apt-get update -q -o DPkg::Lock::Timeout=120 >>"/tmp/slurm-ci-apt.log" 2>&1 \
            || { tail -20 /tmp/slurm-ci-apt.log >&2; die 3 "apt-get update failed (see /tmp/slurm-ci-apt.log)"; }
        apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=120 "${packages[@]}" >>"/tmp/slurm-ci-apt.log" 2>&1 \
            || { tail -20 /tmp/slurm-ci-apt.log >&2; die 3 "apt-get install ${packages[*]} failed (see /tmp/slurm-ci-apt.log)"; }
    fi
    for bin in "${missing[@]}"; do
        command -v "$bin" >/dev/null 2>&1 || die 3 "$bin still missing after installing ${packages[*]}"
    done
    say "installed in $(awk -v a="$start_time" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }') s"
fi

mkdir -p "$STATE_DIR"/{log,spool/ctld,spool/d} /run/munge /etc/slurm
chmod 0755 "$STATE_DIR"

# --- 2. munge key ------------------------------------------------------------------------------
if [ ! -s /etc/munge/munge.key ]; then
    say "creating the munge key"
    mkdir -p /etc/munge
    mungekey --create --keyfile=/etc/munge/munge.key
fi
chmod 0600 /etc/munge/munge.key

# --- 3. slurm.conf -----------------------------------------------------------------------------
if [ -e "$CONF" ] && ! grep -qF "$MARKER" "$CONF"; then
    die 1 "$CONF exists and was not written by this script; refusing to overwrite it"
fi
# `slurmd -C` prints this machine's node line; keep its topology, set our own name and memory.
node_line=$(slurmd -C | head -1)
topology=$(echo "$node_line" | tr ' ' '\n' \
    | grep -E '^(CPUs|Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore)=' | tr '\n' ' ')
real_mem=$(echo "$node_line" | tr ' ' '\n' | sed -n 's/^RealMemory=//p')
[ -n "$topology" ] && [ -n "$real_mem" ] || die 1 "could not parse \`slurmd -C\`: $node_line"
node_mem=$(( real_mem * 9 / 10 ))   # a bit below the machine's memory, or the node drains
new_conf=$(cat <<EOF
$MARKER (single-node CI cluster; see that script).
ClusterName=multihead-icl-ci
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
# No cgroups on these machines: track processes by /proc, no task containment.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
MailProg=/bin/true
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Finished jobs stay visible to \`squeue --states=all\` for 5 minutes (the Snakemake plugin's
# squeue status command needs MinJobAge >= 3 x its first status-check delay).
MinJobAge=300
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
StateSaveLocation=$STATE_DIR/spool/ctld
SlurmdSpoolDir=$STATE_DIR/spool/d
SlurmctldPidFile=$STATE_DIR/spool/slurmctld.pidfile
SlurmdPidFile=$STATE_DIR/spool/slurmd.pidfile
SlurmctldLogFile=$STATE_DIR/log/slurmctld.log
SlurmdLogFile=$STATE_DIR/log/slurmd.log
NodeName=localhost NodeAddr=127.0.0.1 ${topology}RealMemory=$node_mem State=UNKNOWN
PartitionName=$PARTITION Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
)
conf_changed=0
if [ ! -e "$CONF" ] || [ "$(cat "$CONF")" != "$new_conf" ]; then
    say "writing $CONF (node: ${topology}RealMemory=$node_mem)"
    printf '%s\n' "$new_conf" >"$CONF"
    conf_changed=1
fi

# --- 4. daemons --------------------------------------------------------------------------------
# alive NAME: the PID recorded for NAME runs the program NAME (a recycled PID does not count).
alive() {
    local pid_file="$STATE_DIR/$1.pid" pid
    [ -s "$pid_file" ] || return 1
    pid=$(cat "$pid_file")
    [ -d "/proc/$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ]
}
# start NAME COMMAND...: run COMMAND detached in its own session, logs in $STATE_DIR/log.
start() {
    local name="$1"; shift
    if alive "$name"; then
        say "$name already running (pid $(cat "$STATE_DIR/$name.pid"))"
        return
    fi
    setsid "$@" </dev/null >>"$STATE_DIR/log/$name.out" 2>&1 &
    echo $! >"$STATE_DIR/$name.pid"
    sleep 0.5
    alive "$name" || { tail -20 "$STATE_DIR/log/$name.out" >&2; die 1 "$name exited at start"; }
    say "started $name (pid $(cat "$STATE_DIR/$name.pid"))"
}

start munged munged --foreground --force \
    --key-file=/etc/munge/munge.key --pid-file="$STATE_DIR/spool/munged.pidfile" \
    --seed-file="$STATE_DIR/spool/munged.seed" --log-file="$STATE_DIR/log/munged.log"
for _ in $(seq 20); do munge -n >/dev/null 2>&1 && break; sleep 0.25; done
munge -n | unmunge >/dev/null 2>&1 || die 1 "munge does not work (see $STATE_DIR/log/munged.*)"
start slurmctld slurmctld -D -f "$CONF"
start slurmd slurmd -D -N localhost -f "$CONF"
if [ "$conf_changed" -eq 1 ] && [ "$(stat -c %Y "$STATE_DIR/slurmctld.pid")" -lt "$(stat -c %Y "$CONF")" ]; then
    say "slurm.conf changed under running daemons: scontrol reconfigure"
    scontrol reconfigure
fi

# --- 5. wait for the node ----------------------------------------------------------------------
deadline=$(( $(date +%s) + WAIT ))
state=""
while [ "$(date +%s)" -lt "$deadline" ]; do
    state=$(sinfo -h -N -n localhost -o %t 2>/dev/null | head -1 || true)
    case "$state" in
        idle|mix|alloc) break ;;
        drain*|down*|fail*) scontrol update NodeName=localhost State=RESUME >/dev/null 2>&1 || true ;;
    esac
    sleep 0.5
done
case "$state" in
    idle|mix|alloc) ;;
    *)
        for log in "$STATE_DIR"/log/*; do echo "--- $log" >&2; tail -15 "$log" >&2; done
        sinfo -N -l >&2 || true
        die 1 "node not idle after ${WAIT} s (state: '${state:-no answer}')" ;;
esac
elapsed=$(awk -v a="$start_time" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
say "cluster up in ${elapsed} s: partition '$PARTITION', node localhost ${state} (state in $STATE_DIR)"
