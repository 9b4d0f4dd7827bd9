#!/usr/bin/env bash
# bench_gateway: the gateway beside nginx serving the same files from the same directory,
# both measured with wrk in the same run: requests/s for a 20 KB file, MB/s for a 600 MB file,
# with 1 and 64 connections, and p50/p99 latency. Median of RUNS runs of DUR seconds.
#
#   bench/bench_gateway.sh [OUTLAST_BINARY]      (RUNS=3 DUR=5 LARGE_MB=600 by default)
set -euo pipefail
outlast=${1:-build-release/cli/outlast}
runs=${RUNS:-3}
dur=${DUR:-5}
large_mb=${LARGE_MB:-600}
for tool in wrk nginx; do
  command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || { echo "bench_gateway: $tool is missing (scripts/install-deps.sh --bench)" >&2; exit 2; }
done

# Cores: the server under test runs on the first half of the machine's cores and wrk on the rest,
# so the load generator never takes CPU from the server it is measuring (on two cores: one each).
# Both servers get the same cores and as many workers: nginx worker_processes, Outlast
# --gateway-threads. PIN=0 lets everything share every core, each server with its default worker
# count (the tail latencies then measure how the scheduler interleaves wrk with the server more
# than the server itself; docs/performance.md).
ncpu=$(nproc)
if [ "${PIN:-1}" = 1 ] && [ "$ncpu" -ge 2 ]; then
  half=$((ncpu / 2))
  server_cores=$half
  client_cores=$((ncpu - half))
  on_server="taskset -c 0-$((half - 1))"
  on_client="taskset -c $half-$((ncpu - 1))"
  placement="servers on cores 0-$((half - 1)), wrk on cores $half-$((ncpu - 1))"
else
  server_cores=""
  client_cores=$ncpu
  on_server=""
  on_client=""
  placement="servers and wrk sharing all $ncpu cores, default worker counts"
fi
gateway_threads=${server_cores:+--gateway-threads $server_cores}
[ "$client_cores" -gt 2 ] && client_cores=2  # wrk threads: two were always enough here

work=$(mktemp -d)
node_pid=""
nginx_pid=""
cleanup() {
  [ -n "$nginx_pid" ] && kill "$nginx_pid" 2>/dev/null || true
  [ -n "$node_pid" ] && kill "$node_pid" 2>/dev/null && wait "$node_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

mkdir -p "$work/site"
head -c 20480 /dev/urandom >"$work/site/small.bin"
head -c $((large_mb * 1024 * 1024)) /dev/zero | openssl enc -aes-128-ctr -pass pass:bench -nosalt 2>/dev/null >"$work/site/large.bin"
touch "$work/site/index.html"

$on_server "$outlast" --home "$work/home" node --listen 127.0.0.1:0 --bootstrap none --local-swarm --no-upnp --no-natpmp --no-lsd \
  --gateway 127.0.0.1:0 $gateway_threads 2>"$work/node.log" &
node_pid=$!
for _ in $(seq 100); do
  "$outlast" --home "$work/home" status --json >"$work/status.json" 2>/dev/null && grep -q '"gateway":"' "$work/status.json" && break
  sleep 0.1
done
address=$("$outlast" --home "$work/home" publish "$work/site" --site bench --json | sed -n 's/.*"address":"\([^"]*\)".*/\1/p')
gw=$(sed -n 's/.*"gateway":"\([^"]*\)".*/\1/p' "$work/status.json")
gport=${gw##*:}
key=${address%%/*}
root="$work/home/sites/$key/bench/1/bench"

nport=$((20000 + RANDOM % 20000))
# nginx's workers must read the node's private home: as root, run them as root.
user_line=""
[ "$(id -u)" = 0 ] && user_line="user root;"
cat >"$work/nginx.conf" <<CONF
$user_line
worker_processes ${server_cores:-auto};
pid $work/nginx.pid;
error_log $work/nginx.err;
daemon off;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 100000;
  client_body_temp_path $work/nginx-tmp;
  server { listen 127.0.0.1:$nport; root $root; }
}
CONF
$on_server nginx -c "$work/nginx.conf" &
nginx_pid=$!
sleep 0.5

# prints: requests/s MB/s p50_ms p99_ms
measure() {
  local conns=$1 url=$2 host=$3 threads=1
  [ "$conns" -gt 1 ] && threads=$client_cores
  $on_client wrk -t"$threads" -c"$conns" -d"${dur}s" --timeout 60s --latency -H "Host: $host" "$url" | awk '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
    function mb(v) { if (v ~ /GB$/) return v * 1024; if (v ~ /MB$/) return v + 0; if (v ~ /KB$/) return v / 1024; return v / 1048576 }
    $1 == "50%" { p50 = ms($2) } $1 == "99%" { p99 = ms($2) }
    $1 == "Requests/sec:" { rps = $2 } $1 == "Transfer/sec:" { tps = mb($2) }
    $1 == "Non-2xx" { bad = $5 }
    END { if (bad > 0) printf "bench_gateway: %s non-2xx answers from %s\n", bad, url > "/dev/stderr"
          printf "%.1f %.1f %.3f %.3f\n", rps, tps, p50, p99 }' url="$url"
}
median() { sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
# A row of the summary table make bench prints at the end (bench/bench_summary.cpp).
run_id=${BENCH_RUN:-$(date +%s)}
summary_row() {  # workload outlast nginx unit ratio
  mkdir -p bench/results
  printf '{"run":"%s","bench":"gateway","workload":"%s","outlast":%s,"reference":%s,"unit":"%s","reference_name":"nginx","ratio":%s,"target":">= 0.8x nginx"}\n' \
    "$run_id" "$1" "$2" "$3" "$4" "$5" >>bench/results/summary.jsonl
}

echo "bench_gateway: $runs runs of ${dur}s per row; 20 KB and ${large_mb} MB files; nginx $(nginx -v 2>&1 | sed 's/.*\///')"
echo "bench_gateway: $placement; $(grep -o 'with [0-9]* threads\?' "$work/node.log" | sed 's/with //') in the gateway, nginx worker_processes ${server_cores:-auto}"
printf "\n%-26s %-10s %14s %14s %8s\n" "workload" "metric" "outlast" "nginx" "ratio"
for file in small.bin large.bin; do
  for conns in 1 64; do
    : >"$work/o"; : >"$work/n"
    for _ in $(seq "$runs"); do
      measure "$conns" "http://127.0.0.1:$gport/$file" "bench.$key.localhost:$gport" >>"$work/o"
      measure "$conns" "http://127.0.0.1:$nport/$file" "127.0.0.1:$nport" >>"$work/n"
    done
    name="${file%.bin} file, $conns conn"
    if [ "$file" = small.bin ]; then col=1; metric="req/s"; else col=2; metric="MB/s"; fi
    o=$(awk -v c=$col '{print $c}' "$work/o" | median); n=$(awk -v c=$col '{print $c}' "$work/n" | median)
    ratio=$(awk -v a="$o" -v b="$n" 'BEGIN { print (b > 0 ? a / b : 0) }')
    printf "%-26s %-10s %14s %14s %8.2f\n" "$name" "$metric" "$o" "$n" "$ratio"
    summary_row "$name, $metric" "$o" "$n" "$metric" "$ratio"
    o50=$(awk '{print $3}' "$work/o" | median); n50=$(awk '{print $3}' "$work/n" | median)
    o99=$(awk '{print $4}' "$work/o" | median); n99=$(awk '{print $4}' "$work/n" | median)
    # No request finished within the run (a 600 MB file shared by 64 connections): no latency.
    if awk -v a="$o50" 'BEGIN { exit !(a > 0) }'; then
      r50=$(awk -v a="$o50" -v b="$n50" 'BEGIN { print (a > 0 ? b / a : 0) }')
      r99=$(awk -v a="$o99" -v b="$n99" 'BEGIN { print (a > 0 ? b / a : 0) }')
      printf "%-26s %-10s %14s %14s %8.2f\n" "" "p50 ms" "$o50" "$n50" "$r50"
      printf "%-26s %-10s %14s %14s %8.2f\n" "" "p99 ms" "$o99" "$n99" "$r99"
      summary_row "$name, p50" "$o50" "$n50" "ms" "$r50"
      summary_row "$name, p99" "$o99" "$n99" "ms" "$r99"
    else
      printf "%-26s %-10s %14s %14s %8s\n" "" "latency" "n/a" "n/a" "-"
    fi
  done
done
echo "(ratio: outlast / nginx for throughput, nginx / outlast for latency: above 1 means outlast is better)"
