#!/usr/bin/env bash
# kill -9 a switch node, restart it identically, wait until ready; see usage below.
set -euo pipefail
CHAOS_PROG=crash-switch.sh
# shellcheck source=chaos/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<USAGE
Usage: chaos/crash-switch.sh [DOWN_SECONDS] [NODE]

Kills a switch node with kill -9 (its whole process group: no graceful
shutdown, sagas die wherever they stood), keeps it down for DOWN_SECONDS
(default 2, decimals allowed), restarts it with exactly the command line and
environment it was started with (same port, same database), and waits until
its GET /readyz answers 200 (at most ${START_TIMEOUT}s). The restarted node
resumes every unfinished transaction from its checkpoints by itself.

NODE is the node's service name: switch (the default, the only one of a
one-node deployment), switch-2, … (up.sh --nodes N), or 'random': a random
node that runs and that no other fault script is working on, never the last
one running (if none qualifies, nothing is killed and the script says so).
With several nodes the script also measures the takeover: it polls
GET \$SWITCH_URL/v1/ops/nodes (through the balancer) until no PENDING saga is
owned by the killed node any more (the other nodes, or the restarted one,
claimed them when its lease ran out) and records how long after the kill that
was (at most 30 s).

If this script is interrupted while the node is down, it restarts the node
before it exits. Two fault scripts never work on one node at once (a lock in
\$CHAOS_DIR/run/NODE.lock). The deployment is the one recorded in \$CHAOS_DIR
(now $CHAOS_DIR).

Exit status: 0 killed and ready again (or, for 'random', nothing to kill);
1 the node was not running, was busy, or did not come back (the end of its
log is shown); 2 bad arguments.
USAGE
}

case ${1:-} in -h | --help) usage; exit 0 ;; esac
(($# <= 2)) || usage_error "expected at most DOWN_SECONDS and NODE"
down=2 node=switch
if (($# >= 1)) && is_seconds "$1"; then
  down=$1
  shift
fi
if (($# >= 1)); then
  node=$1
  shift
fi
(($# == 0)) || usage_error "DOWN_SECONDS must be a number of seconds (got '$1')"
load_deployment
read -r -a nodes <<<"$(node_names)"
if [[ $node != random ]] && ! node_url "$node" >/dev/null; then
  usage_error "unknown switch node '$node' (this deployment has: ${nodes[*]}, or random)"
fi
trap chaos_unlock_all EXIT

# 'random': a running node nobody else works on, never the last one running.
if [[ $node == random ]]; then
  node=""
  for candidate in $(shuf -e "${nodes[@]}"); do
    service_pid "$candidate" >/dev/null || continue
    chaos_lock "$candidate" || continue
    others=0
    for other in "${nodes[@]}"; do
      [[ $other == "$candidate" ]] && continue
      if service_pid "$other" >/dev/null && ! chaos_locked "$other"; then others=$((others + 1)); fi
    done
    if ((others >= 1 || ${#nodes[@]} == 1)); then
      node=$candidate
      break
    fi
    chaos_unlock_all
  done
  if [[ -z $node ]]; then
    chaos_event "skipped: no switch node can be killed now (each is down, busy with another fault, or the last one running)"
    exit 0
  fi
else
  chaos_lock "$node" || die "another fault script is working on $node (lock $CHAOS_RUN/$node.lock)"
fi
url=$(node_url "$node")
pid=$(service_pid "$node") || die "$node is not running (no live pid in $CHAOS_RUN/$node.pid)"

# Several nodes: who the node is (a restarted node is a new one) and how many
# sagas it holds, to time their takeover after the kill.
node_id="" held=0
if ((${#nodes[@]} > 1)); then
  if read -r node_id held < <(admin_curl --max-time 2 "$url/v1/ops/nodes" 2>/dev/null |
    python3 -c '
import json, sys
d = json.load(sys.stdin)
me = d["this_node"]
print(me, next((n.get("sagas", 0) for n in d["nodes"] if n["node_id"] == me), 0))' 2>/dev/null); then
    :
  else
    node_id="" held=0
  fi
fi

# Polls (every 0.2 s, at most 30 s) until no PENDING saga is owned by node_id.
takeover() {
  local started=$1 deadline left
  deadline=$(($(now_ms) + 30000))
  while (($(now_ms) < deadline)); do
    left=$(admin_curl --max-time 2 "$SWITCH_URL/v1/ops/nodes" 2>/dev/null |
      python3 -c '
import json, sys
d = json.load(sys.stdin)
print(sum(n.get("sagas", 0) for n in d["nodes"] if n["node_id"] == sys.argv[1]))' "$node_id" 2>/dev/null) || left=""
    if [[ $left == 0 ]]; then
      chaos_event "takeover: the killed $node ($held PENDING saga(s) at the kill) owns none any more $(since "$started")s after the kill"
      return 0
    fi
    sleep 0.2
  done
  chaos_event "takeover: the killed $node still owned ${left:-?} PENDING saga(s) 30s after the kill"
  return 0
}

restart() {
  local started new
  started=$(now_ms)
  new=$(spawn_service "$node")
  if wait_node "$node"; then
    chaos_event "restarted $node (pid $new); ready after $(since "$started")s"
    return 0
  fi
  chaos_event "FAILED: $node (pid $new) was not ready within ${START_TIMEOUT}s"
  return 1
}

killed_at=$(now_ms)
poller=""
if [[ -n $node_id ]]; then
  takeover "$killed_at" &
  poller=$!
fi
what=$node
((${#nodes[@]} > 1)) || what="the switch"
kill_pause_restart "$pid" "$what" "$down" restart
# Back: another fault script may take this node now.
chaos_unlock_all
if [[ -n $poller ]]; then wait "$poller" || true; fi
