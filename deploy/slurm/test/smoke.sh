#!/usr/bin/env bash
# End-to-end check of the one-node test cluster: start it, run a 2-task job array, check how cancel/requeue
# signals reach a batch script and its node child, requeue a job, stop it and check no daemon is left.
# Exit 0 only if every step passed. Prints one `TIMING name=ms` line per step on stdout.
# Needs root and node on PATH. Env as for start-cluster.sh; RESCALE_SLURM_KEEP=1 keeps the cluster running.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export RESCALE_SLURM_DIR="${RESCALE_SLURM_DIR:-/tmp/rescale-slurm}"
dir="$RESCALE_SLURM_DIR"

log() { printf '[smoke] %s\n' "$*" >&2; }
die() { printf '[smoke] FAIL: %s\n' "$*" >&2; exit 1; }
now_ms() { date +%s%3N; }
timing() { echo "TIMING $1=$2"; }
# wait_for SECONDS DESCRIPTION COMMAND...: poll every 0.2s until COMMAND succeeds.
wait_for() {
  local limit="$1" what="$2"; shift 2
  local deadline=$(( $(now_ms) + limit * 1000 ))
  until "$@"; do
    (( $(now_ms) < deadline )) || die "timed out after ${limit}s waiting for $what"
    sleep 0.2
  done
}
job_gone() { [[ -z "$(squeue -h -j "$1" 2>/dev/null)" ]]; }
job_field() { scontrol show job "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n1; }

command -v node >/dev/null || die "node is not on PATH; the signal checks run a node child like a real worker"

# Two smoke runs (e.g. two test suites at once) would share ports and the state dir: take turns.
exec 9>"$dir.lock"
flock -w 600 9 || die "another smoke run held $dir.lock for 10 minutes"

cleanup() {
  local rc=$?
  if [[ "${RESCALE_SLURM_KEEP:-0}" == 1 ]]; then log "RESCALE_SLURM_KEEP=1: cluster left running (SLURM_CONF=$dir/slurm.conf)"; return; fi
  "$here/stop-cluster.sh" || rc=1
  exit $rc
}
trap cleanup EXIT
# Turn TERM/INT (e.g. a test runner timing out) into an exit so the EXIT trap stops the daemons.
trap 'exit 143' TERM
trap 'exit 130' INT

# --- start ---------------------------------------------------------------------------------------------------
t=$(now_ms)
eval "$("$here/start-cluster.sh")"
timing start_cluster_ms $(( $(now_ms) - t ))
[[ -n "${SLURM_CONF:-}" ]] || die "start-cluster.sh printed no SLURM_CONF"
pids=()
for name in munged slurmctld slurmd; do pids+=("$name:$(tr -dc '0-9' <"$dir/run/$name.pid")"); done
jobs_dir="$dir/jobs"
mkdir -p "$jobs_dir"

# --- 2-task job array ----------------------------------------------------------------------------------------
cat >"$jobs_dir/array.sh" <<'EOF'
#!/bin/bash
echo "job=$SLURM_ARRAY_JOB_ID task=${SLURM_ARRAY_TASK_ID:-unset} count=${SLURM_ARRAY_TASK_COUNT:-unset} host=$(hostname -s)" \
  >"$1/task-${SLURM_ARRAY_TASK_ID:-unset}.txt"
EOF
t=$(now_ms)
# sbatch --wait polls at 2s, then 8s, then 32s intervals, so its wall time overstates the job's; the
# job records give the real span (1s resolution).
array_job=$(timeout 90 sbatch --parsable --wait --array=0-1 --output="$jobs_dir/array-%A_%a.out" "$jobs_dir/array.sh" "$jobs_dir") \
  || die "sbatch --wait --array=0-1 failed (exit $?); outputs: $(cat "$jobs_dir"/array-*.out 2>/dev/null)"
timing array_sbatch_wait_ms $(( $(now_ms) - t ))
span() { # seconds from the first SubmitTime to the last EndTime in `scontrol show job` output
  tr ' ' '\n' | sed -n 's/^\(SubmitTime\|EndTime\)=//p' | xargs -I{} date -d {} +%s | sort -n | sed -n '1p;$p' | paste -sd' '
}
read -r first last < <(scontrol show job "$array_job" | span) || true
[[ -n "${first:-}" && -n "${last:-}" ]] && timing array_submit_to_end_ms $(( (last - first) * 1000 ))
for task in 0 1; do
  [[ -f "$jobs_dir/task-$task.txt" ]] || die "array task $task wrote no file (files: $(ls "$jobs_dir"))"
  grep -q "task=$task count=2 " "$jobs_dir/task-$task.txt" || die "task $task saw the wrong environment: $(cat "$jobs_dir/task-$task.txt")"
done
log "array ok: $(cat "$jobs_dir"/task-*.txt | tr '\n' ';')"

# --- signals -------------------------------------------------------------------------------------------------
# The worker pattern: node in the background, bash forwards TERM, and waits again after a trap interrupts
# `wait` (bash runs traps only between commands, and a trapped signal makes `wait` return early).
cat >"$jobs_dir/worker.sh" <<'EOF'
#!/bin/bash
out="$1"
mark() { echo "$1" >>"$out"; }
node -e '
  const fs = require("node:fs"); const out = process.argv[1];
  process.on("SIGCONT", () => fs.appendFileSync(out, "node:CONT\n"));
  process.on("SIGTERM", () => { fs.appendFileSync(out, "node:TERM\n"); setTimeout(() => process.exit(0), 100); });
  fs.appendFileSync(out, `node:ready restart=${process.env.SLURM_RESTART_COUNT ?? "unset"}\n`);
  if (process.env.SLURM_RESTART_COUNT === "1") process.exit(0); // the requeue check: second run finishes
  setInterval(() => {}, 1000);
' "$out" &
child=$!
trap 'mark bash:TERM; kill -TERM "$child" 2>/dev/null' TERM
while kill -0 "$child" 2>/dev/null; do wait "$child"; done
wait "$child"; status=$?
mark "bash:exit=$status"
exit "$status"
EOF
chmod +x "$jobs_dir/worker.sh"
has() { grep -qx "$2" "$1" 2>/dev/null; }

submit_worker() { # name [sbatch args...] -> job id
  local name="$1"; shift
  : >"$jobs_dir/$name.log"
  sbatch --parsable "$@" --output="$jobs_dir/$name.out" "$jobs_dir/worker.sh" "$jobs_dir/$name.log"
}

t=$(now_ms)
full_job=$(submit_worker full)
plain_job=$(submit_worker plain)
wait_for 30 "both signal jobs to start" bash -c "grep -q node:ready '$jobs_dir/full.log' && grep -q node:ready '$jobs_dir/plain.log'"

# 1) --signal=TERM without --batch/--full goes to job steps only; a batch script without srun has none.
scancel --signal=TERM "$full_job"
sleep 1
! grep -q TERM "$jobs_dir/full.log" \
  || die "scancel --signal=TERM reached the batch script; expected it to reach job steps only: $(cat "$jobs_dir/full.log")"
# 2) --full: TERM to the batch shell and every process in it (node too), no SIGKILL unless they linger.
scancel --signal=TERM --full "$full_job"
wait_for 15 "the --full job to end" job_gone "$full_job"
has "$jobs_dir/full.log" node:TERM || die "node did not see TERM from scancel --signal=TERM --full: $(cat "$jobs_dir/full.log")"
has "$jobs_dir/full.log" bash:TERM || die "the batch shell did not see TERM from --full: $(cat "$jobs_dir/full.log")"
has "$jobs_dir/full.log" bash:exit=0 || die "the batch script did not exit cleanly after TERM: $(cat "$jobs_dir/full.log")"
# 3) plain scancel (the same path as preemption, time limit and requeue): CONT then TERM to every process of
#    the job, SIGKILL after KillWait.
scancel "$plain_job"
wait_for 15 "the cancelled job to end" job_gone "$plain_job"
for want in node:CONT node:TERM bash:TERM bash:exit=0; do
  has "$jobs_dir/plain.log" "$want" || die "plain scancel: missing $want in $(cat "$jobs_dir/plain.log")"
done
timing signals_ms $(( $(now_ms) - t ))
log "signals ok: --full -> $(tr '\n' ' ' <"$jobs_dir/full.log"); plain -> $(tr '\n' ' ' <"$jobs_dir/plain.log")"

# --- requeue -------------------------------------------------------------------------------------------------
t=$(now_ms)
requeue_job=$(submit_worker requeue --requeue)
wait_for 30 "the requeue job to start" grep -q "node:ready restart=unset" "$jobs_dir/requeue.log"
scontrol requeue "$requeue_job"
# The job must wait out cred_expire (10s in this cluster, 120s by default) before it runs again.
wait_for 60 "the requeued job to run again and finish" grep -q "node:ready restart=1" "$jobs_dir/requeue.log"
wait_for 15 "the requeued job to finish" job_gone "$requeue_job"
has "$jobs_dir/requeue.log" node:TERM || die "the requeued run did not see TERM: $(cat "$jobs_dir/requeue.log")"
timing requeue_ms $(( $(now_ms) - t ))
log "requeue ok: $(tr '\n' ' ' <"$jobs_dir/requeue.log")"

# --- stop ----------------------------------------------------------------------------------------------------
[[ "${RESCALE_SLURM_KEEP:-0}" == 1 ]] && exit 0
trap - EXIT
t=$(now_ms)
"$here/stop-cluster.sh" || die "stop-cluster.sh failed"
timing stop_cluster_ms $(( $(now_ms) - t ))
for entry in "${pids[@]}"; do
  name="${entry%%:*}" pid="${entry#*:}"
  state="$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$pid/status" 2>/dev/null)" || true
  if [[ -n "$state" && "$state" != Z && "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$name" ]]; then
    die "$name ($pid) still running after stop-cluster.sh"
  fi
done
log "all steps passed"
