#!/usr/bin/env bash
# Stops a chaos deployment and drops its databases; see usage below.
set -euo pipefail
CHAOS_PROG=down.sh
# shellcheck source=chaos/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<EOF
Usage: chaos/down.sh [--purge]

Stops everything chaos/up.sh (and run.sh) started in \$CHAOS_DIR (now
$CHAOS_DIR) — a running loadgen, the switch, the bank simulators — each by
its recorded pid and process group (SIGTERM, then SIGKILL after
${STOP_TIMEOUT}s), drops the deployment's two databases, and forgets the
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

status=0
if [[ -f $CHAOS_ENV ]]; then
  load_deployment
  for name in loadgen $SERVICES; do
    if stop_service "$name" TERM; then say "stopped $name"; fi
  done
  # A stray copy of any recorded command line (ours by its exact arguments), too.
  for cmd in "$CHAOS_RUN"/*.cmd; do
    [[ -e $cmd ]] || continue
    name=$(basename "$cmd" .cmd)
    stop_service "$name" KILL && say "stopped a stray $name"
  done
  if command -v psql >/dev/null 2>&1; then
    for db in "$SWITCH_DB_NAME" "$BANK_DB_NAME"; do
      if psql -X -q -v ON_ERROR_STOP=1 -d "$PG/postgres" -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null; then
        say "dropped database $db"
      else
        say "could not drop database $db"
        status=1
      fi
    done
  else
    say "psql is not on PATH: drop the databases $SWITCH_DB_NAME and $BANK_DB_NAME yourself"
    status=1
  fi
  for name in loadgen $SERVICES; do
    if service_pids "$name" | grep -q .; then
      say "$name is still running: $(service_pids "$name" | tr '\n' ' ')"
      status=1
    fi
  done
  ((status != 0)) || rm -rf "$CHAOS_RUN" "$CHAOS_ENV"
else
  say "no deployment recorded in $CHAOS_DIR; nothing to stop"
fi
if $purge && ((status == 0)); then
  rm -rf "$CHAOS_DIR"
  say "removed $CHAOS_DIR"
elif [[ -d $CHAOS_LOGS ]]; then
  say "logs kept in $CHAOS_LOGS"
fi
exit "$status"
