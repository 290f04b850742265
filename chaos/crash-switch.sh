#!/usr/bin/env bash
# kill -9 the switch, restart it identically, wait until ready; see usage below.
set -euo pipefail
CHAOS_PROG=crash-switch.sh
# shellcheck source=chaos/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<USAGE
Usage: chaos/crash-switch.sh [DOWN_SECONDS]

Kills the switch with kill -9 (its whole process group: no graceful shutdown,
sagas die wherever they stood), keeps it down for DOWN_SECONDS (default 2,
decimals allowed), restarts it with exactly the command line and environment
it was started with (same port, same database), and waits until GET /readyz
answers 200 (at most ${START_TIMEOUT}s). The restarted switch resumes every
unfinished transaction from its checkpoints by itself.
If this script is interrupted while the switch is down, it restarts the
switch before it exits. The deployment is the one recorded in \$CHAOS_DIR
(now $CHAOS_DIR).

Exit status: 0 killed and ready again; 1 the switch was not running or did
not come back (the end of its log is shown); 2 bad arguments.
USAGE
}

case ${1:-} in -h | --help) usage; exit 0 ;; esac
(($# <= 1)) || usage_error "expected at most one argument, DOWN_SECONDS"
down=${1:-2}
is_seconds "$down" || usage_error "DOWN_SECONDS must be a number of seconds (got '$down')"
load_deployment

pid=$(service_pid switch) || die "the switch is not running (no live pid in $CHAOS_RUN/switch.pid)"

restart() {
  local started new
  started=$(now_ms)
  new=$(spawn_service switch)
  if wait_switch; then
    chaos_event "restarted the switch (pid $new); ready after $(since "$started")s"
    return 0
  fi
  chaos_event "FAILED: the switch (pid $new) was not ready within ${START_TIMEOUT}s"
  return 1
}
kill_pause_restart "$pid" "the switch" "$down" restart
