#!/usr/bin/env bash
# A one-node Slurm cluster on this machine (Debian's slurm-wlm and munge, run as root), for
# the tests of `sweep --launcher slurm`. Its state and logs live under STATE_DIR, so each
# test starts from an empty queue.
#
#   scripts/slurm_single_node.sh start STATE_DIR   # munged (if not running), slurmctld, slurmd
#   scripts/slurm_single_node.sh stop STATE_DIR    # the daemons `start` started, munged too
#
# `start` rewrites /etc/slurm/slurm.conf and stops any slurmctld / slurmd already running:
# do not run this on a machine whose Slurm matters.
set -euo pipefail

cmd=${1:?usage: $0 start|stop STATE_DIR}
state=$(realpath -m "${2:?usage: $0 start|stop STATE_DIR}")

stop() {
    for d in slurmd slurmctld munged; do
        if [[ -f $state/$d.pid ]]; then
            pid=$(cat "$state/$d.pid")
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -9 "$pid" 2>/dev/null || true
            rm -f "$state/$d.pid"
        fi
    done
}

start_munge() {
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then return; fi
    mkdir -p /etc/munge /var/lib/munge /var/log/munge /run/munge
    [[ -s /etc/munge/munge.key ]] || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
    chown -R munge:munge /etc/munge /var/lib/munge /var/log/munge /run/munge
    chmod 0400 /etc/munge/munge.key
    runuser -u munge -- /usr/sbin/munged
    munge -n | unmunge >/dev/null
    # Ours to stop (a munged that was already running is left alone).
    cp /run/munge/munged.pid "$state/munged.pid"
}

write_conf() {
    local host node
    host=$(hostname -s)
    # `slurmd -C` prints this machine's node line; its CPUs and memory are the node's.
    node=$(slurmd -C | head -1 | sed -e 's/ UpTime=.*//')
    mkdir -p /etc/slurm "$state/ctld" "$state/d"
    cat > /etc/slurm/slurm.conf <<EOF
ClusterName=selm-test
SlurmctldHost=$host
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmUser=root
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/d
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/slurmctld.log
SlurmdLogFile=$state/slurmd.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
# Ended jobs stay known to scontrol for 5 minutes (the sweep reads why a task ended).
MinJobAge=300
# scancel: SIGTERM, then SIGKILL 5 s later.
KillWait=5
ReturnToService=2
SchedulerParameters=sched_interval=1
$node State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

case $cmd in
start)
    stop
    # Daemons of an earlier start elsewhere (another STATE_DIR) would hold the ports.
    pkill -x slurmctld 2>/dev/null || true
    pkill -x slurmd 2>/dev/null || true
    for _ in $(seq 50); do pgrep -x 'slurmctld|slurmd' >/dev/null || break; sleep 0.1; done
    mkdir -p "$state"
    start_munge
    write_conf
    # -c: a clean queue, whatever an earlier start left.
    slurmctld -c
    slurmd -c
    for _ in $(seq 100); do
        case $(sinfo -h -o %T 2>/dev/null | head -1) in
            idle*|mixed*|allocated*) exit 0 ;;
            down*|drain*) scontrol update nodename="$(hostname -s)" state=resume 2>/dev/null || true ;;
        esac
        sleep 0.3
    done
    echo "Slurm did not become ready; see $state/slurmctld.log and $state/slurmd.log" >&2
    sinfo >&2 || true
    exit 1
    ;;
stop) stop ;;
*) echo "usage: $0 start|stop STATE_DIR" >&2; exit 2 ;;
esac
