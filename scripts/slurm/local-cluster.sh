#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for tests: `start` installs
# Debian's slurm-wlm and munge when missing (Debian packages only), writes a
# configuration under $STATE (default /tmp/wsiseg-slurm) for this host, and
# starts munged, slurmctld and slurmd; `stop` stops them and removes $STATE.
# Needs root (slurmd runs jobs as their users). Prints each phase's time.
set -euo pipefail
STATE=${WSISEG_SLURM_STATE:-/tmp/wsiseg-slurm}
cmd=${1:?usage: local-cluster.sh start|stop}

stop() {
    for d in slurmd slurmctld munged; do
        if [ -f "$STATE/$d.pid" ]; then
            kill "$(cat "$STATE/$d.pid")" 2>/dev/null || true
        fi
    done
    # Wait (at most 10 s) for them to go.
    for _ in $(seq 20); do
        alive=0
        for d in slurmd slurmctld munged; do
            [ -f "$STATE/$d.pid" ] && kill -0 "$(cat "$STATE/$d.pid")" 2>/dev/null && alive=1
        done
        [ $alive = 0 ] && break
        sleep 0.5
    done
    rm -rf "$STATE"
}

if [ "$cmd" = stop ]; then
    stop
    echo "local Slurm stopped"
    exit 0
fi
[ "$cmd" = start ] || { echo "usage: local-cluster.sh start|stop" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "error: local-cluster.sh: needs root (slurmd runs the jobs)" >&2; exit 1; }

t0=$(date +%s)
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi
echo "phase slurm-install: $(( $(date +%s) - t0 )) s"

t0=$(date +%s)
stop
mkdir -p "$STATE"/{spool,state,munge,log}
host=$(hostname -s)
cpus=$(nproc)
mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))

# munge: a key of our own (in a private folder), a socket others can reach.
mkdir -p "$STATE/munge-key" "$STATE/munge"
chmod 755 "$STATE"
dd if=/dev/urandom of="$STATE/munge-key/munge.key" bs=1 count=128 status=none
chown -R munge:munge "$STATE/munge-key" "$STATE/munge"
chmod 700 "$STATE/munge-key"; chmod 400 "$STATE/munge-key/munge.key"; chmod 755 "$STATE/munge"
runuser -u munge -- munged --force --key-file="$STATE/munge-key/munge.key" \
    --socket="$STATE/munge/munge.socket" --pid-file="$STATE/munge/munged.pid" \
    --log-file="$STATE/munge/munged.log" --seed-file="$STATE/munge/seed"
cp "$STATE/munge/munged.pid" "$STATE/munged.pid"

cat > "$STATE/slurm.conf" <<CONF
ClusterName=wsiseg-test
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$STATE/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$STATE/state
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldPort=$((6817 + RANDOM % 1000))
SlurmdPort=$((7817 + RANDOM % 1000))
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
MinJobAge=300
NodeName=$host NodeAddr=127.0.0.1 NodeHostname=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$STATE/slurm.conf"
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
for _ in $(seq 60); do
    if sinfo -h -o %T 2>/dev/null | grep -q idle; then
        echo "phase slurm-start: $(( $(date +%s) - t0 )) s (node $host, $cpus CPUs, $mem MiB; SLURM_CONF=$SLURM_CONF)"
        exit 0
    fi
    sleep 0.5
done
echo "error: local Slurm did not come up; its logs:" >&2
tail -n 20 "$STATE"/log/*.log "$STATE/munge/munged.log" >&2 || true
stop
exit 1
