#!/usr/bin/env bash
# Compares two builds of the replay benchmark run at the same time, one per core, so that a
# shared host's changing speed hits both alike (alternating runs scatter by +-10 % here).
# Each round swaps the cores; the ratio B/A of their lines/s is printed per round, then the
# median. Run it twice with A and B swapped: the build started second is slightly favoured.
#
#   cargo bench --bench replay --no-run     # prints the binary's path; copy it per build
#   bash benches/head-to-head.sh sshd 24 /tmp/replay-old /tmp/replay-new
set -euo pipefail
if (($# != 4)); then
    echo "usage: $0 sshd|nginx ROUNDS BENCH_A BENCH_B" >&2
    exit 2
fi
kind=$1 rounds=$2 a=$3 b=$4
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# A build's lines/s: the last `= N lines/s` it printed (its one run here; older builds'
# benches printed only that line).
rate() { grep -o '= [0-9]* lines/s' "$1" | tail -n 1 | grep -o '[0-9]*'; }
for ((r = 1; r <= rounds; r++)); do
    ca=$((r % 2)) cb=$(((r + 1) % 2))
    GARRISON_BENCH_RUNS=1 GARRISON_BENCH_KINDS=$kind taskset -c "$ca" "$a" --bench >"$out/a" 2>&1 &
    GARRISON_BENCH_RUNS=1 GARRISON_BENCH_KINDS=$kind taskset -c "$cb" "$b" --bench >"$out/b" 2>&1 &
    wait
    ra=$(rate "$out/a") rb=$(rate "$out/b")
    awk -v a="$ra" -v b="$rb" 'BEGIN { printf "%d %d %.3f\n", a, b, b / a }'
done | sort -k3 -n | awk '{ print; r[NR] = $3 } END { print "median B/A", r[int((NR + 1) / 2)] }'
