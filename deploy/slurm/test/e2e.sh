#!/usr/bin/env bash
# End-to-end test of deploy/slurm/ on a real one-node SLURM cluster: sbatch rescale-head.sbatch and a 2-task
# rescale-workers.sbatch array (as shipped; only sizes are overridden on the command line), submit a small corpus
# (DuckDB-written Parquet, keyword fixture model), requeue one worker in the middle of a shard (what preemption
# does), and check the run's output is the Parquet local mode writes from the same inputs. Then requeue the head
# job (its Redis data, password and ports must survive; the workers start again), run a second study, stop one
# worker and the head with a signal for the batch script only (forwarded), let the last worker notice the head is
# gone and exit 0, and check nothing is left running.
# Exit 0 only if every step passed. Prints one `TIMING name=ms` line per step on stdout.
# Needs root (start-cluster.sh installs slurm-wlm and munge), node, and redis-server (installed if missing).
# Env: as for start-cluster.sh; RESCALE_E2E_KEEP=1 keeps the work dir; RESCALE_E2E_TIMEOUT (per run, s, default 180).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
export RESCALE_SLURM_DIR="${RESCALE_SLURM_DIR:-/tmp/rescale-slurm}"
# The head job and two 1-CPU workers at once, on a runner of any size; two fake GPUs for --gpus-per-task=1.
export RESCALE_SLURM_CPUS="${RESCALE_SLURM_CPUS:-4}" RESCALE_SLURM_GPUS="${RESCALE_SLURM_GPUS:-2}"
ROWS=900 SHARD_ROWS=50
run_timeout="${RESCALE_E2E_TIMEOUT:-180}"

log() { printf '[e2e] %s\n' "$*" >&2; }
die() { printf '[e2e] FAIL: %s\n' "$*" >&2; exit 1; }
now_ms() { date +%s%3N; }
timing() { echo "TIMING $1=$2"; }
wait_for() { # SECONDS DESCRIPTION COMMAND...: poll every 0.2 s until COMMAND succeeds
  local limit="$1" what="$2"; shift 2
  local deadline=$(( $(now_ms) + limit * 1000 ))
  until "$@"; do
    (( $(now_ms) < deadline )) || die "timed out after ${limit}s waiting for $what"
    sleep 0.2
  done
}
count() { grep -c -- "$1" "$2" 2>/dev/null || true; }
# The ISO time of the first JSON log line in FILE with "msg":MSG and the given shard id (or any, if empty).
log_time() { # FILE MSG [SHARD]
  node -e '
    const [file, msg, shard] = process.argv.slice(1);
    for (const text of require("node:fs").readFileSync(file, "utf8").split("\n")) {
      if (!text.startsWith("{")) continue;
      let l; try { l = JSON.parse(text); } catch { continue; }
      if (l.msg === msg && (!shard || l.shardId === shard)) { console.log(Date.parse(l.time)); process.exit(0); }
    }
    process.exit(1);' "$1" "$2" "${3:-}"
}

command -v node >/dev/null || die "node is not on PATH"
[[ -f "$repo/node_modules/tsx/dist/loader.mjs" ]] || die "no node_modules/tsx in $repo; run npm ci first"
if ! command -v redis-server >/dev/null; then
  log "installing redis-server (apt-get)"
  # As in start-cluster.sh: without systemd, the package's maintainer script would start a system Redis on 6379.
  policy_created=0
  [[ -e /usr/sbin/policy-rc.d ]] || { printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && policy_created=1; }
  rc=0
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server; } \
    >/tmp/rescale-e2e-apt.log 2>&1 || rc=$?
  (( policy_created )) && rm -f /usr/sbin/policy-rc.d
  (( rc == 0 )) || { tail -n 20 /tmp/rescale-e2e-apt.log >&2; die "apt-get install redis-server failed (exit $rc); log in /tmp/rescale-e2e-apt.log"; }
fi

work="$(mktemp -d /tmp/rescale-slurm-e2e.XXXXXX)" # stands in for the shared filesystem
state="$work/cluster"   # RESCALE_DIR
submit="$work/submit"   # where sbatch runs, so the job logs land where the README says
mkdir -p "$submit"
head_job="" workers_job="" cluster_started=0

dump_logs() {
  log "---------------- logs for the failure above (work dir $work) ----------------"
  for f in "$submit"/*.out "$state/redis/redis.log" "$work"/*.log; do
    [[ -f "$f" ]] && { printf -- '--- %s (last 60 lines) ---\n' "$f" >&2; tail -n 60 "$f" >&2; }
  done
  if (( cluster_started )); then
    squeue -t all >&2 2>/dev/null || true
    for j in $head_job $workers_job; do scontrol show job "$j" >&2 2>/dev/null || true; done
    for f in slurmctld slurmd; do
      printf -- '--- %s (last 25 lines) ---\n' "$RESCALE_SLURM_DIR/log/$f.log" >&2
      tail -n 25 "$RESCALE_SLURM_DIR/log/$f.log" >&2 2>/dev/null || true
    done
  fi
}
cleanup() {
  local rc=$?
  trap - EXIT TERM INT
  (( rc == 0 )) || dump_logs
  # stop-cluster.sh cancels our jobs (SIGTERM, SIGKILL after KillWait) before it stops the daemons.
  if (( cluster_started )); then "$here/stop-cluster.sh" || rc=1; fi
  # Anything of ours still running after that is a bug in the scripts: say so, then end it.
  local left
  left="$(pgrep -f -- "$work|slurm-${workers_job:-none}_" || true)"
  if [[ -n "$left" ]]; then
    log "FAIL: processes left running: $(ps -o pid=,args= -p "${left//$'\n'/,}" 2>/dev/null | tr '\n' ';')"
    kill -KILL $left 2>/dev/null || true
    rc=1
  fi
  if [[ "${RESCALE_E2E_KEEP:-0}" == 1 || $rc != 0 ]]; then log "work dir kept: $work"; else rm -rf "$work"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

# --- the study and local mode's result (no cluster needed yet) -------------------------------------------------
t=$(now_ms)
fixture_json="$(cd "$repo" && node --import tsx test/deploy/slurm-e2e-fixture.ts prepare "$work" "$ROWS" "$SHARD_ROWS")" \
  || die "preparing the corpus and the local-mode reference failed"
json_field() { node -e 'console.log(JSON.parse(process.argv[1])[process.argv[2]])' "$1" "$2"; }
codebook="$(json_field "$fixture_json" codebook)" corpus="$(json_field "$fixture_json" corpus)" local_output="$(json_field "$fixture_json" localOutput)"
timing prepare_ms $(( $(now_ms) - t ))
timing local_run_ms "$(json_field "$fixture_json" localMs)"

# --- cluster ---------------------------------------------------------------------------------------------------
# Two runs (this and smoke.sh, or two CI jobs) would share the cluster's ports and state dir: take turns.
exec 9>"$RESCALE_SLURM_DIR.lock"
flock -w 600 9 || die "another cluster test held $RESCALE_SLURM_DIR.lock for 10 minutes"
t=$(now_ms)
cluster_started=1
eval "$("$here/start-cluster.sh")"
[[ -n "${SLURM_CONF:-}" ]] || die "start-cluster.sh printed no SLURM_CONF"
timing start_cluster_ms $(( $(now_ms) - t ))

# --- head job and worker array, as a user would submit them ----------------------------------------------------
export RESCALE_DIR="$state"
# The sources under tsx, like the other cluster tests (RESCALE_HOME would run the dist/ build instead).
export RESCALE_CMD="node --import file://$repo/node_modules/tsx/dist/loader.mjs $repo/cli/rescale.ts"
# --redis-timeout 5: a worker whose Redis is gone (the head requeued or stopped) gives up after 5 s instead of 60 s,
# so the script's restart and end-of-study paths run within the test.
export RESCALE_HEAD_HOST=127.0.0.1 RESCALE_WAIT_SECONDS=120 RESCALE_GRACE=8 RESCALE_WORKER_ARGS="--redis-timeout 5"
cd "$submit"
t=$(now_ms)
head_job="$(sbatch --parsable --cpus-per-task=1 --mem=2G --time=15 "$repo/deploy/slurm/rescale-head.sbatch")"
workers_job="$(sbatch --parsable --array=0-1 --cpus-per-task=1 --mem=3G --time=15 --dependency="after:$head_job" "$repo/deploy/slurm/rescale-workers.sbatch")"
head_out="$submit/rescale-head-$head_job.out"
w0="$submit/rescale-worker-${workers_job}_0.out" w1="$submit/rescale-worker-${workers_job}_1.out"
log "head job $head_job, worker array $workers_job"
wait_for 120 "the head job's coordinator.env" test -f "$state/coordinator.env"
timing head_ready_ms $(( $(now_ms) - t ))
[[ "$(stat -c %a "$state/coordinator.env") $(stat -c %a "$state/token") $(stat -c %a "$state/redis/redis.conf")" == "600 600 600" ]] \
  || die "secret files are not mode 600: $(stat -c '%n %a' "$state/coordinator.env" "$state/token" "$state/redis/redis.conf" | tr '\n' ' ')"
ready() { [[ "$(count '"msg":"worker ready"' "$w0")" -ge 1 && "$(count '"msg":"worker ready"' "$w1")" -ge 1 ]]; }
wait_for 120 "both workers to be ready" ready
timing workers_ready_ms $(( $(now_ms) - t ))
grep -q "redis-server .* listening" "$head_out" || die "the head log does not report Redis"

# --- submit, and preempt a worker mid-shard ----------------------------------------------------------------------
rescale() { (set -a; . "$state/coordinator.env"; cd "$repo" && $RESCALE_CMD "$@"); }
run_state() { # RUN → RUN_STATE_...
  rescale status "$1" --json 2>>"$work/status.log" | node -e '
    let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => { try { console.log(JSON.parse(s).state); } catch { console.log("?"); } });'
}
# Polls `rescale status` as a user's script would (`rescale watch` would block instead, but it closes its
# channel before the stream starts; see the report on cluster-commands.ts).
wait_for_run() { # RUN
  local deadline=$(( $(date +%s) + run_timeout )) run_status
  while :; do
    run_status="$(run_state "$1")"
    [[ "$run_status" == RUN_STATE_SUCCEEDED ]] && return
    [[ "$run_status" == RUN_STATE_FAILED || "$run_status" == RUN_STATE_CANCELLED ]] && die "run $1 ended as $run_status: $(rescale status "$1" 2>&1)"
    (( $(date +%s) < deadline )) || die "run $1 did not finish within ${run_timeout}s (state $run_status)"
    sleep 1
  done
}
shards_done() { # RUN FILE...: "shard done" lines of that run
  cat "${@:2}" 2>/dev/null | grep -c "\"runId\":\"$1\".*\"msg\":\"shard done\"" || true
}
job_gone() { [[ -z "$(squeue -h -j "$1" 2>/dev/null)" ]]; }

t_submit=$(now_ms)
submitted="$(rescale submit --codebook "$codebook" --input "$corpus" --output "$work/out/results.parquet" --shard-rows "$SHARD_ROWS" --json)" \
  || die "rescale submit failed: $submitted"
run_id="$(json_field "$submitted" runId)"
log "run $run_id submitted"
# Worker 1 is mid-shard when it has started more shards than it has finished; after its first shard, so that it
# is scoring rather than loading the model.
mid_shard() {
  local done; done=$(count '"msg":"shard done"' "$w1")
  (( done >= 1 && $(count '"msg":"shard started"' "$w1") > done ))
}
wait_for 90 "worker 1 to finish a shard and start another" mid_shard
# A requeue is what preemption with PreemptMode=REQUEUE does: CONT+TERM to every process of the job, SIGKILL after
# KillWait, and the job back in the queue (--requeue); plain scancel and time limits signal the same way.
t_requeue=$(now_ms)
scontrol requeue "${workers_job}_1"
wait_for 30 "the requeued worker to exit" grep -q "worker exited with" "$w1"
timing requeued_worker_exit_ms $(( $(now_ms) - t_requeue ))
grep -q "worker exited with 0" "$w1" || die "the requeued worker did not exit 0: $(grep 'rescale-worker' "$w1" | tail -n 3)"
grep -q "SIGTERM for the whole job" "$w1" || die "the worker script did not see the job-wide SIGTERM"
requeued_shard="$(node -e '
  for (const t of require("node:fs").readFileSync(process.argv[1], "utf8").split("\n")) {
    try { const l = JSON.parse(t); if (l.msg === "shard requeued for shutdown") { console.log(l.shardId); break; } } catch {}
  }' "$w1")"
if [[ -n "$requeued_shard" ]]; then
  timing handback_ms $(( $(log_time "$w1" "shard requeued for shutdown") - t_requeue ))
  wait_for 60 "worker 0 to take the handed-back shard $requeued_shard" log_time "$w0" "shard started" "$requeued_shard" >/dev/null
  timing restarted_elsewhere_ms $(( $(log_time "$w0" "shard started" "$requeued_shard") - t_requeue ))
else
  log "worker 1 finished its shard before the SIGTERM arrived; nothing was handed back (timing not measured)"
fi

# --- the run finishes, and equals local mode ---------------------------------------------------------------------
wait_for_run "$run_id"
timing run_ms $(( $(now_ms) - t_submit ))
comparison="$(cd "$repo" && node --import tsx test/deploy/slurm-e2e-fixture.ts compare "$work/out/results.parquet" "$local_output")" \
  || die "the cluster output differs from local mode's: $comparison"
log "output equals local mode's: $comparison"
done_total="$(shards_done "$run_id" "$w0" "$w1")"
(( done_total == ROWS / SHARD_ROWS )) || die "$done_total shards done for $(( ROWS / SHARD_ROWS )) planned: a shard ran twice or not at all"
# The requeued task runs again once SLURM lets it (cred_expire, 10 s here) and rejoins.
wait_for 120 "the requeued worker task to run again and be ready" bash -c "grep -q '(restart 1' '$w1' && (( \$(grep -c '\"msg\":\"worker ready\"' '$w1') >= 2 ))"
timing requeued_worker_back_ms $(( $(now_ms) - t_requeue ))

# --- the head job is requeued: same data, password and ports; the workers start again ----------------------------
t=$(now_ms)
scontrol requeue "$head_job"
wait_for 30 "the head job to stop for its requeue" bash -c "[[ ! -e '$state/coordinator.env' ]]"
wait_for 120 "the requeued head job to be ready again" test -f "$state/coordinator.env"
timing head_requeue_ready_ms $(( $(now_ms) - t ))
grep -q "(restart 1)" "$head_out" || die "the head job did not run again as restart 1"
[[ "$(run_state "$run_id")" == RUN_STATE_SUCCEEDED ]] || die "run $run_id is not listed as succeeded after the head's restart: its state did not survive"
t=$(now_ms)
# Other shard boundaries, so the shards are scored again rather than reused from the first run.
submitted="$(rescale submit --codebook "$codebook" --input "$corpus" --output "$work/out2/results.parquet" --shard-rows 60 --json)" \
  || die "rescale submit after the head's restart failed: $submitted"
second_run="$(json_field "$submitted" runId)"
wait_for_run "$second_run"
timing run_after_head_requeue_ms $(( $(now_ms) - t ))
for w in "$w0" "$w1"; do
  grep -q "starting the worker again" "$w" || die "$(basename "$w"): the script did not start the worker again after Redis went away"
done
(( $(shards_done "$second_run" "$w0" "$w1") == ROWS / 60 )) || die "the run after the head's restart did not run every shard once"

# --- stop: a signal for the batch scripts only (--signal=B:TERM, scancel --batch) is forwarded -------------------
t=$(now_ms)
scancel --batch --signal=TERM "${workers_job}_0"
wait_for 30 "worker 0's task to end" job_gone "${workers_job}_0"
grep -q "SIGTERM for this script only; passing it to the worker" "$w0" || die "the worker script did not forward a batch-only SIGTERM"
[[ "$(grep 'worker exited with' "$w0" | tail -n 1)" == *"worker exited with 0" ]] || die "worker 0 did not exit 0 after a forwarded SIGTERM"
scancel --batch --signal=TERM "$head_job"
wait_for 60 "the head job to end" job_gone "$head_job"
grep -q "received SIGTERM (sent to this script only)" "$head_out" || die "the head script did not see a batch-only SIGTERM"
grep -q "head stopped (exit 0)" "$head_out" || die "the head job did not stop cleanly"
[[ ! -e "$state/coordinator.env" ]] || die "the head job left $state/coordinator.env behind"
(( $(count "Redis is now ready to exit" "$state/redis/redis.log") == 2 )) || die "redis-server did not shut down cleanly (twice: requeue and stop)"
# Worker 1 loses Redis, finds the head job gone, and ends the task with 0.
wait_for 60 "worker 1 to end by itself after the head job" job_gone "${workers_job}_1"
grep -q "the head job $head_job has ended; nothing left to do" "$w1" || die "worker 1 did not notice the head job had ended"
timing stop_jobs_ms $(( $(now_ms) - t ))
for j in "$head_job" "${workers_job}_0" "${workers_job}_1"; do
  exit_code="$(scontrol show job "$j" 2>/dev/null | sed -n 's/.* ExitCode=\([0-9:]*\).*/\1/p' | head -n 1)"
  [[ -z "$exit_code" || "$exit_code" == 0:0 ]] || die "job $j ended with ExitCode=$exit_code"
done

t=$(now_ms)
"$here/stop-cluster.sh" || die "stop-cluster.sh failed"
cluster_started=0
timing stop_cluster_ms $(( $(now_ms) - t ))
log "all steps passed"
