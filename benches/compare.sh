#!/usr/bin/env bash
# End-to-end benchmark: rollproof against the same figures in DuckDB SQL, on the same files, run
# alternately. Prints median wall time, CPU time and peak RSS of each, and the ratios.
#
#   benches/compare.sh SIZE [RUNS]      SIZE: 1m, 10m, 100m (or a number of requests)
#   PLAIN=1 benches/compare.sh 10m      the same rows as Spark, Hive or DuckDB write them: plain
#                                       string columns, no Arrow schema in the file (needs pyarrow)
#   RECEIPTS=0.5 benches/compare.sh 10m receipts-heavy: half the requests execute a side effect
#                                       (~4M receipts for 10M requests; the default 0.1 gives ~0.8M)
#
# Generates bench-data/SIZE with the project's seeded generator when missing. Needs Python with
# duckdb (`pip install duckdb`), used by the benchmark only.
set -euo pipefail
cd "$(dirname "$0")/.."

size=${1:-10m}
runs=${2:-5}
case "$size" in
  *m) requests=$(( ${size%m} * 1000000 )) ;;
  *) requests=$size ;;
esac
share=${RECEIPTS:-0.1}
data="bench-data/$size"
[ "$share" = 0.1 ] || data="$data-r$share"
threads=${THREADS:-$(nproc)}
bin="${CARGO_TARGET_DIR:-target}/release"

cargo build --release --quiet -p rollproof-cli -p rollproof-gen
python3 -c 'import duckdb' 2>/dev/null || pip install --quiet duckdb
if [ ! -f "$data/incident.toml" ]; then
  echo "generating $requests requests into $data" >&2
  "$bin/rollproof-gen" bench --requests "$requests" --receipt-share "$share" --out "$data"
fi
if [ "${PLAIN:-0}" = 1 ]; then
  plain="$data-plain"
  if [ ! -f "$plain/incident.toml" ]; then
    python3 -c 'import pyarrow' 2>/dev/null || pip install --quiet pyarrow
    mkdir -p "$plain"
    python3 benches/plain.py "$data/requests.parquet" "$plain/requests.parquet"
    cp "$data/receipts.parquet" "$data/incident.toml" "$plain/"
  fi
  data="$plain"
fi
# The decode floor: the columns the audit's first pass reads, through rollproof's ingest, no check
# (crates/rollproof/benches/floor.rs).
floor_bin=$(cargo bench -p rollproof --features bench --bench floor --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys; print([m["executable"] for m in map(json.loads, sys.stdin) if m.get("target", {}).get("name") == "floor" and m.get("executable")][-1])')

measure() { # prints "wall user+sys maxrss_kb"
  local t
  t=$(mktemp)
  /usr/bin/time -f '%e %U %S %M' -o "$t" "$@" > /dev/null 2>/dev/null || true
  # GNU time writes "Command exited with non-zero status N" first when the exit code is not 0
  # (rollproof exits 1 on a failing verdict): the figures are on the last line.
  tail -n 1 "$t" | awk '{ printf "%s %.2f %s\n", $1, $2 + $3, $4 }'
  rm -f "$t"
}

median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

rp=$(mktemp); db=$(mktemp); fl=$(mktemp)
for i in $(seq "$runs"); do
  measure "$bin/rollproof" audit "$data/incident.toml" --format json --quiet --threads "$threads" >> "$rp" || true
  measure python3 benches/reference.py "$data" >> "$db" || true
  RAYON_NUM_THREADS="$threads" measure "$floor_bin" "$data/incident.toml" >> "$fl" || true
done

col() { awk -v c="$1" '{ print $c }' "$2" | median; }
rp_wall=$(col 1 "$rp"); rp_cpu=$(col 2 "$rp"); rp_rss=$(col 3 "$rp")
db_wall=$(col 1 "$db"); db_cpu=$(col 2 "$db"); db_rss=$(col 3 "$db")
fl_wall=$(col 1 "$fl"); fl_cpu=$(col 2 "$fl"); fl_rss=$(col 3 "$fl")

receipts=$(python3 -c "import duckdb; print(duckdb.sql(\"select count(*) from '$data/receipts.parquet'\").fetchall()[0][0])")
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ { print $2 }') GiB; $requests requests, $receipts receipts, $runs runs each, medians; rollproof --threads $threads"
printf '%-10s %10s %10s %12s\n' "" "wall s" "cpu s" "peak RSS MB"
printf '%-10s %10s %10s %12d\n' rollproof "$rp_wall" "$rp_cpu" $(( rp_rss / 1024 ))
printf '%-10s %10s %10s %12d\n' duckdb "$db_wall" "$db_cpu" $(( db_rss / 1024 ))
printf '%-10s %10s %10s %12d\n' floor "$fl_wall" "$fl_cpu" $(( fl_rss / 1024 ))
awk -v a="$rp_wall" -v b="$db_wall" -v c="$rp_rss" -v d="$db_rss" -v e="$rp_cpu" -v f="$db_cpu" -v g="$fl_cpu" \
  'BEGIN { printf "ratio rollproof/duckdb: wall %.2f, cpu %.2f, peak RSS %.2f; rollproof cpu / decode floor %.2f\n", a / b, e / f, c / d, e / g }'

"$bin/rollproof" audit "$data/incident.toml" --format json --quiet > "$rp.json" || true
python3 benches/reference.py "$data" > "$db.json"
python3 benches/agree.py "$db.json" "$rp.json"
rm -f "$rp" "$db" "$rp.json" "$db.json"
