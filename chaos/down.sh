#!/usr/bin/env bash
# Stops a chaos deployment and drops its databases (upi-switch rig down); see usage below.
set -euo pipefail
CHAOS_PROG=down.sh
# shellcheck source=chaos/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<EOF
Usage: chaos/down.sh [--purge]

Stops everything chaos/up.sh (and run.sh) started in \$CHAOS_DIR (now
$CHAOS_DIR) — a running loadgen, the balancer, the switch nodes (all at
once; each drains), the bank simulators — each by its recorded command line
and process group (SIGTERM, then SIGKILL after ${STOP_TIMEOUT}s), drops the
deployment's two databases, and forgets the
deployment. Logs and reports stay in \$CHAOS_DIR for a post-mortem unless
--purge is given (then the whole directory goes). Safe to run twice.

Options:
  --purge     also remove \$CHAOS_DIR
  -h, --help  this help
Exit status: 0 done; 1 something could not be stopped or dropped; 2 bad arguments.
EOF
}

purge=false
while (($#)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --purge) purge=true; shift ;;
    *) usage_error "unknown argument '$1'" ;;
  esac
done

# The binary that started the deployment stops it (upi-switch rig down).
if [[ ! -f $CHAOS_ENV ]]; then
  say "no deployment recorded in $CHAOS_DIR; nothing to stop"
  if $purge; then rm -rf "$CHAOS_DIR" && say "removed $CHAOS_DIR"; fi
  exit 0
fi
BIN=$(sed -n 's/^BIN=//p' "$CHAOS_ENV" | tr -d "'")
[[ -n $BIN && -x $BIN ]] || BIN=$(chaos_bin)
args=(rig down --dir "$CHAOS_DIR" --prog "$CHAOS_PROG" --stop-timeout "$STOP_TIMEOUT")
$purge && args+=(--purge)
exec "$BIN" "${args[@]}"
