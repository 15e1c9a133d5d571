#!/usr/bin/env bash
# Brings up a throwaway one-node SLURM cluster (munged + slurmctld + slurmd, all as root, no systemd) for CI
# and cluster-mode tests. Everything it writes lives in $RESCALE_SLURM_DIR; stop it with stop-cluster.sh.
#
# Usage:  eval "$(deploy/slurm/test/start-cluster.sh)"   # exports SLURM_CONF for sbatch/squeue/sinfo
# Env:    RESCALE_SLURM_DIR (default /tmp/rescale-slurm), RESCALE_SLURM_CTLD_PORT (6817),
#         RESCALE_SLURM_SLURMD_PORT (6818), RESCALE_SLURM_START_TIMEOUT seconds (60),
#         RESCALE_MUNGE_KEY (/etc/munge/munge.key; created if missing),
#         RESCALE_SLURM_CPUS (CPUs the node offers; default: the real count),
#         RESCALE_SLURM_GPUS (fake GPUs the node offers as GRES gpu, for --gpus-per-task jobs; default none)
# Stdout carries only the `export ...` lines; progress and errors go to stderr.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dir="${RESCALE_SLURM_DIR:-/tmp/rescale-slurm}"
ctld_port="${RESCALE_SLURM_CTLD_PORT:-6817}"
slurmd_port="${RESCALE_SLURM_SLURMD_PORT:-6818}"
timeout="${RESCALE_SLURM_START_TIMEOUT:-60}"
conf="$dir/slurm.conf"

log() { printf '[start-cluster] %s\n' "$*" >&2; }
die() { printf '[start-cluster] ERROR: %s\n' "$*" >&2; exit 1; }
now_ms() { date +%s%3N; }

[[ "$(id -u)" == 0 ]] || die "must run as root (it installs packages and runs slurmctld/slurmd as SlurmUser=root); run it with sudo or in a root CI container"
case "$dir" in /|/tmp|/tmp/|/root|/root/|/home|/home/|"") die "RESCALE_SLURM_DIR=$dir is too broad: the script wipes it; point it at a dedicated directory" ;; esac

t0=$(now_ms)

# --- 1. packages -------------------------------------------------------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
  log "installing slurm-wlm and munge (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  # Without systemd, maintainer scripts would try to start the daemons with the packaged /etc/slurm config
  # (which does not exist); exit 101 from policy-rc.d tells invoke-rc.d not to. Docker images ship one already.
  policy_created=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && policy_created=1
  fi
  rc=0
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends slurm-wlm munge; } >"/tmp/rescale-slurm-apt.log" 2>&1 || rc=$?
  [[ $policy_created == 1 ]] && rm -f /usr/sbin/policy-rc.d
  if [[ $rc != 0 ]]; then tail -n 30 /tmp/rescale-slurm-apt.log >&2; die "apt-get install slurm-wlm munge failed (exit $rc); full log in /tmp/rescale-slurm-apt.log"; fi
  log "installed in $(( ($(now_ms) - t0) / 1000 ))s: $(dpkg-query -W -f='${Package} ${Version}, ' slurmctld munge)"
fi

# --- 2. a clean state dir ------------------------------------------------------------------------------------
# Daemons from an earlier run would hold the ports and the state; stop them before wiping their files.
RESCALE_SLURM_DIR="$dir" "$here/stop-cluster.sh" >&2 || true
for port in "$ctld_port" "$slurmd_port"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    die "port $port is already in use (another slurmctld/slurmd?); stop it or set RESCALE_SLURM_CTLD_PORT / RESCALE_SLURM_SLURMD_PORT"
  fi
done
rm -rf "$dir"
t_daemons=$(now_ms)
mkdir -p "$dir"/{munge,state,spool,log,run,jobs}
# Clients of any user must reach the socket; munged warns otherwise.
chmod 755 "$dir/munge"

# --- 3. munge ------------------------------------------------------------------------------------------------
# Our own munged on our own socket (slurm.conf AuthInfo points at it), so it neither needs nor disturbs a
# system munged. The key is the system one (the munge package creates it); create it if it is missing.
key="${RESCALE_MUNGE_KEY:-/etc/munge/munge.key}"
if [[ ! -s "$key" ]]; then
  log "creating munge key $key"
  mkdir -p "$(dirname "$key")"
  if command -v mungekey >/dev/null; then mungekey --create --keyfile="$key"; else dd if=/dev/urandom of="$key" bs=1024 count=1 status=none; fi
  chmod 400 "$key"
fi
# --force: the key belongs to the munge user while we run as root, which munged would otherwise refuse.
munged --force --key-file="$key" --socket="$dir/munge/munge.socket" --pid-file="$dir/run/munged.pid" \
  --log-file="$dir/log/munged.log" --seed-file="$dir/munge/munged.seed" 2>>"$dir/log/munged.log" \
  || { cat "$dir/log/munged.log" >&2; die "munged did not start (log above)"; }
for _ in $(seq 50); do [[ -S "$dir/munge/munge.socket" ]] && break; sleep 0.1; done
munge --socket="$dir/munge/munge.socket" -n </dev/null | unmunge --socket="$dir/munge/munge.socket" >/dev/null \
  || { cat "$dir/log/munged.log" >&2; die "munged started but a munge/unmunge round trip failed (log above)"; }

# --- 4. slurm.conf -------------------------------------------------------------------------------------------
host="$(hostname -s)"
# slurmd -C reports the hardware exactly as slurmd will see it; configuring more than that drains the node.
hw="$(slurmd -C 2>/dev/null | grep -m1 '^NodeName=' || true)"
if [[ -z "$hw" ]]; then
  hw="NodeName=$host CPUs=$(nproc) RealMemory=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 ))"
fi
hw="${hw#NodeName=* }"
# More CPUs than the machine has (so a head job and two 1-CPU workers fit on a 2-core runner): slurmd must take
# the configured count instead of draining the node for a mismatch.
extra_conf=""
if [[ -n "${RESCALE_SLURM_CPUS:-}" ]]; then
  hw="CPUs=$RESCALE_SLURM_CPUS RealMemory=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$hw")"
  extra_conf+=$'SlurmdParameters=config_overrides\n'
fi
# Fake GPUs: empty files stand in for the device files slurmd must find (it reports a gpu without one as
# missing and drains the node). Enough for the scheduler to place --gpus-per-task jobs; nothing uses them.
rm -f "$dir/gres.conf"
if [[ -n "${RESCALE_SLURM_GPUS:-}" && "${RESCALE_SLURM_GPUS}" != 0 ]]; then
  extra_conf+=$'GresTypes=gpu\n'
  hw+=" Gres=gpu:$RESCALE_SLURM_GPUS"
  mkdir -p "$dir/dev"
  echo "AutoDetect=off" >"$dir/gres.conf"
  for (( i = 0; i < RESCALE_SLURM_GPUS; i++ )); do
    : >"$dir/dev/fakegpu$i"
    echo "NodeName=$host Name=gpu File=$dir/dev/fakegpu$i" >>"$dir/gres.conf"
  done
fi
cat >"$conf" <<EOF
# Generated by deploy/slurm/test/start-cluster.sh for a one-node test cluster; do not edit.
ClusterName=rescale-test
# Addresses are given explicitly so nothing depends on the hostname resolving.
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire is also how long a requeued job waits before it may start again (default 120s); short for tests.
AuthInfo=socket=$dir/munge/munge.socket,cred_expire=10
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups in CI containers: track processes by parentage, bind nothing, gather no accounting.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
# The main loop otherwise runs every 60s, which is when a requeued job becomes eligible again.
SchedulerParameters=sched_interval=2,bf_interval=5
MailProg=/bin/true
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
# Seconds between the SIGTERM of a cancel/requeue/time limit and the SIGKILL (clusters often use 30-120).
KillWait=10
# Memory per CPU when a job asks for none, so two 1-CPU tasks fit on the node at once.
DefMemPerCPU=1024
$extra_conf
NodeName=$host NodeAddr=127.0.0.1 $hw State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
export SLURM_CONF="$conf"

# --- 5. daemons ----------------------------------------------------------------------------------------------
dump_logs() {
  for f in slurmctld slurmd munged; do
    [[ -f "$dir/log/$f.log" ]] && { printf -- '--- %s (last 25 lines) ---\n' "$dir/log/$f.log" >&2; tail -n 25 "$dir/log/$f.log" >&2; }
  done
  sinfo -N -l >&2 2>/dev/null || true
}
fail() { log "ERROR: $*"; dump_logs; RESCALE_SLURM_DIR="$dir" "$here/stop-cluster.sh" >&2 || true; exit 1; }

# -c: start from empty state even if a previous run's state survived somewhere.
slurmctld -c -f "$conf" || fail "slurmctld did not start"
slurmd -f "$conf" || fail "slurmd did not start"

deadline=$(( $(date +%s) + timeout ))
state=""
while (( $(date +%s) < deadline )); do
  state="$(timeout 5 sinfo -h -N -n "$host" -o '%T' 2>/dev/null | head -n1 || true)"
  [[ "$state" == idle ]] && break
  sleep 0.5
done
[[ "$state" == idle ]] || fail "node $host is not idle after ${timeout}s (state: '${state:-no answer from slurmctld}'); daemon logs follow"
t_up=$(now_ms)

log "cluster up: node $host ($hw), install+cleanup $(( (t_daemons - t0) ))ms, munged+daemons to idle $(( t_up - t_daemons ))ms"
echo "export SLURM_CONF=$conf"
