#!/usr/bin/env bash
# CI: short 'everything' and 'node-kill' chaos runs that fail on any violation; see usage below.
set -euo pipefail
CHAOS_PROG=ci.sh
# shellcheck source=chaos/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<USAGE
Usage: chaos/ci.sh [--no-build]

Runs two short chaos scenarios, each in a fresh state directory of its own,
under run.sh's default mix of payment types (p2p=70,p2m=20,collect=5,refund=5:
P2P, P2M, approved collect requests, refunds), and fails on any violation
verify finds (refunds beyond their original and collects without their
payment included):
  1. chaos/run.sh everything --duration 40 --rate 100 --bank-latency 50
     (ICICI killed twice, HDFC's primary browned out, both banks' adapters
     restarted, the switch killed with kill -9 and restarted, all under load;
     the banks' 50-100 ms latency keeps a few dozen sagas mid-flight at each
     kill);
  2. chaos/run.sh node-kill --duration 30 --rate 100 --bank-latency 50
     (3 switch nodes behind HAProxy, a random node killed with kill -9 every
     3 s and restarted 1-2 s later, ICICI killed once, HDFC browned out;
     needs the haproxy binary: apt-get install haproxy).
About two minutes on two cores, each run bounded at \${CHAOS_CI_LIMIT:-300}s.

First it runs 'cargo build --release' (a no-op when the binary is up to date;
CARGO_TARGET_DIR is honoured) unless UPI_SWITCH_BIN names a binary to use or
--no-build is given. Needs Postgres, Redis and RabbitMQ on 127.0.0.1 as
.ci/run provides them.

On success a run's state directory is removed; on failure it is kept and the
summary, the fault log and the ends of the switches', balancer's and banks'
logs are printed. Both runs always run; the worst result decides.
Exit status: 0 clean; 1 violations (or a service died); 2 bad arguments;
3 a run could not check.
USAGE
}

build=true
while (($#)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --no-build) build=false; shift ;;
    *) usage_error "unknown argument '$1'" ;;
  esac
done

limit=${CHAOS_CI_LIMIT:-300}
is_uint "$limit" || usage_error "CHAOS_CI_LIMIT must be whole seconds (got '$limit')"
if $build && [[ -z ${UPI_SWITCH_BIN:-} ]]; then
  say "cargo build --release"
  (cd "$REPO_ROOT" && cargo build --release --quiet) || exit 3
fi
chaos_bin >/dev/null || exit 3

# run_scenario SCENARIO ARGS…: one run.sh in a fresh state directory; returns its exit status.
run_scenario() {
  local scenario=$1 started rc runner name
  shift
  set_chaos_dir "$(mktemp -d "${TMPDIR:-/tmp}/upi-chaos-ci-$scenario.XXXXXX")"
  export CHAOS_DIR
  started=$(date +%s)
  # run.sh cleans up on SIGTERM; timeout sends it at the limit (and SIGKILL 30 s
  # later). timeout runs in a process group of its own, so a Ctrl-C here is
  # passed on to it as SIGTERM.
  timeout -k 30 "$limit" "$CHAOS_HOME/run.sh" "$scenario" "$@" &
  runner=$!
  # shellcheck disable=SC2064 # the runner of this call
  trap "kill -TERM $runner 2>/dev/null || true; interrupted=true" INT TERM
  while :; do
    rc=0
    wait "$runner" || rc=$?
    # A trapped signal interrupts wait with a status above 128 while run.sh still cleans up.
    pid_alive "$runner" || break
  done
  trap - INT TERM
  say "chaos $scenario: exit $rc after $(($(date +%s) - started))s"
  if ((rc == 0)); then
    rm -rf "$CHAOS_DIR"
    return 0
  fi
  ((rc == 124)) && say "run.sh $scenario did not finish within ${limit}s"
  local logs=(faults)
  for name in "$CHAOS_DIR"/logs/switch*.log "$CHAOS_DIR"/logs/haproxy.log; do
    [[ -f $name ]] && logs+=("$(basename "$name" .log)")
  done
  logs+=(bank-hdfc bank-icici loadgen)
  for name in "${logs[@]}"; do
    if [[ -s $CHAOS_DIR/logs/$name.log ]]; then
      say "the end of $CHAOS_DIR/logs/$name.log:"
      log_tail "$name" 25
    fi
  done
  say "state kept in $CHAOS_DIR"
  return "$rc"
}

# The worst of the runs' exit statuses: violations (1) over could not check (3)
# over bad arguments (2) over clean (0); anything else counts as 3.
worst=0
note() {
  local rc=$1
  case $rc in 0 | 1 | 2 | 3) ;; *) rc=3 ;; esac
  local rank=(0 3 1 2) # by exit status
  ((rank[rc] > rank[worst])) && worst=$rc
  return 0
}
interrupted=false
rc=0
run_scenario everything --duration 40 --rate 100 --bank-latency 50 --drain 20 --verify-wait 60 || rc=$?
note "$rc"
if ! $interrupted; then
  rc=0
  run_scenario node-kill --duration 30 --rate 100 --bank-latency 50 --drain 20 --verify-wait 60 || rc=$?
  note "$rc"
fi
exit "$worst"
