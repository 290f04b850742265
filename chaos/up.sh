#!/usr/bin/env bash
# Starts a local deployment for chaos runs; see usage below.
set -euo pipefail
CHAOS_PROG=up.sh
# shellcheck source=chaos/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<EOF
Usage: chaos/up.sh [--accounts N] [--frozen N] [--poor N] [--bank-latency MS]
                   [--db-pool-size N] [-- SERVE_ARGS...]

Starts a local deployment and records it in \$CHAOS_DIR (now $CHAOS_DIR):
  - two fresh databases with random names on Postgres (\$CHAOS_PG, default
    postgres://postgres@127.0.0.1:5432): one for the switch, one for the banks' ledgers;
  - bank simulators HDFC (two endpoints: a primary and a secondary, one
    ledger) and ICICI, each seeded with N accounts ACC001.. of ₹1,00,000.00,
    of which the last --poor hold ₹1.00 and the --frozen before them are FROZEN;
  - the switch (upi-switch serve, --db-pool-size 16 unless told otherwise;
    SERVE_ARGS after -- are added to its command line);
  - the banks and one VPA per account registered through the admin API:
    cust01@hdfc -> HDFC ACC001, …, cust01@icici -> ICICI ACC001, … (listed in
    \$CHAOS_DIR/vpas.txt, one per line, for loadgen --vpas).
Every process runs in a process group of its own; its pid and exact command
line are in \$CHAOS_DIR/run/, its log in \$CHAOS_DIR/logs/. deployment.env holds
the URLs, ports, database names and EXPECTED_TOTAL_PAISE (the seeded total).
Stop it all and drop the databases with chaos/down.sh.

Options:
  --accounts N       accounts (and VPAs) per bank, 2-999 (default 20)
  --frozen N         frozen accounts per bank: payments to them end REVERSED (default 2)
  --poor N           accounts with ₹1.00 per bank: payments from them end FAILED (default 2)
  --bank-latency MS  every bank request takes MS plus 0..MS ms of jitter (bank-sim
                     --latency-ms/--jitter-ms, so it survives restarts; default 0):
                     more sagas are in flight when something is killed
  --db-pool-size N   the switch's Postgres pool (default 16; Postgres allows 100 in all)
  -h, --help         this help

Environment: CHAOS_DIR, CHAOS_PG, UPI_SWITCH_BIN (default
\${CARGO_TARGET_DIR:-target}/release/upi-switch), RUST_LOG (default info).
Exit status: 0 up and registered; 1 it could not start (everything started is
stopped again and the databases dropped); 2 bad arguments.
EOF
}

accounts=20 frozen=2 poor=2 pool=16 latency=0 serve_args=()
while (($#)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --accounts | --frozen | --poor | --db-pool-size | --bank-latency)
      (($# >= 2)) || usage_error "$1 needs a number"
      is_uint "$2" || usage_error "$1 must be a whole number (got '$2')"
      case $1 in
        --accounts) accounts=$((10#$2)) ;;
        --frozen) frozen=$((10#$2)) ;;
        --poor) poor=$((10#$2)) ;;
        --db-pool-size) pool=$((10#$2)) ;;
        --bank-latency) latency=$((10#$2)) ;;
      esac
      shift 2
      ;;
    --) shift; serve_args=("$@"); break ;;
    *) usage_error "unknown argument '$1'" ;;
  esac
done
((accounts >= 2 && accounts <= 999)) || usage_error "--accounts must be 2-999"
((frozen + poor <= accounts - 2)) || usage_error "--frozen + --poor must leave at least two ordinary accounts"
((pool >= 1)) || usage_error "--db-pool-size must be at least 1"
((latency <= 10000)) || usage_error "--bank-latency must be at most 10000 ms"

need_tools curl python3 setsid
BIN=$(chaos_bin)

if [[ -f $CHAOS_ENV ]]; then
  die "a deployment is already recorded in $CHAOS_DIR: stop it with chaos/down.sh first (or use another CHAOS_DIR)"
fi
mkdir -p "$CHAOS_DIR"
rm -rf "$CHAOS_RUN" "$CHAOS_LOGS" "$CHAOS_EVENTS" "$CHAOS_DIR"/reports
mkdir -p "$CHAOS_RUN" "$CHAOS_LOGS"

# From here on, a failure (or Ctrl-C) takes down whatever was started.
up_ok=false
on_exit() {
  local status=$?
  if ! $up_ok; then
    say "start-up failed; stopping what was started and dropping the databases"
    CHAOS_DIR=$CHAOS_DIR "$CHAOS_HOME/down.sh" >&2 || true
    ((status != 0)) || status=1
  fi
  exit "$status"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

PG=${CHAOS_PG:-postgres://postgres@127.0.0.1:5432}
PG=${PG%/}
tag=$(python3 -c 'import uuid; print(uuid.uuid4().hex[:8])')
SWITCH_DB_NAME=upi_chaos_${tag}_switch
BANK_DB_NAME=upi_chaos_${tag}_banks
read -r SWITCH_PORT HDFC_PORT HDFC_PORT2 ICICI_PORT <<<"$(free_ports 4)"

# Accounts: ACC001.. ; the last $poor are poor, the $frozen before them frozen.
rich_paise=10000000 poor_paise=100
python3 - "$CHAOS_DIR" "$accounts" "$frozen" "$poor" "$rich_paise" "$poor_paise" <<'EOF'
import json, sys
out, n, frozen, poor, rich, poor_paise = sys.argv[1], *map(int, sys.argv[2:])
width = max(3, len(str(n)))
vwidth = max(2, len(str(n)))
vpas = []
for code, bank in (("HDFC", "hdfc"), ("ICICI", "icici")):
    accounts = []
    for i in range(1, n + 1):
        kind = "poor" if i > n - poor else "frozen" if i > n - poor - frozen else "ordinary"
        accounts.append({
            "account": f"ACC{i:0{width}}",
            "name": f"{code} customer {i}",
            "balance_paise": poor_paise if kind == "poor" else rich,
            "status": "FROZEN" if kind == "frozen" else "ACTIVE",
        })
        vpas.append((f"cust{i:0{vwidth}}@{bank}", code, accounts[-1]["account"], accounts[-1]["name"], kind))
    with open(f"{out}/accounts-{bank}.json", "w") as f:
        json.dump(accounts, f, indent=1)
with open(f"{out}/vpas.txt", "w") as f:
    f.write("# VPAs of this deployment (kind in the comment); loadgen --vpas reads this file\n")
    for vpa, code, account, name, kind in vpas:
        f.write(f"{vpa}  # {code} {account} {kind}\n")
with open(f"{out}/vpas.tsv", "w") as f:
    for row in vpas:
        f.write("\t".join(row) + "\n")
EOF
EXPECTED_TOTAL_PAISE=$((2 * ((accounts - poor) * rich_paise + poor * poor_paise)))

SWITCH_URL=http://127.0.0.1:$SWITCH_PORT
BANK_HDFC_URLS="http://127.0.0.1:$HDFC_PORT http://127.0.0.1:$HDFC_PORT2"
BANK_ICICI_URLS="http://127.0.0.1:$ICICI_PORT"
{
  printf '# A chaos deployment, written by chaos/up.sh at %s\n' "$(date -u +%FT%TZ)"
  for var in BIN PG SWITCH_DB_NAME BANK_DB_NAME SWITCH_PORT SWITCH_URL HDFC_PORT HDFC_PORT2 \
    ICICI_PORT BANK_HDFC_URLS BANK_ICICI_URLS EXPECTED_TOTAL_PAISE; do
    printf '%s=%q\n' "$var" "${!var}"
  done
  printf 'SWITCH_DB=%q\nBANK_DB=%q\nBANKS=%q\nSERVICES=%q\nVPAS_FILE=%q\n' \
    "$PG/$SWITCH_DB_NAME" "$PG/$BANK_DB_NAME" "HDFC ICICI" "switch bank-hdfc bank-icici" "$CHAOS_DIR/vpas.txt"
} >"$CHAOS_ENV"
load_deployment

say "state in $CHAOS_DIR; databases $SWITCH_DB_NAME, $BANK_DB_NAME"
# Migrations first, once, so the two bank simulators do not race to create the schema.
"$BIN" migrate --bank --database-url "$BANK_DB" >>"$CHAOS_LOGS/migrate.log" 2>&1 ||
  { log_tail migrate; die "could not create and migrate $BANK_DB (log: $CHAOS_LOGS/migrate.log)"; }
"$BIN" migrate --database-url "$SWITCH_DB" >>"$CHAOS_LOGS/migrate.log" 2>&1 ||
  { log_tail migrate; die "could not create and migrate $SWITCH_DB (log: $CHAOS_LOGS/migrate.log)"; }

faults=()
((latency == 0)) || faults=(--latency-ms "$latency" --jitter-ms "$latency")
start_service bank-hdfc "$BIN" bank-sim --code HDFC --port "$HDFC_PORT" --extra-port "$HDFC_PORT2" \
  --database-url "$BANK_DB" --accounts "$CHAOS_DIR/accounts-hdfc.json" "${faults[@]}" >/dev/null
start_service bank-icici "$BIN" bank-sim --code ICICI --port "$ICICI_PORT" \
  --database-url "$BANK_DB" --accounts "$CHAOS_DIR/accounts-icici.json" "${faults[@]}" >/dev/null
wait_bank HDFC || die "the HDFC bank simulator did not come up"
wait_bank ICICI || die "the ICICI bank simulator did not come up"
say "banks up: HDFC $BANK_HDFC_URLS, ICICI $BANK_ICICI_URLS"

start_service switch "$BIN" serve --listen "127.0.0.1:$SWITCH_PORT" --database-url "$SWITCH_DB" \
  --db-pool-size "$pool" "${serve_args[@]}" >/dev/null
wait_switch || die "the switch did not become ready"
say "switch ready: $SWITCH_URL"

# Registrations.
put() { # path, json body
  local code
  code=$(admin_curl -o "$CHAOS_DIR/last-admin-answer.json" -w '%{http_code}' -X PUT "$SWITCH_URL$1" -d "$2") || code=000
  [[ $code == 2?? ]] || die "PUT $1 answered $code: $(cat "$CHAOS_DIR/last-admin-answer.json" 2>/dev/null)"
}
hdfc_endpoints=$(python3 -c 'import json,sys; print(json.dumps([{"url": u, "priority": i} for i, u in enumerate(sys.argv[1].split())]))' "$BANK_HDFC_URLS")
put /v1/admin/banks/HDFC "{\"name\":\"HDFC Bank\",\"endpoints\":$hdfc_endpoints}"
put /v1/admin/banks/ICICI "{\"name\":\"ICICI Bank\",\"endpoints\":[{\"url\":\"$BANK_ICICI_URLS\",\"priority\":0}]}"
n=0
while IFS=$'\t' read -r vpa code account name _kind; do
  put "/v1/admin/vpas/$vpa" "{\"bank_code\":\"$code\",\"account\":\"$account\",\"name\":\"$name\"}"
  n=$((n + 1))
done <"$CHAOS_DIR/vpas.tsv"
rm -f "$CHAOS_DIR/last-admin-answer.json"

# The supervisors probe each endpoint: wait until both banks are UP before any load.
deadline=$(($(date +%s) + START_TIMEOUT))
until admin_curl "$SWITCH_URL/v1/ops/banks" 2>/dev/null | python3 -c '
import json, sys
banks = {b["code"]: b["health"] for b in json.load(sys.stdin)["banks"]}
sys.exit(0 if banks.get("HDFC") == "UP" and banks.get("ICICI") == "UP" else 1)'; do
  (($(date +%s) < deadline)) || die "the switch does not see both banks UP after ${START_TIMEOUT}s: $(admin_curl "$SWITCH_URL/v1/ops/banks")"
  sleep 0.3
done

up_ok=true
say "registered 2 banks and $n VPAs; both banks UP"
cat <<EOF
switch      $SWITCH_URL   (pid $(service_pid switch), log $CHAOS_LOGS/switch.log)
bank HDFC   $BANK_HDFC_URLS   (pid $(service_pid bank-hdfc), primary first)
bank ICICI  $BANK_ICICI_URLS   (pid $(service_pid bank-icici))
databases   $SWITCH_DB  $BANK_DB
VPAs        $n in $VPAS_FILE
seeded      $EXPECTED_TOTAL_PAISE paise (₹$(paise_to_rupees "$EXPECTED_TOTAL_PAISE")) across both banks
state       $CHAOS_DIR   (stop with: CHAOS_DIR=$CHAOS_DIR chaos/down.sh)
EOF
