#!/usr/bin/env bash
# CI: a short 'everything' chaos run that fails on any violation; see usage below.
set -euo pipefail
CHAOS_PROG=ci.sh
# shellcheck source=chaos/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<USAGE
Usage: chaos/ci.sh [--no-build]

Runs chaos/run.sh everything --duration 40 --rate 100 --bank-latency 50
(ICICI killed twice, HDFC's primary browned out, both banks' adapters
restarted, the switch killed with kill -9 and restarted, all under load; the
banks' 50-100 ms latency keeps a few dozen sagas mid-flight at each kill) in a
fresh state directory of its own, and fails on any violation verify finds.
About a minute on two cores, bounded at \${CHAOS_CI_LIMIT:-300}s overall.

First it runs 'cargo build --release' (a no-op when the binary is up to date;
CARGO_TARGET_DIR is honoured) unless UPI_SWITCH_BIN names a binary to use or
--no-build is given. Needs Postgres, Redis and RabbitMQ on 127.0.0.1 as
.ci/run provides them.

On success the state directory is removed; on failure it is kept and the
summary, the fault log and the ends of the switch's and banks' logs are printed.
Exit status: 0 clean; 1 violations (or a service died); 2 bad arguments;
3 the run could not check.
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

set_chaos_dir "$(mktemp -d "${TMPDIR:-/tmp}/upi-chaos-ci.XXXXXX")"
export CHAOS_DIR
started=$(date +%s)
rc=0
# run.sh cleans up on SIGTERM; timeout sends it at the limit (and SIGKILL 30 s
# later). timeout runs in a process group of its own, so a Ctrl-C here is
# passed on to it as SIGTERM.
timeout -k 30 "$limit" "$CHAOS_HOME/run.sh" everything --duration 40 --rate 100 \
  --bank-latency 50 --drain 20 --verify-wait 60 &
runner=$!
trap 'kill -TERM "$runner" 2>/dev/null || true' INT TERM
while :; do
  rc=0
  wait "$runner" || rc=$?
  # A trapped signal interrupts wait with a status above 128 while run.sh still cleans up.
  pid_alive "$runner" || break
done
trap - INT TERM
say "chaos everything: exit $rc after $(($(date +%s) - started))s"
if ((rc == 0)); then
  rm -rf "$CHAOS_DIR"
  exit 0
fi
((rc == 124)) && say "run.sh did not finish within ${limit}s"
for name in faults switch bank-hdfc bank-icici loadgen; do
  if [[ -s $CHAOS_DIR/logs/$name.log ]]; then
    say "the end of $CHAOS_DIR/logs/$name.log:"
    log_tail "$name" 25
  fi
done
say "state kept in $CHAOS_DIR"
case $rc in 1 | 2 | 3) exit "$rc" ;; *) exit 3 ;; esac
