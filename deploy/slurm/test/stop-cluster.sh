#!/usr/bin/env bash
# Stops the test cluster started by start-cluster.sh: cancels its jobs, then slurmd, slurmctld and munged, each
# found by the pid file in $RESCALE_SLURM_DIR. Idempotent; bounded (TERM, then KILL after a few seconds).
# Leaves the directory (logs) in place; start-cluster.sh wipes it.
set -uo pipefail

dir="${RESCALE_SLURM_DIR:-/tmp/rescale-slurm}"
conf="$dir/slurm.conf"
log() { printf '[stop-cluster] %s\n' "$*" >&2; }

# Pid files outlive their processes and pids get reused: only signal a pid whose command name still matches.
# A zombie (an init that does not reap, as in some containers) counts as gone.
alive() { # pid name
  [[ -n "$1" && -r "/proc/$1/comm" ]] && [[ "$(cat "/proc/$1/comm" 2>/dev/null)" == "$2" ]] \
    && [[ "$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null)" != Z ]]
}
# stop NAME:PID...: TERM them all at once (slurmd and slurmctld each take a few seconds to shut down), wait up to
# 10s, then KILL whatever is left.
stopped=0
stop() {
  local entry name pid left rc=0
  for entry in "$@"; do
    alive "${entry#*:}" "${entry%%:*}" && kill -TERM "${entry#*:}" 2>/dev/null && stopped=$((stopped + 1))
  done
  for _ in $(seq 100); do
    left=0
    for entry in "$@"; do alive "${entry#*:}" "${entry%%:*}" && left=1; done
    (( left )) || break
    sleep 0.1
  done
  for entry in "$@"; do
    name="${entry%%:*}" pid="${entry#*:}"
    alive "$pid" "$name" || continue
    log "$name ($pid) ignored SIGTERM for 10s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null
    for _ in $(seq 30); do alive "$pid" "$name" || break; sleep 0.1; done
    alive "$pid" "$name" && { log "WARNING: $name ($pid) survived SIGKILL"; rc=1; }
  done
  return $rc
}
pid_of() { [[ -r "$dir/run/$1.pid" ]] && tr -dc '0-9' <"$dir/run/$1.pid"; }

[[ -d "$dir/run" ]] || { log "nothing to stop in $dir"; exit 0; }
status=0

# Jobs first, while slurmctld can still tell slurmd to clean them up; otherwise their slurmstepd and job
# processes would outlive the daemons.
ctld_pid="$(pid_of slurmctld)"
if [[ -r "$conf" ]] && alive "$ctld_pid" slurmctld; then
  export SLURM_CONF="$conf"
  # timeout: a wedged slurmctld must not make stop hang.
  jobs="$(timeout 15 squeue -h -o %A 2>/dev/null)"
  if [[ -n "$jobs" ]]; then
    # Plain cancel: CONT+TERM to every job process, KILL after KillWait (10s here).
    timeout 15 scancel --quiet $jobs 2>/dev/null
    for _ in $(seq 150); do [[ -z "$(timeout 5 squeue -h -t running,completing -o %A 2>/dev/null)" ]] && break; sleep 0.1; done
  fi
fi

stop "slurmd:$(pid_of slurmd)" "slurmctld:$ctld_pid" || status=1

# slurmstepd deliberately survives a slurmd stop, and outlives its job when slurmctld was gone and could not
# cancel it. End any left from this cluster (its environment names our conf) together with the job processes
# under it; this is already the abnormal path, so straight to SIGKILL.
leftovers=()
for pid in $(pgrep -x slurmstepd 2>/dev/null); do
  tr '\0' '\n' 2>/dev/null <"/proc/$pid/environ" | grep -qx "SLURM_CONF=$conf" && leftovers+=("$pid")
done
if (( ${#leftovers[@]} )); then
  tree=("${leftovers[@]}") i=0
  while (( i < ${#tree[@]} )); do tree+=($(pgrep -P "${tree[$i]}" 2>/dev/null)); i=$((i + 1)); done
  log "killing ${#leftovers[@]} leftover slurmstepd and their job processes: ${tree[*]}"
  kill -KILL "${tree[@]}" 2>/dev/null
  stopped=$((stopped + ${#tree[@]}))
fi

stop "munged:$(pid_of munged)" || status=1
rm -f "$dir"/run/*.pid
if (( stopped )); then log "stopped $stopped process(es); logs kept in $dir/log"; else log "nothing was running"; fi
exit $status
