#!/usr/bin/env bash
# Restart a bank's adapters through the operator API; see usage below.
set -euo pipefail
CHAOS_PROG=restart-adapters.sh
# shellcheck source=chaos/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<USAGE
Usage: chaos/restart-adapters.sh CODE

Asks the switch's bank supervisor of CODE (HDFC or ICICI) to stop its PSP
adapter actors and start fresh ones — POST /v1/admin/banks/CODE/adapters/restart
(with Authorization: Bearer \$ADMIN_TOKEN when ADMIN_TOKEN is set) — and
prints how many it restarted and the bank's view in GET /v1/ops/banks
afterwards. Adapters are per node: with several switch nodes (up.sh --nodes)
every node is asked, each on its own URL. Calls in flight on the old adapters end as unknown outcomes, which
the sagas resolve by inquiry. The deployment is the one recorded in
\$CHAOS_DIR (now $CHAOS_DIR).

Exit status: 0 restarted; 1 the switch refused or did not answer; 2 bad arguments.
USAGE
}

case ${1:-} in -h | --help) usage; exit 0 ;; esac
(($# == 1)) || usage_error "expected CODE"
load_deployment
code=$(bank_code_arg "$1")

out=$(mktemp)
trap 'rm -f "$out"' EXIT
read -r -a names <<<"$(node_names)"
failed=0
for name in "${names[@]}"; do
  url=$(node_url "$name")
  where=""
  ((${#names[@]} > 1)) && where=" on $name"
  status=$(admin_curl -o "$out" -w '%{http_code}' -X POST "$url/v1/admin/banks/$code/adapters/restart") || status=000
  if [[ $status != 2?? ]]; then
    chaos_event "FAILED: restart of $code's adapters$where answered $status: $(cat "$out")"
    failed=1
    continue
  fi
  chaos_event "restarted $code's adapters$where: $(cat "$out")"
  view=$(admin_curl "$url/v1/ops/banks" | python3 -c '
import json, sys
for b in json.load(sys.stdin)["banks"]:
    if b["code"] == sys.argv[1]:
        eps = ", ".join("%s %s" % (e["url"], e["circuit"]) for e in b["endpoints"])
        print("%s %s, adapter restarts %s: %s" % (b["code"], b["health"], b["adapter_restarts"], eps))
' "$code") || view="(GET /v1/ops/banks did not answer)"
  say "now$where: $view"
done
exit "$failed"
