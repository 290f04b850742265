#!/usr/bin/env bash
# Schemathesis against a running switch: the rig's deployment (two bank
# simulators, the switch with auth on), the switch's own /openapi.json as
# the schema, the operator token on every call, and sign_proxy.py in front
# so that client calls are signed as real clients sign them. Fails on any
# 5xx, any status code the document does not list for the operation, any
# answer whose content type, headers or body break the document.
#
#   .ci/schemathesis/run.sh [--max-examples N]     (default 25)
#
# UPI_SWITCH_BIN: the binary (default: $CARGO_TARGET_DIR/debug/upi-switch).
# SCHEMATHESIS_VENV: where schemathesis is installed from PyPI
# (requirements.txt, pinned; default /var/tmp/upi-schemathesis-venv).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
max_examples=25
while (($#)); do
  case $1 in
    --max-examples) max_examples=$2; shift 2 ;;
    *) echo "usage: $0 [--max-examples N]" >&2; exit 2 ;;
  esac
done
bin=${UPI_SWITCH_BIN:-${CARGO_TARGET_DIR:-target}/debug/upi-switch}
venv=${SCHEMATHESIS_VENV:-/var/tmp/upi-schemathesis-venv}

if ! "$venv/bin/python" -m pip freeze 2>/dev/null | grep -qxF -f "$here/requirements.txt" ||
   [[ $("$venv/bin/python" -m pip freeze 2>/dev/null | grep -cxF -f "$here/requirements.txt") -ne $(grep -c . "$here/requirements.txt") ]]; then
  echo "schemathesis: installing $(tr '\n' ' ' <"$here/requirements.txt")into $venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
fi

dir=$(mktemp -d /tmp/upi-schemathesis.XXXXXX)
proxy=
cleanup() {
  [[ -n $proxy ]] && kill "$proxy" 2>/dev/null || true
  "$bin" rig down --dir "$dir" >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT
"$bin" rig up --dir "$dir" --accounts 4 --frozen 1 --poor 1 --merchants 1 --rust-log warn >"$dir/rig.log" 2>&1 ||
  { cat "$dir/rig.log"; exit 1; }
# shellcheck disable=SC1091
source "$dir/deployment.env"

"$venv/bin/python" "$here/sign_proxy.py" "$SWITCH_URL" "$CLIENT_KEY_FILE" "$dir/proxy.port" &
proxy=$!
for _ in $(seq 50); do [[ -s $dir/proxy.port ]] && break; sleep 0.1; done
port=$(cat "$dir/proxy.port")

rc=0
"$venv/bin/schemathesis" run "http://127.0.0.1:$port/openapi.json" \
  --header "Authorization: Bearer $ADMIN_TOKEN" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
  --phases examples,coverage,fuzzing \
  --max-examples "$max_examples" \
  --request-timeout 60 \
  --seed 1 \
  --no-color || rc=$?
if ((rc != 0)); then
  echo "schemathesis: failed ($rc); the switch's log ends:"
  tail -n 40 "$dir"/logs/switch.log || true
fi
exit "$rc"
