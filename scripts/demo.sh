#!/usr/bin/env bash
# make demo: an outage drill you can watch. A newsroom publishes docs/example-site, three mirrors
# copy it, the newsroom's host goes down, a reader still gets the site from the mirrors, and the
# newsroom (from another machine, with a copy of its key) posts a critical notice that reaches the
# reader in well under a second. Everything runs on 127.0.0.1 in a private swarm; it never
# touches the internet. Cleans up on exit and on Ctrl-C.
#
#   scripts/demo.sh [OUTLAST_BINARY] [--no-wait]
set -euo pipefail

bin=${1:-build/cli/outlast}
wait_at_end=1
for a in "$@"; do [[ $a == --no-wait ]] && wait_at_end=0; done
[[ -t 0 ]] || wait_at_end=0
[[ -x $bin ]] || { echo "demo: $bin not found; run 'make build' first" >&2; exit 1; }
here=$(cd "$(dirname "$0")/.." && pwd)
site="$here/docs/example-site"

work=$(mktemp -d "${TMPDIR:-/tmp}/outlast-demo.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'echo; echo "demo: interrupted, cleaning up"; exit 130' INT TERM

bold=$(tput bold 2>/dev/null || true); plain=$(tput sgr0 2>/dev/null || true)
step() { echo; echo "${bold}== $*${plain}"; }
say() { echo "   $*"; }
flags=(--local-swarm --no-upnp --no-natpmp --no-lsd --listen 127.0.0.1:0 --poll-interval 5 --log-level warning)

# start NAME [node flags...]: starts a node in $work/NAME and waits until it listens.
start() {
  local name=$1; shift
  "$bin" --home "$work/$name" node "${flags[@]}" "$@" 2>"$work/$name.log" &
  pids+=($!)
  eval "pid_$name=$!"
  for _ in $(seq 1 200); do
    if st=$("$bin" --home "$work/$name" status --json 2>/dev/null) &&
       ep=$(printf '%s' "$st" | python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["listen"][0] if j["listen"] and j["dht_running"] else "")') &&
       [[ -n $ep ]]; then
      eval "ep_$name=$ep"
      return 0
    fi
    sleep 0.1
  done
  echo "demo: node $name did not start:"; cat "$work/$name.log"; exit 1
}
stop() { local p; p=$(eval echo "\$pid_$1"); kill "$p"; wait "$p" 2>/dev/null || true; }
# wait_complete NAME: until NAME holds a complete copy of the site.
wait_complete() {
  for _ in $(seq 1 600); do
    if "$bin" --home "$work/$1" sites --json | python3 -c 'import json,sys; sys.exit(0 if any(s["complete"] for s in json.load(sys.stdin)) else 1)'; then return 0; fi
    sleep 0.1
  done
  echo "demo: $1 did not get the site"; exit 1
}

step "1. The newsroom publishes its site"
start newsroom --bootstrap none --gateway off
address=$("$bin" --home "$work/newsroom" publish "$site" --site courier --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["address"])')
key=${address%%/*}
say "signed and published as $address"

step "2. Three volunteers mirror it"
for m in mirror1 mirror2 mirror3; do
  start "$m" --bootstrap "$ep_newsroom" --peer "$ep_newsroom" --gateway off
  "$bin" --home "$work/$m" follow "$address" >/dev/null
done
for m in mirror1 mirror2 mirror3; do wait_complete "$m"; say "$m holds a verified copy and seeds it"; done

step "3. The newsroom's host goes down"
stop newsroom
say "the publisher is gone: no server, no DHT node, nothing to fetch from"

step "4. A reader follows the site, knowing only the mirrors"
start reader --bootstrap "$ep_mirror1,$ep_mirror2" --peer "$ep_mirror1" --peer "$ep_mirror2" --gateway 127.0.0.1:0
t0=$(date +%s.%N)
"$bin" --home "$work/reader" follow "$address" >/dev/null
wait_complete reader
gw=$("$bin" --home "$work/reader" status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["gateway"])')
port=${gw##*:}
url="http://courier.$key.localhost:$port/"
say "the reader has the whole site after $(python3 -c "print(f'{$(date +%s.%N) - $t0:.1f}')") s, checked against the newsroom's key"
title=
for _ in $(seq 1 50); do
  title=$(curl -s --resolve "courier.$key.localhost:$port:127.0.0.1" "$url" | sed -n 's:.*<title>\(.*\)</title>.*:\1:p' || true)
  [[ -n $title ]] && break
  sleep 0.1
done
[[ -n $title ]] || { echo "demo: the reader's gateway does not serve the site"; cat "$work/reader.log"; exit 1; }
say "its gateway serves it: $url  (title: \"$title\")"

step "5. From another machine, the newsroom posts a critical notice"
"$bin" --home "$work/laptop" init >/dev/null
"$bin" --home "$work/newsroom" key export default "$work/newsroom.key" >/dev/null 2>&1
"$bin" --home "$work/laptop" key import "$work/newsroom.key" --name newsroom >/dev/null
start laptop --bootstrap "$ep_mirror3" --peer "$ep_mirror3" --gateway off
say "a laptop with a copy of the newsroom's key joins, knowing one mirror"
sent=$(date +%s%3N)
"$bin" --home "$work/laptop" notice post "Our host is down. Read us through any Outlast mirror; updates follow here." \
  --key newsroom --severity critical >/dev/null
for _ in $(seq 1 300); do
  if "$bin" --home "$work/reader" notices --json | python3 -c 'import json,sys; sys.exit(0 if any(n["severity"]=="critical" for n in json.load(sys.stdin)) else 1)'; then
    break
  fi
  sleep 0.05
done
got=$("$bin" --home "$work/reader" notices --json | python3 -c 'import json,sys; l=json.load(sys.stdin); print(len(l))')
[[ $got -ge 1 ]] || { echo "demo: the notice did not arrive"; exit 1; }
arrived=$(curl -s --unix-socket "$work/reader/control.sock" "http://node/v1/records?key=$key" |
          python3 -c 'import json,sys; print(next((r.get("received_ms",0) for r in json.load(sys.stdin) if r["salt"]==".notice"),0))')
say "the reader has it $((arrived - sent)) ms after it was posted (push through mirror3; the DHT is the fallback):"
"$bin" --home "$work/reader" notices | sed 's/^/     /'
say "also on the reader's dashboard http://127.0.0.1:$port/ and in its feed http://127.0.0.1:$port/notices.atom"

step "Done"
if (( wait_at_end )); then
  say "the reader keeps serving $url"
  read -r -p "   press Enter to stop everything and clean up " _ || true
fi
