#!/usr/bin/env bash
# Sets up N national nodes (default 3) on this machine in DIR (default ./attrib-local), each
# with its own directory, ports and key files, and a shared roster; prints how to run them.
# Usage: deploy/local-network.sh [N] [DIR]
# Environment: ATTRIB (the attrib command; default: `attrib` if it is on PATH, else built from
# this repository), BASE_PORT (default 4710: node i listens on BASE_PORT+10i and serves its API
# on the port after). DIR must not hold nodes yet (remove it to start over).
set -euo pipefail
n="${1:-3}"
dir="${2:-./attrib-local}"
if command -v attrib >/dev/null; then default_attrib=attrib; else default_attrib="cargo run -q --release -p attrib-cli --"; fi
attrib="${ATTRIB:-$default_attrib}"
base="${BASE_PORT:-4710}"
codes=(FRA DEU RUS USA GBR CHN IND BRA JPN ZAF)
names=(France Germany Russia "United States" "United Kingdom" China India Brazil Japan "South Africa")
mkdir -p "$dir"
entries=()
for i in $(seq 0 $((n - 1))); do
  code="${codes[$i]}"
  lower="$(echo "$code" | tr 'A-Z' 'a-z')"
  $attrib init --state "$code" --name "${names[$i]}" --dir "$dir/$lower" \
    --listen "/ip4/127.0.0.1/tcp/$((base + 10 * i))" \
    --api-listen "127.0.0.1:$((base + 1 + 10 * i))" >/dev/null
  entries+=("$dir/$lower/roster-entry.toml")
done
$attrib roster build --network attrib-local --out "$dir/roster.toml" "${entries[@]}"
for i in $(seq 0 $((n - 1))); do
  lower="$(echo "${codes[$i]}" | tr 'A-Z' 'a-z')"
  cp "$dir/roster.toml" "$dir/$lower/roster.toml"
  # Each node dials every node listed before it (and redials it whenever it is not connected,
  # also after that node restarts): every pair is linked once, so losing any one node leaves
  # the others connected.
  peers=()
  for j in $(seq 0 $((i - 1))); do
    peers+=("\"/ip4/127.0.0.1/tcp/$((base + 10 * j))\"")
  done
  list="$(IFS=,; echo "${peers[*]}")"
  sed -i "s|^bootstrap = \[\]|bootstrap = [$list]|" "$dir/$lower/node.toml"
  echo "run:    $attrib node run --config $dir/$lower/node.toml"
done
echo "submit: $attrib --config $dir/fra/node.toml claim submit --title 'Grid outage' --state RUS --confidence 70"
