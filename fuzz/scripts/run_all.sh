#!/bin/sh
# Runs every fuzz target (or those named) for SECONDS each (default 180), one process at a
# time, seeds from corpus/<target>/ and new inputs kept in $WORK/<target>/ so the checked-in
# seed corpus stays small. Logs and final stats go to $WORK/<target>.log; crashes to
# artifacts/<target>/. Run from fuzz/: ./scripts/run_all.sh [target...]
set -u
SECONDS_PER_TARGET=${SECONDS_PER_TARGET:-180}
WORK=${WORK:-/tmp/prism-fuzz}
targets=${*:-$(cargo +nightly fuzz list)}
for t in $targets; do
  mkdir -p "$WORK/$t"
  cargo +nightly fuzz run "$t" "$WORK/$t" "corpus/$t" -- \
    -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=512 -malloc_limit_mb=64 \
    -print_final_stats=1 >"$WORK/$t.log" 2>&1
  echo "$t: exit $? $(grep -E '^stat::number_of_executed_units|^stat::average_exec_per_sec' "$WORK/$t.log" | tr '\n' ' ')"
done
