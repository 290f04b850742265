#!/usr/bin/env bash
# Close settlement windows again and again while everything else fails; see usage below.
set -euo pipefail
CHAOS_PROG=close-windows.sh
# shellcheck source=chaos/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<USAGE
Usage: chaos/close-windows.sh EVERY_S FOR_S

Closes the switch's open settlement window every EVERY_S seconds for FOR_S
seconds — POST /v1/admin/settlement/close (with Authorization: Bearer
\$ADMIN_TOKEN when ADMIN_TOKEN is set) — while payments turn SUCCESS and
banks and switch nodes are killed. A close that fails (the switch is down)
is counted and the next one tried; a switch killed in the middle of a close
finishes it after its restart. verify then checks that every SUCCESS payment
is in exactly one window and that every window's positions net what the
banks' feeds hold applied. The deployment is the one recorded in
\$CHAOS_DIR (now $CHAOS_DIR).

Exit status: 0 at least one close answered 200; 1 none did; 2 bad arguments.
USAGE
}

case ${1:-} in -h | --help) usage; exit 0 ;; esac
(($# == 2)) || usage_error "expected EVERY_S FOR_S"
is_uint "$1" && is_uint "$2" && ((10#$1 >= 1)) || usage_error "EVERY_S and FOR_S are whole seconds, EVERY_S at least 1"
every=$((10#$1))
until=$(($(date +%s) + 10#$2))
load_deployment

closed=0
failed=0
while (($(date +%s) < until)); do
  answer=$(admin_curl -X POST -d '{}' "$SWITCH_URL/v1/admin/settlement/close" 2>/dev/null) || answer=""
  if [[ $answer == *'"closed"'* ]]; then
    closed=$((closed + 1))
  else
    failed=$((failed + 1))
  fi
  sleep "$every"
done
chaos_event "closed $closed settlement windows ($failed closes not answered: the switch was down)"
((closed > 0))
