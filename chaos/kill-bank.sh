#!/usr/bin/env bash
# kill -9 a bank simulator, wait, restart it identically; see usage below.
set -euo pipefail
CHAOS_PROG=kill-bank.sh
# shellcheck source=chaos/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<USAGE
Usage: chaos/kill-bank.sh CODE [DOWN_SECONDS]

Kills the bank simulator of CODE (HDFC or ICICI) with kill -9 — its whole
process group, every endpoint of the bank at once — keeps it down for
DOWN_SECONDS (default 5, decimals allowed), then restarts it with exactly the
command line and environment it was started with (same ports, same ledger
database: what it had committed is still there) and waits until every
endpoint answers /v1/health again (at most ${START_TIMEOUT}s).
If this script is interrupted while the bank is down, it restarts the bank
before it exits. The deployment is the one recorded in \$CHAOS_DIR (now
$CHAOS_DIR).

Exit status: 0 killed and back; 1 the bank was not running or did not come
back (the end of its log is shown); 2 bad arguments.
USAGE
}

case ${1:-} in -h | --help) usage; exit 0 ;; esac
(($# >= 1 && $# <= 2)) || usage_error "expected CODE [DOWN_SECONDS]"
down=${2:-5}
is_seconds "$down" || usage_error "DOWN_SECONDS must be a number of seconds (got '$down')"
load_deployment
code=$(bank_code_arg "$1")
name=$(bank_service "$code")

pid=$(service_pid "$name") || die "the $code bank simulator is not running (no live pid in $CHAOS_RUN/$name.pid)"

restart() {
  local started new
  started=$(now_ms)
  new=$(spawn_service "$name")
  if wait_bank "$code"; then
    chaos_event "restarted $code (pid $new); every endpoint healthy after $(since "$started")s"
    return 0
  fi
  chaos_event "FAILED: $code (pid $new) did not come back within ${START_TIMEOUT}s"
  return 1
}
kill_pause_restart "$pid" "$code" "$down" restart
