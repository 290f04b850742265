#!/usr/bin/env bash
# Slow and failing bank endpoint for a while, then the faults it had before; see usage below.
set -euo pipefail
CHAOS_PROG=brownout.sh
# shellcheck source=chaos/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<USAGE
Usage: chaos/brownout.sh [--endpoint N] CODE LATENCY_MS ERROR_RATE [SECONDS]

Browns out one endpoint of bank CODE: through the simulator's
PUT /admin/faults it adds LATENCY_MS of latency to every /v1 request and
answers a share ERROR_RATE (0-1) of them 503 without applying them
({"latency_ms":LATENCY_MS,"error_rate":ERROR_RATE}). After SECONDS (default
10) it puts back the faults the endpoint had before (read with
GET /admin/faults first) — also when interrupted.
Only that endpoint is hurt (each endpoint of a bank has its own faults), so a
bank with a secondary endpoint stays reachable through it.

Options:
  --endpoint N  which endpoint: 1 the primary (default), 2 the secondary, …
  -h, --help    this help
The deployment is the one recorded in \$CHAOS_DIR (now $CHAOS_DIR).
Exit status: 0 applied and restored; 1 the bank did not take or give back the
faults; 2 bad arguments.
USAGE
}

endpoint=1 args=()
while (($#)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --endpoint)
      if ! { (($# >= 2)) && is_uint "$2" && ((10#$2 >= 1)); }; then usage_error "--endpoint needs a number from 1"; fi
      endpoint=$((10#$2))
      shift 2
      ;;
    -*) usage_error "unknown option '$1'" ;;
    *) args+=("$1"); shift ;;
  esac
done
((${#args[@]} >= 3 && ${#args[@]} <= 4)) || usage_error "expected CODE LATENCY_MS ERROR_RATE [SECONDS]"
latency=${args[1]} rate=${args[2]} seconds=${args[3]:-10}
if ! { is_uint "$latency" && ((10#$latency <= 3600000)); }; then
  usage_error "LATENCY_MS must be a whole number of milliseconds, at most 3600000 (got '$latency')"
fi
is_rate "$rate" || usage_error "ERROR_RATE must be a number from 0 to 1 (got '$rate')"
if ! is_seconds "$seconds" || [[ $seconds =~ ^0+(\.0+)?$ ]]; then
  usage_error "SECONDS must be a number of seconds above 0 (got '$seconds')"
fi
latency=$((10#$latency))
[[ $rate == .* ]] && rate=0$rate # JSON numbers start with a digit
load_deployment
code=$(bank_code_arg "${args[0]}")
read -r -a urls <<<"$(bank_urls "$code")"
((endpoint <= ${#urls[@]})) || usage_error "bank $code has ${#urls[@]} endpoint(s); --endpoint $endpoint does not exist"
url=${urls[endpoint - 1]}

faults() { # method, [body] -> the endpoint's faults as JSON
  local out code
  out=$(mktemp)
  code=$(curl -sS --noproxy '*' --max-time 5 -o "$out" -w '%{http_code}' -X "$1" \
    -H 'content-type: application/json' ${2:+-d "$2"} "$url/admin/faults") || code=000
  if [[ $code != 200 ]]; then
    say "$1 $url/admin/faults answered $code: $(cat "$out")"
    rm -f "$out"
    return 1
  fi
  cat "$out"
  rm -f "$out"
}

# The faults in a few words: "latency_ms 200, error_rate 0.3", or "none".
describe() {
  python3 -c '
import json, sys
f = json.loads(sys.argv[1])
default = {"latency_ms": 0, "jitter_ms": 0, "error_rate": 0, "lost_reply_rate": 0, "hang": False, "down": False}
print(", ".join("%s %s" % (k, f[k]) for k in default if k in f and f[k] != default[k]) or "none")' "$1"
}

before=$(faults GET) || die "could not read the faults of $code at $url"
applied=false
restore() {
  local try
  for try in 1 2 3 4 5; do
    # After a restart of the simulator its faults are the command line's again; put back ours anyway.
    if faults PUT "$before" >/dev/null; then
      chaos_event "restored $code endpoint $endpoint ($url) to its faults before: $(describe "$before")"
      return 0
    fi
    say "restoring the faults failed (try $try of 5)"
    sleep 1
  done
  chaos_event "FAILED: could not restore the faults of $code at $url to $before"
  return 1
}
on_exit() {
  local status=$?
  end_nap
  if $applied; then
    applied=false
    restore || status=1
  fi
  exit "$status"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

applied=true
now=$(faults PUT "{\"latency_ms\":$latency,\"error_rate\":$rate}") || die "$code at $url refused the faults"
chaos_event "brownout of $code endpoint $endpoint ($url) for ${seconds}s: $(describe "$now")"
nap "$seconds"
applied=false
restore
