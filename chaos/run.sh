#!/usr/bin/env bash
# One chaos scenario end to end: deploy, load, faults, verify, summary; see usage below.
set -euo pipefail
CHAOS_PROG=run.sh
# shellcheck source=chaos/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SCENARIOS="calm bank-flap brownout switch-crash everything node-kill rogue"

usage() {
  cat <<USAGE
Usage: chaos/run.sh SCENARIO [--rate N] [--duration S] [--mix MIX] [--keep] [options]

Starts a fresh deployment (chaos/up.sh), runs upi-switch loadgen against it
for --duration seconds with a mix of every payment type (P2P, P2M to the
deployment's merchants, collect requests approved, refunds of earlier
payments), applies the scenario's faults while the load runs (at
times scaled to --duration), waits for the load to end and drain, runs
upi-switch verify against the switch's database and every bank's feed (with
the seeded total as --expected-total-paise), prints ONE summary, and tears the
deployment down (chaos/down.sh) unless --keep.

Scenarios (times as shares of the duration D):
  calm          no faults: the baseline
  bank-flap     kill -9 ICICI at 15% and at 55% of D, down max(2, min(6, D/8)) s each
  brownout      HDFC's primary endpoint: 200 ms latency and 30% errors from 20% to 70% of D
  switch-crash  kill -9 the switch at 40% of D, down 2 s, restart it
  everything    ICICI killed at 10% and 75%; HDFC primary browned out from 20% to 60%;
                HDFC's adapters restarted at 30%, ICICI's at 65%; switch killed at 45%;
                settlement windows closed every 2 s from 5% to 85% of D
  node-kill     3 switch nodes behind HAProxy (--nodes, default 3 here), loadgen through
                the balancer; every max(3, D/10) s from then until 90% of D a random
                node is killed with kill -9 and restarted after 1-2 s (never the last
                one running); ICICI killed at 40% (down max(2, min(5, D/10)) s); HDFC
                primary browned out from 20% to 60%. The takeover of each killed
                node's sagas is timed (chaos/crash-switch.sh random)
  rogue         ₹7.00 debited straight at ICICI at 50% (chaos/rogue-debit.sh): this one
                must FAIL, which shows the harness can fail

Options:
  --rate N          arrivals per second (default 100)
  --duration S      seconds of load, a whole number from 10 (default 60)
  --concurrency N   loadgen's most transactions in flight (default 256)
  --seed N          loadgen's seed, to replay a run's pairs, types and amounts (default: random, printed)
  --mix MIX         loadgen's --mix: payment types and weights
                    (default p2p=70,p2m=20,collect=5,refund=5; p2p=100 is the old P2P-only load)
  --drain S         loadgen's --drain-timeout in seconds (default 30)
  --verify-wait S   verify's --wait-secs: how long PENDING transactions may take to end (default 120)
  --bank-latency MS every bank request takes MS + 0..MS ms (up.sh --bank-latency; default 0),
                    so more sagas are mid-flight when a process is killed
  --nodes N         switch nodes behind HAProxy (up.sh --nodes; default 1, node-kill 3,
                    which needs at least 2); loadgen and the fault scripts then go
                    through the balancer
  --keep            leave the deployment running afterwards (stop it with chaos/down.sh)
  -h, --help        this help

Connection errors while the switch is down are expected: they show in the
summary as loadgen errors, not violations (behind the balancer most are
hidden: a request a killed node never answered is sent to another node).
Only verify decides pass or fail.
State, logs and reports (loadgen.json, verify.json, verify.txt, summary.txt)
are in \$CHAOS_DIR (now $CHAOS_DIR); logs and reports stay after the run.

Exit status: 0 verify found nothing wrong and every fault was applied;
1 verify found violations (or a service died without being killed);
2 bad arguments; 3 the run could not check (deployment, a fault, loadgen or
verify could not run).
USAGE
}

# A whole number of at least MIN for option NAME, or exit 2.
whole() { # name, value, min
  if ! is_uint "$2" || ((10#$2 < $3)); then
    usage_error "$1 must be a whole number, at least $3 (got '$2')"
  fi
  printf '%s\n' $((10#$2))
}

scenario="" rate=100 duration=60 concurrency=256 seed="" drain=30 verify_wait=120 latency=0 keep=false nodes=""
mix=p2p=70,p2m=20,collect=5,refund=5
while (($#)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --keep) keep=true; shift ;;
    --rate | --duration | --concurrency | --seed | --drain | --verify-wait | --bank-latency | --nodes | --mix)
      (($# >= 2)) || usage_error "$1 needs a value"
      case $1 in
        --rate)
          if [[ ! $2 =~ ^[0-9]+(\.[0-9]+)?$ || $2 =~ ^0+(\.0+)?$ ]]; then
            usage_error "--rate must be a number above 0 (got '$2')"
          fi
          rate=$2
          ;;
        --duration) duration=$(whole "$1" "$2" 10) ;;
        --concurrency) concurrency=$(whole "$1" "$2" 1) ;;
        --seed) seed=$(whole "$1" "$2" 0) ;;
        --drain) drain=$(whole "$1" "$2" 0) ;;
        --verify-wait) verify_wait=$(whole "$1" "$2" 0) ;;
        --bank-latency) latency=$(whole "$1" "$2" 0) ;;
        --nodes) nodes=$(whole "$1" "$2" 1) ;;
        --mix)
          # The shape here; loadgen checks the types and weights before the run.
          [[ $2 =~ ^[A-Za-z0-9]+=[0-9]+(,[A-Za-z0-9]+=[0-9]+)*$ ]] ||
            usage_error "--mix must be type=weight pairs like p2p=70,p2m=20,collect=5,refund=5 (got '$2')"
          mix=$2
          ;;
      esac
      shift 2
      ;;
    -*) usage_error "unknown option '$1'" ;;
    *)
      [[ -z $scenario ]] || usage_error "one scenario only (got '$scenario' and '$1')"
      scenario=$1
      shift
      ;;
  esac
done
[[ -n $scenario ]] || usage_error "which scenario? one of: $SCENARIOS"
[[ " $SCENARIOS " == *" $scenario "* ]] || usage_error "unknown scenario '$scenario' (one of: $SCENARIOS)"
if [[ -z $nodes ]]; then
  nodes=1
  [[ $scenario == node-kill ]] && nodes=3
fi
((nodes <= 16)) || usage_error "--nodes must be 1-16 (got $nodes)"
if [[ $scenario == node-kill ]] && ((nodes < 2)); then
  usage_error "node-kill needs at least 2 switch nodes (got --nodes $nodes)"
fi

CHAOS_DIE_CODE=3 # from here on, a failure means the run could not check
need_tools curl python3 setsid
BIN=$(chaos_bin) || exit 3
[[ -f $CHAOS_ENV ]] && die "a deployment is already recorded in $CHAOS_DIR: stop it with chaos/down.sh first (or use another CHAOS_DIR)"
[[ -n $seed ]] || seed=$(python3 -c 'import random; print(random.getrandbits(63))')
export CHAOS_DIR

# ---------------------------------------------------------------------------
# The fault schedule: "<ms after the load starts> <script> <args…>", in time order.
D=$duration
clamp() { # value, low, high
  local v=$1
  ((v < $2)) && v=$2
  ((v > $3)) && v=$3
  printf '%s\n' "$v"
}
at() { printf '%s' $((D * 10 * $1)); } # percent of D, in ms
schedule=()
case $scenario in
  calm) ;;
  bank-flap)
    down=$(clamp $((D / 8)) 2 6)
    schedule+=("$(at 15) kill-bank.sh ICICI $down" "$(at 55) kill-bank.sh ICICI $down")
    ;;
  brownout)
    schedule+=("$(at 20) brownout.sh HDFC 200 0.3 $((D / 2))")
    ;;
  switch-crash)
    schedule+=("$(at 40) crash-switch.sh 2")
    ;;
  everything)
    down=$(clamp $((D / 10)) 2 5)
    schedule+=(
      "$(at 5) close-windows.sh 2 $((D * 4 / 5))"
      "$(at 10) kill-bank.sh ICICI $down"
      "$(at 20) brownout.sh HDFC 200 0.3 $((D * 2 / 5))"
      "$(at 30) restart-adapters.sh HDFC"
      "$(at 45) crash-switch.sh 2"
      "$(at 65) restart-adapters.sh ICICI"
      "$(at 75) kill-bank.sh ICICI $down"
    )
    ;;
  node-kill)
    # A kill every max(3, D/10) s until 90% of D, each node down 1-2 s; the
    # banks fail meanwhile. Kept in time order (the runner waits entry by entry).
    every=$((D / 10))
    ((every < 3)) && every=3
    down=$(clamp $((D / 10)) 2 5)
    faults=("$(at 20) brownout.sh HDFC 200 0.3 $((D * 2 / 5))" "$(at 40) kill-bank.sh ICICI $down")
    for ((t = every; t * 10 < D * 9; t += every)); do
      faults+=("$((t * 1000)) crash-switch.sh $((1 + RANDOM % 2)) random")
    done
    while IFS= read -r entry; do schedule+=("$entry"); done < <(printf '%s\n' "${faults[@]}" | sort -n -s -k1,1)
    ;;
  rogue)
    schedule+=("$(at 50) rogue-debit.sh ICICI 700")
    ;;
esac

# ---------------------------------------------------------------------------
# Clean-up: fault scripts first (their own traps put back what they broke),
# then loadgen, then the deployment unless --keep.
fault_pids=()
deployed=false
# shellcheck disable=SC2329 # invoked by the EXIT trap
on_exit() {
  local status=$?
  trap "" INT TERM
  end_nap
  local pid
  for pid in "${fault_pids[@]}"; do
    pid_alive "$pid" && kill -TERM -- "-$pid" 2>/dev/null
  done
  for pid in "${fault_pids[@]}"; do
    for _ in $(seq 1 150); do pid_alive "$pid" || break; sleep 0.1; done
    pid_alive "$pid" && kill -KILL -- "-$pid" 2>/dev/null
  done
  stop_service loadgen TERM 2>/dev/null || true
  if $deployed; then
    if $keep; then
      say "kept the deployment running: CHAOS_DIR=$CHAOS_DIR $CHAOS_HOME/down.sh stops it"
    else
      "$CHAOS_HOME/down.sh" >>"$CHAOS_LOGS/down.log" 2>&1 ||
        { say "tearing down failed:"; log_tail down; }
    fi
  fi
  exit "$status"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------
say "scenario $scenario: ${rate} tx/s for ${D}s, mix $mix, seed $seed, state in $CHAOS_DIR"
mkdir -p "$CHAOS_DIR"
deployed=true # up.sh takes down what it started if it fails; down.sh is harmless then
up_args=(--bank-latency "$latency")
((nodes > 1)) && up_args+=(--nodes "$nodes")
if ! "$CHAOS_HOME/up.sh" "${up_args[@]}" >"$CHAOS_DIR/up.out" 2>&1; then
  cat "$CHAOS_DIR/up.out" >&2
  die "the deployment did not start"
fi
mkdir -p "$CHAOS_LOGS" && mv "$CHAOS_DIR/up.out" "$CHAOS_LOGS/up.log"
load_deployment
REPORTS=$CHAOS_DIR/reports
mkdir -p "$REPORTS"
: >"$CHAOS_EVENTS"
for entry in "${schedule[@]}"; do
  read -r due script args <<<"$entry"
  printf 't+%d.%d %s %s\n' $((due / 1000)) $((due % 1000 / 100)) "$script" "$args"
done >"$REPORTS/plan.txt"
if ((nodes > 1)); then
  say "deployment up: $nodes switch nodes ($SWITCH_NODE_URLS) behind haproxy at $SWITCH_URL, HDFC $BANK_HDFC_URLS, ICICI $BANK_ICICI_URLS"
else
  say "deployment up: switch $SWITCH_URL, HDFC $BANK_HDFC_URLS, ICICI $BANK_ICICI_URLS"
fi

t0=$(now_ms)
printf '%s\n' "$t0" >"$REPORTS/t0"
# --mix and --merchants only when the mix is not the old P2P-only load (a
# binary of an earlier build knows neither flag).
mix_args=()
if [[ $mix != p2p=* || $mix == *,* ]]; then
  mix_args=(--mix "$mix" --merchants "${MERCHANTS_FILE:?deployment.env names no MERCHANTS_FILE}")
fi
# A switch with authentication: loadgen signs with the deployment's client key.
key_args=()
[[ -n ${CLIENT_KEY_FILE:-} ]] && key_args=(--key-file "$CLIENT_KEY_FILE")
start_service loadgen "$BIN" loadgen --switch "$SWITCH_URL" --rate "$rate" --duration "${D}s" \
  --concurrency "$concurrency" --vpas "$VPAS_FILE" --amount 1.00..5.00 --seed "$seed" \
  "${mix_args[@]}" "${key_args[@]}" --drain-timeout "${drain}s" --report "$REPORTS/loadgen.json" --quiet >/dev/null

# The faults, each at its time, each in a process group of its own.
: >"$REPORTS/faults.tsv"
fault_names=()
for entry in "${schedule[@]}"; do
  read -r due script args <<<"$entry"
  wait_ms=$((t0 + due - $(now_ms)))
  ((wait_ms > 0)) && nap "$(printf '%d.%03d' $((wait_ms / 1000)) $((wait_ms % 1000)))"
  if ! service_pid loadgen >/dev/null; then
    say "loadgen ended before ${script} was due; no more faults"
    break
  fi
  # shellcheck disable=SC2086 # args are words by design
  setsid "$CHAOS_HOME/$script" $args >>"$CHAOS_LOGS/faults.log" 2>&1 </dev/null &
  fault_pids+=("$!")
  fault_names+=("$(since "$t0") $script $args")
done

# Faults end by themselves (their scripts are bounded); then the load and its drain.
fault_failed=0
for i in "${!fault_pids[@]}"; do
  rc=0
  wait "${fault_pids[i]}" || rc=$?
  printf '%s\t%s\n' "$rc" "${fault_names[i]}" >>"$REPORTS/faults.tsv"
  ((rc == 0)) || fault_failed=$((fault_failed + 1))
done
fault_pids=()
limit=$(($(date +%s) + D + drain + 60))
while service_pid loadgen >/dev/null; do
  (($(date +%s) < limit)) || { stop_service loadgen TERM || true; die "loadgen did not end by itself"; }
  nap 0.5
done
say "load done after $(since "$t0")s; verifying (waiting up to ${verify_wait}s for PENDING transactions)"

# Every service must still be up: none of them was killed without being restarted.
died=""
for name in $SERVICES; do service_pid "$name" >/dev/null || died="$died $name"; done

verify_rc=0
"$BIN" verify --database-url "$SWITCH_DB" --expected-total-paise "$EXPECTED_TOTAL_PAISE" \
  --wait-secs "$verify_wait" --json "$REPORTS/verify.json" >"$REPORTS/verify.txt" 2>&1 || verify_rc=$?

python3 "$CHAOS_HOME/summary.py" --scenario "$scenario" --t0 "$t0" --dir "$CHAOS_DIR" \
  --verify-rc "$verify_rc" --died "${died# }" --rate "$rate" --duration "$D" --seed "$seed" --mix "$mix" \
  --bank-latency "$latency" --nodes "$nodes" |
  tee "$REPORTS/summary.txt"

if ((verify_rc == 1)) || [[ -n $died ]]; then
  exit 1
elif ((verify_rc != 0 || fault_failed > 0)) || [[ ! -s $REPORTS/loadgen.json ]]; then
  exit 3
fi
exit 0
