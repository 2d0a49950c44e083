#!/bin/bash
# Runs one prism-load scenario with the relay under callgrind, so two builds can be compared
# by instruction counts (stable on a shared machine, unlike CPU time). Usage:
#   benches/callgrind.sh PRISM_BIN OUT_DIR [prism-load run options...]
# e.g. benches/callgrind.sh target/release/prism /tmp/cg-new --targets 50 --bitrate-kbps 1000
# The whole life of the relay is counted (start, connects, warm-up, window, end) under the
# same scripted load. Writes OUT_DIR/callgrind.out.PID, OUT_DIR/load.txt (the tool's table)
# and prints the totals (Ir = instructions, sysCount = syscalls, sysTime = ns in them).
set -euo pipefail
prism=$(realpath "$1"); out=$2; shift 2
mkdir -p "$out"; out=$(realpath "$out")
load=${PRISM_LOAD:-$(dirname "$prism")/prism-load}
wrapper="$out/prism-under-callgrind"
# prism-load kills the relay with SIGKILL, which would lose the profile: the wrapper keeps
# valgrind as its child, and once the tool is done the relay is stopped with SIGTERM
# (Prism shuts down cleanly and callgrind writes its file).
cat > "$wrapper" <<EOW
#!/bin/bash
valgrind --tool=callgrind --collect-systime=nsec --callgrind-out-file="$out/callgrind.out.%p" \
  "$prism" "\$@" 2>"$out/valgrind.log" &
echo \$! > "$out/valgrind.pid"
wait \$!
EOW
chmod +x "$wrapper"
rm -f "$out"/callgrind.out.*
"$load" run --relay prism --prism-bin "$wrapper" --connect-timeout 120 "$@" >"$out/load.txt" 2>"$out/load.log" || true
pid=$(cat "$out/valgrind.pid")
kill -TERM "$pid" 2>/dev/null || true
for _ in $(seq 1 120); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
kill -KILL "$pid" 2>/dev/null || true
cat "$out/load.txt"
grep -E "^(events|summary|totals):" "$out"/callgrind.out.* || true
