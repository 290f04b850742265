#!/usr/bin/env bash
# Move money behind the switch's back, to prove verify (and run.sh) notice; see usage below.
set -euo pipefail
CHAOS_PROG=rogue-debit.sh
# shellcheck source=chaos/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<USAGE
Usage: chaos/rogue-debit.sh CODE [PAISE]

Debits PAISE (default 700) from account ACC001 of bank CODE with
POST /v1/debit straight at the bank, under an op_id no transaction of the
switch has: money moved behind the switch's back. verify must then report an
orphan op and money not conserved, so 'chaos/run.sh rogue' must FAIL — the
check that the harness can fail at all. Never part of a passing scenario.
The deployment is the one recorded in \$CHAOS_DIR (now $CHAOS_DIR).

Exit status: 0 the bank applied the debit; 1 it did not; 2 bad arguments.
USAGE
}

case ${1:-} in -h | --help) usage; exit 0 ;; esac
(($# >= 1 && $# <= 2)) || usage_error "expected CODE [PAISE]"
paise=${2:-700}
if ! is_uint "$paise" || ((10#$paise < 1)); then usage_error "PAISE must be a whole number from 1 (got '$paise')"; fi
paise=$((10#$paise))
load_deployment
code=$(bank_code_arg "$1")
url=$(bank_urls "$code" | awk '{print $1}')
txn=$(python3 -c 'import uuid; print(uuid.uuid4())')
answer=$(curl -sS --noproxy '*' --max-time 10 -X POST "$url/v1/debit" -H 'content-type: application/json' \
  -d "{\"op_id\":\"rogue-$txn:debit\",\"txn_id\":\"$txn\",\"account\":\"ACC001\",\"amount_paise\":$paise}") ||
  die "POST $url/v1/debit failed"
[[ $answer == *'"APPLIED"'* ]] || die "$code did not apply the rogue debit: $answer"
chaos_event "debited $paise paise from $code ACC001 behind the switch's back (op rogue-$txn:debit)"
