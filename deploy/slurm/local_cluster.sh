#!/bin/bash
# A throw-away one-node SLURM cluster on this machine, for trying (and testing) the files of
# deploy/slurm/ before a real cluster: a munge daemon with its own key and socket, slurmctld and
# slurmd, all files (configuration, state, spool, logs, pid files) under one folder DIR.
#
#   deploy/slurm/local_cluster.sh start DIR [SLURMCTLD_PORT SLURMD_PORT]   # ports default 16817 16818
#   export SLURM_CONF=DIR/slurm.conf                                       # for sbatch, squeue, sinfo, scancel
#   sbatch --gres=none --mem=0 --cpus-per-task=2 deploy/slurm/predict_catalogue.sbatch CAT.zarr OUT.zarr
#   deploy/slurm/local_cluster.sh stop DIR        # cancels the jobs, stops the daemons by their pid files
#
# Needs Debian's packages (apt-get install -y slurm-wlm munge; nothing is installed here) and root:
# slurmd runs the jobs as their users. No systemd, no cgroups (proctrack/linuxproc, task/none), no
# accounting. The tests of tests/deploy/ run this script (tests/deploy/conftest.py).
set -euo pipefail

usage() {
    echo "usage: $0 start DIR [SLURMCTLD_PORT SLURMD_PORT] | stop DIR" >&2
    exit 2
}

log() { echo "[local_cluster] $*" >&2; }

# the pid in a pid file, if that process is alive
live_pid() {
    local pid
    [ -s "$1" ] || return 1
    pid=$(cat "$1")
    kill -0 "$pid" 2>/dev/null && echo "$pid"
}

write_conf() {
    local dir=$1 ctld_port=$2 slurmd_port=$3 node cpus mem
    # this machine as slurmd sees it: NodeName=<hostname -s> CPUs=... RealMemory=... (MB)
    node=$(slurmd -C | head -n 1)
    cpus=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$node")
    mem=$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<<"$node")
    cat >"$dir/slurm.conf" <<EOF
# one-node test cluster written by deploy/slurm/local_cluster.sh
ClusterName=lamost2csst-local
SlurmctldHost=$(hostname -s)(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$((mem / cpus))
MpiDefault=none
ReturnToService=2
KillWait=5
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

start() {
    local dir=$1 ctld_port=${2:-16817} slurmd_port=${3:-16818} state
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    mkdir -p "$dir/munge" "$dir/state" "$dir/spool" "$dir/log"
    chmod 0700 "$dir/munge"  # munged refuses a socket or key folder that others can write
    write_conf "$dir" "$ctld_port" "$slurmd_port"
    export SLURM_CONF=$dir/slurm.conf

    [ -f "$dir/munge/munge.key" ] || dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 2>/dev/null
    chmod 0400 "$dir/munge/munge.key"
    munged --force --socket="$dir/munge/munge.socket" --key-file="$dir/munge/munge.key" \
        --pid-file="$dir/munge/munged.pid" --log-file="$dir/log/munged.log" \
        --seed-file="$dir/munge/munged.seed"
    slurmctld -f "$SLURM_CONF"  # both daemonize and write their pid files (slurm.conf)
    slurmd -f "$SLURM_CONF"
    for _ in $(seq 1 120); do
        state=$(sinfo -h -N -o %t 2>/dev/null || true)
        if [ "$state" = idle ]; then
            log "node $(hostname -s) idle; export SLURM_CONF=$SLURM_CONF"
            return 0
        fi
        sleep 0.5
    done
    log "the node did not become idle within 60 s (state: '${state:-none}'); logs in $dir/log"
    stop "$dir"
    return 1
}

stop() {
    local dir=$1 jobs
    dir=$(cd "$dir" && pwd)
    export SLURM_CONF=$dir/slurm.conf
    if live_pid "$dir/slurmctld.pid" >/dev/null; then
        # the jobs first: their processes (slurmstepd and below) outlive slurmd otherwise
        scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
        for _ in $(seq 1 60); do
            jobs=$(squeue -h -o %i 2>/dev/null || true)
            [ -z "$jobs" ] && break
            sleep 0.5
        done
        [ -z "$jobs" ] || log "jobs still listed after 30 s: $jobs"
    fi
    terminate "$dir" slurmd slurmctld  # together: each takes ~2 s to shut down
    terminate "$dir" munge/munged      # last: the SLURM daemons talk through it until they end
}

# SIGTERM to the daemons named by their pid files, then wait (SIGKILL after 10 s)
terminate() {
    local dir=$1 name pid i
    local -a pids=() names=()
    shift
    for name in "$@"; do
        pid=$(live_pid "$dir/$name.pid") || continue
        kill -TERM "$pid"
        pids+=("$pid")
        names+=("$name")
    done
    for i in "${!pids[@]}"; do
        pid=${pids[$i]}
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "${names[$i]} ($pid) still alive after 10 s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        log "stopped ${names[$i]} ($pid)"
    done
}

[ $# -ge 2 ] || usage
case $1 in
start) start "${@:2}" ;;
stop) stop "$2" ;;
*) usage ;;
esac
