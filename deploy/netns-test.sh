#!/usr/bin/env bash
# Three national nodes on three separate network hosts (Linux network namespaces joined by veth
# pairs to a bridge), exercising real TCP between hosts: a claim crosses hosts, then host 3 is cut
# off (link down) while both sides publish, the link comes back, and both sides converge.
#
# Needs root and iproute2. Usage (from the repository root):
#   cargo build -p attrib-cli && sudo deploy/netns-test.sh [path/to/attrib]
set -euo pipefail
attrib="$(realpath "${1:-target/debug/attrib}")"
work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for i in 1 2 3; do ip netns del "attrib$i" 2>/dev/null || true; done
  ip link del attrib-br 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

ip link add attrib-br type bridge
ip link set attrib-br up
for i in 1 2 3; do
  ip netns add "attrib$i"
  ip link add "attrib-h$i" type veth peer name eth0 netns "attrib$i"
  ip link set "attrib-h$i" master attrib-br up
  ip -n "attrib$i" addr add "10.77.0.$i/24" dev eth0
  ip -n "attrib$i" link set eth0 up
  ip -n "attrib$i" link set lo up
done

codes=(FRA DEU RUS)
entries=()
for i in 1 2 3; do
  code="${codes[$((i - 1))]}"
  "$attrib" init --state "$code" --dir "$work/n$i" --listen "/ip4/10.77.0.$i/tcp/4710" \
    --api-listen 127.0.0.1:4711 >/dev/null
  entries+=("$work/n$i/roster-entry.toml")
done
"$attrib" roster build --network netns-test --out "$work/roster.toml" "${entries[@]}" >/dev/null
for i in 1 2 3; do
  cp "$work/roster.toml" "$work/n$i/"
  sed -i 's|^bootstrap = \[\]|bootstrap = ["/ip4/10.77.0.1/tcp/4710", "/ip4/10.77.0.2/tcp/4710"]\nsync_interval_ms = 1000|' "$work/n$i/node.toml"
  ip netns exec "attrib$i" "$attrib" node run --config "$work/n$i/node.toml" 2>"$work/n$i.log" &
  pids+=($!)
done

on() { local i=$1; shift; ip netns exec "attrib$i" "$attrib" --config "$work/n$i/node.toml" "$@"; }
# Waits (up to 30 s) until command "$@" succeeds.
until_ok() {
  local deadline=$((SECONDS + 30))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then echo "FAILED waiting for: $*" >&2; exit 1; fi
    sleep 0.2
  done
}
has_record() { on "$1" show "$2" --json >/dev/null 2>&1; }
peers_at_least() { [ "$(on "$1" status --json | grep -o '"subscribed":true' | wc -l)" -ge "$2" ]; }

for i in 1 2 3; do until_ok peers_at_least "$i" 2; done
id=$(on 1 claim submit --title "Cross-host claim" --state RUS --confidence 70)
until_ok has_record 3 "$id"
echo "ok: claim $id from host 1 reached host 3"

ip link set attrib-h3 down
left=$(on 1 claim submit --title "During partition, host 1" --state RUS --confidence 60)
right=$(on 3 rebut "$id" --stance deny --statement "Denied, said during the partition")
sleep 1
if has_record 3 "$left" || has_record 1 "$right"; then echo "FAILED: partition leaked" >&2; exit 1; fi
ip link set attrib-h3 up
until_ok has_record 3 "$left"
until_ok has_record 1 "$right"
until_ok has_record 2 "$right"
echo "ok: after the partition healed, hosts 1, 2 and 3 hold both sides' records"
