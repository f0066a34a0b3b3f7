#!/usr/bin/env bash
# Key ranges at the merge: partials of every unit written whole and with N key ranges, then
# merged whole, range by range, and through a stage per range (`merge --key-range`). Prints each
# step's wall time and peak RSS, the bytes of the partials inside and outside the key ranges, and
# checks that every merge's JSON equals the audit's.
#
#   benches/key_ranges.sh [DATA] [N]      DATA: a folder with incident.toml (default bench-data/10m)
#
# Needs the Python package for the split (PY, default target/python-venv/bin/python, which
# python/test.sh builds).
set -euo pipefail
cd "$(dirname "$0")/.."

data=${1:-bench-data/10m}
ranges=${2:-16}
bin="${CARGO_TARGET_DIR:-target}/release/rollproof"
PY=${PY:-target/python-venv/bin/python}
incident="$data/incident.toml"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cargo build --release --quiet -p rollproof-cli

# Runs a command; prints "LABEL  wall s  peak MiB".
measure() {
  local label=$1
  shift
  /usr/bin/time -f "%e %M" -o "$work/time" "$@"
  read -r wall rss < "$work/time"
  printf '%-44s %7.2f s  %7.0f MiB\n' "$label" "$wall" "$((rss / 1024))"
}

"$bin" audit "$incident" --format json -q > "$work/audit.json" || true
"$bin" plan "$incident" | python3 -c 'import json,sys; [print(u["id"]) for u in json.load(sys.stdin)["units"]]' > "$work/units"
echo "$(wc -l < "$work/units") units in $data; $ranges key ranges"

mkdir -p "$work/whole" "$work/ranged" "$work/finished"
# Folds every unit into its own partial, one after another; prints the total wall time and the
# largest peak RSS of one unit's partial.
fold() {
  local label=$1 dir=$2
  shift 2
  local i=0 worst=0 start end
  start=$(date +%s.%N)
  while read -r unit; do
    /usr/bin/time -f "%M" -o "$work/time" "$bin" partial "$incident" -q --unit "$unit" -o "$dir/$i.rpp" "$@"
    [ "$(cat "$work/time")" -gt "$worst" ] && worst=$(cat "$work/time")
    i=$((i + 1))
  done < "$work/units"
  end=$(date +%s.%N)
  printf '%-44s %7.2f s  %7.0f MiB (largest unit)\n' "$label" "$(echo "$end - $start" | bc)" "$((worst / 1024))"
}
fold "partials, whole (all units, one by one)" "$work/whole"
fold "partials, $ranges key ranges" "$work/ranged" --key-partitions "$ranges"

# Bytes inside and outside the key-range sections, from one partial's section sizes.
ROLLPROOF_TIMINGS=1 "$bin" partial "$incident" -q --unit "$(head -1 "$work/units")" \
  --key-partitions "$ranges" -o "$work/probe.rpp" 2> "$work/sections"
awk '/^section:/ { if ($4 ~ /@/) keyed += $2; else rest += $2 }
     END { printf "first unit: %.1f MB in key ranges, %.2f MB outside\n", keyed / 1e6, rest / 1e6 }' "$work/sections"
printf 'all partials: %s whole, %s with key ranges\n' \
  "$(du -sh "$work/whole" | cut -f1)" "$(du -sh "$work/ranged" | cut -f1)"

check() {
  if cmp -s "$work/audit.json" "$work/merged.json"; then echo "  = audit"; else echo "  DIFFERS from audit" >&2; exit 1; fi
}
measure "merge, whole" sh -c "'$bin' merge '$incident' '$work'/whole/*.rpp --format json -q > '$work/merged.json' || true"
check
measure "merge, one key range at a time" sh -c "'$bin' merge '$incident' '$work'/ranged/*.rpp --format json -q > '$work/merged.json' || true"
check
worst=0
for r in $(seq 0 $((ranges - 1))); do
  /usr/bin/time -f "%M" -o "$work/time" "$bin" merge "$incident" "$work"/ranged/*.rpp -q \
    --key-partitions "$ranges" --key-range "$r" --partial-out "$work/finished/$r.rpp"
  rss=$(cat "$work/time")
  [ "$rss" -gt "$worst" ] && worst=$rss
done
echo "stage per range: largest range task $((worst / 1024)) MiB; finished ranges $(du -sh "$work/finished" | cut -f1)"
# The final merge of a stage per range reads the partials' rest only: split them as the Spark
# path's shuffle does, with the Python package (built into target/python-venv by python/test.sh).
mkdir -p "$work/rest"
"$PY" - "$incident" "$work/ranged" "$work/rest" <<'EOF'
import pathlib, sys
import rollproof
incident, src, dst = sys.argv[1:]
for f in sorted(pathlib.Path(src).glob("*.rpp")):
    rest, _ = rollproof.split_key_ranges(incident, f.read_bytes())
    (pathlib.Path(dst) / f.name).write_bytes(rest)
EOF
echo "partials without their key ranges (what the driver gets): $(du -sh "$work/rest" | cut -f1)"
measure "final merge: rests + finished ranges" sh -c "'$bin' merge '$incident' '$work'/rest/*.rpp '$work'/finished/*.rpp --format json -q > '$work/merged.json' || true"
check
