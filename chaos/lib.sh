# shellcheck shell=bash
# Helpers shared by the chaos scripts; sourced, never run.
#
# State of one local deployment lives in $CHAOS_DIR (default /tmp/upi-chaos):
#   deployment.env      ports, URLs, database names, the seeded total (KEY=value, shell-quoted)
#   run/NAME.cmd        the exact command line of a service (NUL-separated): restarts reuse it
#   run/NAME.pid        its pid; it runs in a session of its own, so pid = process group id
#   logs/NAME.log       its stdout and stderr, appended across restarts
#   events.log          what the fault scripts did: "<epoch ms><TAB><script><TAB><what>"
#   run/NAME.lock/      held by a fault script while it kills and restarts NAME
#   haproxy.cfg         the balancer's configuration (several switch nodes only)
# Services: switch, bank-hdfc, bank-icici (and loadgen while run.sh runs); with
# up.sh --nodes N also switch-2 … switch-N and haproxy in front of them
# (SWITCH_URL is then the balancer's; SWITCH_NODE_NAMES and SWITCH_NODE_URLS
# name each node and its own URL).

CHAOS_HOME=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$CHAOS_HOME/.." && pwd)
# Points every path at state directory DIR.
set_chaos_dir() {
  CHAOS_DIR=$1
  [[ $CHAOS_DIR == /* ]] || CHAOS_DIR=$PWD/$CHAOS_DIR # restarts may run from another directory
  CHAOS_RUN=$CHAOS_DIR/run
  CHAOS_LOGS=$CHAOS_DIR/logs
  CHAOS_ENV=$CHAOS_DIR/deployment.env
  CHAOS_EVENTS=$CHAOS_DIR/events.log
}
set_chaos_dir "${CHAOS_DIR:-/tmp/upi-chaos}"
CHAOS_PROG=${CHAOS_PROG:-$(basename "$0")}
# Bounded waits, in seconds.
START_TIMEOUT=${CHAOS_START_TIMEOUT:-60}
STOP_TIMEOUT=${CHAOS_STOP_TIMEOUT:-10}

say() { printf '%s: %s\n' "$CHAOS_PROG" "$*" >&2; }
die() {
  say "$*"
  exit "${CHAOS_DIE_CODE:-1}"
}
# A wrong command line: say what is wrong and how to get help, exit 2.
usage_error() {
  say "$*"
  printf "Try '%s --help'.\n" "$CHAOS_PROG" >&2
  exit 2
}

now_ms() { date +%s%3N; }

# Records what a fault script did, with the time, for run.sh's summary.
chaos_event() {
  mkdir -p "$CHAOS_DIR"
  printf '%s\t%s\t%s\n' "$(now_ms)" "$CHAOS_PROG" "$*" >>"$CHAOS_EVENTS"
  say "$*"
}

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
is_rate() { [[ $1 =~ ^(0(\.[0-9]+)?|1(\.0+)?|\.[0-9]+)$ ]]; }

# The upi-switch binary: $UPI_SWITCH_BIN, else ${CARGO_TARGET_DIR:-target}/release/upi-switch
# (relative paths are taken from the repository root).
chaos_bin() {
  local bin=${UPI_SWITCH_BIN:-${CARGO_TARGET_DIR:-target}/release/upi-switch}
  [[ $bin == /* ]] || bin=$REPO_ROOT/$bin
  if [[ ! -x $bin ]]; then
    say "no upi-switch binary at $bin"
    say "build it with 'cargo build --release' in $REPO_ROOT (with the same CARGO_TARGET_DIR), or set UPI_SWITCH_BIN"
    exit 1
  fi
  printf '%s\n' "$bin"
}

need_tools() {
  local t
  for t in "$@"; do
    command -v "$t" >/dev/null 2>&1 || die "this script needs '$t' on PATH"
  done
}

# Loads deployment.env, or says that nothing is up.
load_deployment() {
  [[ -f $CHAOS_ENV ]] || die "no deployment recorded in $CHAOS_DIR (start one with chaos/up.sh, or set CHAOS_DIR)"
  # shellcheck source=/dev/null
  source "$CHAOS_ENV"
}

# N distinct free TCP ports on 127.0.0.1 (all bound at once, then released).
free_ports() {
  python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# True when pid is a live process (not a zombie).
pid_alive() {
  local state
  state=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [[ -n $state && $state != Z* ]]
}

# Pids of the processes whose command line is exactly the one recorded for
# NAME: its pid file's process and any other copy (say, one a killed script
# had started but not yet recorded). Ports and database names are fresh per
# deployment, so an exact match is one of ours.
service_pids() {
  [[ -f $CHAOS_RUN/$1.cmd ]] || return 0
  python3 - "$CHAOS_RUN/$1.cmd" <<'EOF'
import os, sys
want = open(sys.argv[1], "rb").read()
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        if open(f"/proc/{pid}/cmdline", "rb").read() != want:
            continue
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        continue
    if state != "Z":
        print(pid)
EOF
}

# The recorded pid of NAME if that process runs the recorded command line, else status 1.
service_pid() {
  local name=$1 pid
  [[ -f $CHAOS_RUN/$name.pid && -f $CHAOS_RUN/$name.cmd ]] || return 1
  pid=$(<"$CHAOS_RUN/$name.pid")
  is_uint "$pid" && pid_alive "$pid" || return 1
  # Through a pipe: cmp would take /proc's size of 0 for a difference.
  cat "/proc/$pid/cmdline" 2>/dev/null | cmp -s - "$CHAOS_RUN/$name.cmd" || return 1
  printf '%s\n' "$pid"
}

# Starts NAME from its recorded command line and environment, in a session
# (and process group) of its own, output appended to its log; records its pid.
spawn_service() {
  local name=$1 pid argv=() envs=()
  mapfile -d '' -t argv <"$CHAOS_RUN/$name.cmd"
  mapfile -d '' -t envs <"$CHAOS_RUN/$name.env"
  mkdir -p "$CHAOS_LOGS"
  printf '=== %s started by %s\n' "$(date -u +%FT%T.%3NZ)" "$CHAOS_PROG" >>"$CHAOS_LOGS/$name.log"
  # Not a process group leader here (no job control), so setsid does not fork: $! is the service.
  setsid env -i "${envs[@]}" "${argv[@]}" >>"$CHAOS_LOGS/$name.log" 2>&1 </dev/null &
  pid=$!
  printf '%s\n' "$pid" >"$CHAOS_RUN/$name.pid"
  local tries=0
  until [[ $(ps -o pgid= -p "$pid" 2>/dev/null | tr -d ' ') == "$pid" ]]; do
    tries=$((tries + 1))
    if ((tries > 50)) || ! pid_alive "$pid"; then
      say "warning: $name (pid $pid) did not become the leader of its own process group"
      break
    fi
    sleep 0.02
  done
  printf '%s\n' "$pid"
}

# Records NAME's command line (the arguments after NAME) with a small fixed
# environment (so a restart from another shell is identical), and starts it.
start_service() {
  local name=$1
  shift
  mkdir -p "$CHAOS_RUN"
  printf '%s\0' "$@" >"$CHAOS_RUN/$name.cmd"
  printf '%s\0' "PATH=$PATH" "NO_COLOR=1" "RUST_BACKTRACE=1" "RUST_LOG=${RUST_LOG:-info}" \
    >"$CHAOS_RUN/$name.env"
  spawn_service "$name"
}

# Signals NAME's process group (and any stray copy): SIGNAL is TERM (then KILL
# after $STOP_TIMEOUT s) or KILL. Waits until they are gone. Returns 1 if none ran.
stop_service() {
  local name=$1 signal=${2:-TERM} pids pid waited=0
  pids=$(service_pids "$name")
  [[ -n $pids ]] || return 1
  for pid in $pids; do
    kill "-$signal" -- "-$pid" 2>/dev/null || kill "-$signal" "$pid" 2>/dev/null || true
  done
  while :; do
    local left=""
    for pid in $pids; do pid_alive "$pid" && left="$left $pid"; done
    [[ -z $left ]] && break
    if ((waited >= STOP_TIMEOUT * 10)); then
      [[ $signal == KILL ]] && {
        say "$name: pid(s)$left still alive after kill -9"
        return 0
      }
      say "$name: pid(s)$left did not stop on SIG$signal within ${STOP_TIMEOUT}s; kill -9"
      for pid in $left; do kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true; done
      signal=KILL
      waited=0
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  rm -f "$CHAOS_RUN/$name.pid"
  return 0
}

# The last lines of NAME's log, indented, for error messages.
log_tail() {
  local log=$CHAOS_LOGS/$1.log
  [[ -f $log ]] && tail -n "${2:-15}" "$log" | sed 's/^/    | /' >&2
  return 0
}

# Waits (at most TIMEOUT s) until URL answers 2xx, failing early if NAME's
# process dies. Every request has its own deadline.
wait_http() {
  local name=$1 url=$2 timeout=${3:-$START_TIMEOUT} deadline
  deadline=$(($(date +%s) + timeout))
  while :; do
    if curl -fsS --noproxy '*' --max-time 2 -o /dev/null "$url" 2>/dev/null; then
      return 0
    fi
    if ! pid_alive "$(cat "$CHAOS_RUN/$name.pid" 2>/dev/null || echo none)"; then
      say "$name exited before $url answered; the end of its log ($CHAOS_LOGS/$name.log):"
      log_tail "$name"
      return 1
    fi
    if (($(date +%s) >= deadline)); then
      say "$url did not answer 2xx within ${timeout}s; the end of $name's log ($CHAOS_LOGS/$name.log):"
      log_tail "$name"
      return 1
    fi
    sleep 0.2
  done
}

# Service name of a bank code: HDFC -> bank-hdfc.
bank_service() { printf 'bank-%s\n' "${1,,}"; }

# The endpoint URLs of a bank (primary first), from deployment.env.
bank_urls() {
  local var="BANK_${1^^}_URLS"
  [[ -n ${!var:-} ]] || return 1
  printf '%s\n' "${!var}"
}

# Waits until every endpoint of bank CODE answers /v1/health.
wait_bank() {
  local code=$1 timeout=${2:-$START_TIMEOUT} url
  for url in $(bank_urls "$code"); do
    wait_http "$(bank_service "$code")" "$url/v1/health" "$timeout" || return 1
  done
}

# The switch nodes' service names, space-separated: "switch" alone, or
# "switch switch-2 …" (deployment.env of an earlier build names none: one).
node_names() { printf '%s\n' "${SWITCH_NODE_NAMES:-switch}"; }

# The own URL of switch node NAME (not the balancer's); status 1 if no such node.
node_url() {
  local want=$1 names urls i
  read -r -a names <<<"${SWITCH_NODE_NAMES:-switch}"
  read -r -a urls <<<"${SWITCH_NODE_URLS:-$SWITCH_URL}"
  for i in "${!names[@]}"; do
    if [[ ${names[i]} == "$want" && -n ${urls[i]:-} ]]; then
      printf '%s\n' "${urls[i]}"
      return 0
    fi
  done
  return 1
}

# Waits until switch node NAME answers /readyz on its own port.
wait_node() {
  local name=$1 url
  url=$(node_url "$name") || { say "no switch node '$name' in this deployment"; return 1; }
  wait_http "$name" "$url/readyz" "${2:-$START_TIMEOUT}"
}

# Waits until the (first) switch node answers /readyz.
wait_switch() {
  wait_node switch "${1:-$START_TIMEOUT}"
}

# Fault locks: a fault script holds run/NAME.lock while it works on NAME, so
# that two scripts never kill or restart the same service at once. A lock
# whose holder has died is taken over. chaos_lock NAME: status 1 if held.
CHAOS_LOCKS=()
chaos_lock() {
  local dir=$CHAOS_RUN/$1.lock holder
  mkdir -p "$CHAOS_RUN"
  if ! mkdir "$dir" 2>/dev/null; then
    holder=$(cat "$dir/pid" 2>/dev/null || true)
    # No pid yet: its holder is writing it.
    if [[ -z $holder ]] || pid_alive "$holder"; then return 1; fi
    rm -rf "$dir"
    mkdir "$dir" 2>/dev/null || return 1
  fi
  printf '%s\n' "$$" >"$dir/pid"
  CHAOS_LOCKS+=("$dir")
}
# True when some fault script holds NAME's lock.
chaos_locked() {
  local holder
  [[ -d $CHAOS_RUN/$1.lock ]] || return 1
  holder=$(cat "$CHAOS_RUN/$1.lock/pid" 2>/dev/null || true)
  [[ -z $holder ]] || pid_alive "$holder"
}
chaos_unlock_all() {
  local dir
  for dir in "${CHAOS_LOCKS[@]}"; do rm -rf "$dir"; done
  CHAOS_LOCKS=()
  return 0
}

# curl for the switch's admin API: JSON body, the admin token if one is set.
admin_curl() {
  local auth=()
  [[ -n ${ADMIN_TOKEN:-} ]] && auth=(-H "Authorization: Bearer $ADMIN_TOKEN")
  curl -sS --noproxy '*' --max-time 10 -H 'content-type: application/json' "${auth[@]}" "$@"
}

# A rupee amount for people: 123456 -> 1234.56
paise_to_rupees() { printf '%d.%02d' $(($1 / 100)) $(($1 % 100)); }

is_seconds() { [[ $1 =~ ^[0-9]+(\.[0-9]+)?$ ]]; }

# sleep that a trapped signal interrupts at once (a foreground sleep would
# delay the trap until it ends); the EXIT traps end a nap left running.
NAP_PID=
nap() {
  sleep "$1" &
  NAP_PID=$!
  wait "$NAP_PID" || true
  NAP_PID=
}
end_nap() {
  if [[ -n $NAP_PID ]]; then kill "$NAP_PID" 2>/dev/null || true; fi
  return 0
}

# Seconds since START_MS (epoch ms), one decimal.
since() {
  local d=$(($(now_ms) - $1))
  printf '%d.%d\n' $((d / 1000)) $((d % 1000 / 100))
}

# The bank code as recorded (HDFC), from any case; exits 2 if unknown.
bank_code_arg() {
  local want=${1^^} code
  for code in $BANKS; do
    if [[ $code == "$want" ]]; then
      printf '%s\n' "$code"
      return 0
    fi
  done
  usage_error "unknown bank '$1' (this deployment has: $BANKS)"
}

# kill9_group PID WHAT: kill -9 the process group led by PID (else PID alone)
# and wait up to 5 s for it to be gone; dies if it survives.
kill9_group() {
  local pid=$1 what=$2
  kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid"
  for _ in $(seq 1 100); do
    pid_alive "$pid" || break
    sleep 0.05
  done
  if pid_alive "$pid"; then
    die "pid $pid of $what survived kill -9"
  fi
}

# kill_pause_restart PID WHAT DOWN_SECONDS RESTART_FN: kill -9 WHAT, keep it
# down for DOWN_SECONDS, then call RESTART_FN. If the script is interrupted
# while WHAT is down, RESTART_FN still runs (from the EXIT trap).
kill_pause_restart() {
  local pid=$1 what=$2 down=$3
  CHAOS_DOWN_WHAT=$what
  CHAOS_RESTART_FN=$4
  CHAOS_KILLED=true
  trap _chaos_restart_on_exit EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  kill9_group "$pid" "$what"
  chaos_event "killed $what (kill -9 pid $pid); down for ${down}s"
  nap "$down"
  CHAOS_KILLED=false
  "$CHAOS_RESTART_FN"
}

_chaos_restart_on_exit() {
  local status=$?
  end_nap
  if ${CHAOS_KILLED:-false}; then
    say "interrupted while $CHAOS_DOWN_WHAT was down: restarting it"
    CHAOS_KILLED=false
    "$CHAOS_RESTART_FN" || status=1
  fi
  chaos_unlock_all
  exit "$status"
}
