#!/usr/bin/env bash
# Starts a local deployment for chaos runs (upi-switch rig up); see usage below.
set -euo pipefail
CHAOS_PROG=up.sh
# shellcheck source=chaos/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<EOF
Usage: chaos/up.sh [--nodes N] [--accounts N] [--frozen N] [--poor N] [--merchants N]
                   [--bank-latency MS] [--db-pool-size N] [-- SERVE_ARGS...]

Starts a local deployment and records it in \$CHAOS_DIR (now $CHAOS_DIR):
  - two fresh databases with random names on Postgres (\$CHAOS_PG, default
    postgres://postgres@127.0.0.1:5432): one for the switch, one for the banks' ledgers;
  - bank simulators HDFC (two endpoints: a primary and a secondary, one
    ledger) and ICICI, each seeded with N accounts ACC001.. of ₹1,00,000.00,
    of which the last --poor hold ₹1.00 and the --frozen before them are FROZEN;
  - the switch (upi-switch serve, --db-pool-size 16 unless told otherwise,
    without the per-payer daily limits (--daily-count-limit 0
    --daily-amount-limit 0: the load pays thousands of times from a few dozen
    VPAs) unless SERVE_ARGS set them; SERVE_ARGS after -- are added to its
    command line); with --nodes N, N
    switch nodes (switch, switch-2, …, each on a port of its own, one
    database, one Redis prefix) and HAProxy in front of them, round robin
    with /readyz health checks: SWITCH_URL is then the balancer's;
  - the banks and one VPA per account registered through the admin API:
    cust01@hdfc -> HDFC ACC001, …, cust01@icici -> ICICI ACC001, … (listed in
    \$CHAOS_DIR/vpas.txt, one per line, for loadgen --vpas), and --merchants
    more accounts per bank whose VPAs shop01@hdfc, … are registered as
    merchants with MCC 5411 (\$CHAOS_DIR/merchants.txt, for loadgen --merchants:
    P2M payments go to them).
Every process runs in a process group of its own; its pid and exact command
line are in \$CHAOS_DIR/run/, its log in \$CHAOS_DIR/logs/. deployment.env holds
the URLs, ports, database names and EXPECTED_TOTAL_PAISE (the seeded total).
Stop it all and drop the databases with chaos/down.sh. The work is done by
'upi-switch rig up' (the same rig the demo and the bench use); this script
checks its flags and hands them on.

Options:
  --nodes N          switch nodes, 1-16 (default 1); more than one needs HAProxy
                     (apt-get install haproxy)
  --accounts N       accounts (and VPAs) per bank, 2-999 (default 20)
  --frozen N         frozen accounts per bank: payments to them end REVERSED (default 2)
  --poor N           accounts with ₹1.00 per bank: payments from them end FAILED (default 2)
  --merchants N      merchant accounts per bank, 0-99 (default 2)
  --bank-latency MS  every bank request takes MS plus 0..MS ms of jitter (bank-sim
                     --latency-ms/--jitter-ms, so it survives restarts; default 0):
                     more sagas are in flight when something is killed
  --db-pool-size N   each switch node's Postgres pool (default 16; Postgres allows 100
                     in all: with several nodes, mind nodes x pool)
  -h, --help         this help

Environment: CHAOS_DIR, CHAOS_PG, UPI_SWITCH_BIN (default
\${CARGO_TARGET_DIR:-target}/release/upi-switch), RUST_LOG (default info).
Exit status: 0 up and registered; 1 it could not start (everything started is
stopped again and the databases dropped); 2 bad arguments.
EOF
}

accounts=20 frozen=2 poor=2 merchants=2 pool=16 latency=0 nodes=1 serve_args=()
while (($#)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --accounts | --frozen | --poor | --merchants | --db-pool-size | --bank-latency | --nodes)
      (($# >= 2)) || usage_error "$1 needs a number"
      is_uint "$2" || usage_error "$1 must be a whole number (got '$2')"
      case $1 in
        --accounts) accounts=$((10#$2)) ;;
        --frozen) frozen=$((10#$2)) ;;
        --poor) poor=$((10#$2)) ;;
        --merchants) merchants=$((10#$2)) ;;
        --db-pool-size) pool=$((10#$2)) ;;
        --bank-latency) latency=$((10#$2)) ;;
        --nodes) nodes=$((10#$2)) ;;
      esac
      shift 2
      ;;
    --) shift; serve_args=("$@"); break ;;
    *) usage_error "unknown argument '$1'" ;;
  esac
done
((accounts >= 2 && accounts <= 999)) || usage_error "--accounts must be 2-999"
((frozen + poor <= accounts - 2)) || usage_error "--frozen + --poor must leave at least two ordinary accounts"
((merchants <= 99)) || usage_error "--merchants must be 0-99"
((pool >= 1)) || usage_error "--db-pool-size must be at least 1"
((latency <= 10000)) || usage_error "--bank-latency must be at most 10000 ms"
((nodes >= 1 && nodes <= 16)) || usage_error "--nodes must be 1-16"

BIN=$(chaos_bin)
if [[ -f $CHAOS_ENV ]]; then
  die "a deployment is already recorded in $CHAOS_DIR: stop it with chaos/down.sh first (or use another CHAOS_DIR)"
fi
mkdir -p "$CHAOS_DIR"
# The rig lives in the binary (src/rig/): it writes the state this directory's
# scripts read, and on a failure or Ctrl-C stops what it started and drops the
# databases itself.
# --nodes only when asked for: a binary of an earlier build (UPI_SWITCH_BIN) knows no such flag.
node_args=()
((nodes > 1)) && node_args=(--nodes "$nodes")
exec "$BIN" rig up --dir "$CHAOS_DIR" --prog "$CHAOS_PROG" --pg "${CHAOS_PG:-postgres://postgres@127.0.0.1:5432}" \
  --db-prefix upi_chaos --accounts "$accounts" --frozen "$frozen" --poor "$poor" --merchants "$merchants" \
  --bank-latency "$latency" --db-pool-size "$pool" "${node_args[@]}" --rust-log "${RUST_LOG:-info}" \
  -- "${serve_args[@]}"
