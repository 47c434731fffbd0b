#!/bin/sh
# bench/gc_systime.sh: how much of the collector's CPU time is system time,
# measured by sampling (issue 17: "system time of a stop-the-world
# collection cycle: no more than 5% of its wall time").
#
#   bench/gc_systime.sh [-F HZ] FHBENCH_ARGS...
#   e.g. FH_OPTIONS=generational=0 bench/gc_systime.sh \
#          whippet-mt-gcbench --collectors mark_compact --runs 3 -v
#
# getrusage's per-thread figures advance by scheduler ticks (4 ms here),
# longer than most pauses, so fh_stats' gc_sys_ns cannot settle the
# question for short cycles.  Instead perf samples every thread on a CPU
# clock (-F HZ, default 9973 per second of CPU time) with call chains; a
# sample is the collector's when its thread is a GC pool thread (named
# fh-*: markers, builders, update pieces, the end-of-cycle task) or its
# call chain passes through gc_collect_locked (the collecting thread in
# the pause); it is system time when its first frame is in the kernel.
# Each sample stands for 1/HZ s of CPU time, so thousands of them over
# many cycles give the GC's system and user CPU time to a percent or so,
# which is then set against the pauses' wall time that fhbench -v prints
# (pause_total_ms, summed over the runs of the variants it ran).  The
# end-of-cycle task's MADV_POPULATE_WRITE of the next allocation window
# (collectors/mc_prefault.c) is counted, and also shown apart: it faults in
# pages the mutators are about to allocate into, which they would
# otherwise fault in themselves.
# Needs perf and a build/fhbench with frame pointers for whole call
# chains (make BUILD=build-fp EXTRA_CFLAGS=-fno-omit-frame-pointer;
# FHBENCH=build-fp/fhbench); without them a pause's samples may be missed
# (counted neither way) but those found are classified alike.
set -eu
hz=9973
if [ "${1:-}" = "-F" ]; then hz=$2; shift 2; fi
fhbench=${FHBENCH:-build/fhbench}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
perf record -q -F "$hz" -e cpu-clock -g -o "$tmp/perf.data" -- "$fhbench" "$@" \
  >"$tmp/out" 2>&1
cat "$tmp/out"
perf script -i "$tmp/perf.data" -F comm,tid,ip,sym 2>/dev/null | awk -v hz="$hz" -v out="$tmp/out" '
  function flush() {
    if (!n) return
    all++
    if (gc) { g++; if (kern) gk++; if (kern && pop && end) pf++ }
    n = 0; gc = 0; kern = 0; pop = 0; end = 0
  }
  /^[ \t]*$/ { flush(); next }
  /^\t/ {
    if (n == 0 && $1 ~ /^ffff/) kern = 1
    if ($2 ~ /^gc_collect_locked/) gc = 1
    if ($2 ~ /^(faultin_page_range|madvise_populate)/) pop = 1
    if ($2 ~ /^end_cycle_main/) end = 1
    n++
    next
  }
  { flush(); gc = ($1 ~ /^fh-/) }
  END {
    flush()
    wall = 0
    while ((getline line < out) > 0)
      if (match(line, /pause_total_ms=[0-9.]+/))
        wall += substr(line, RSTART + 15, RLENGTH - 15)
    printf "gc_systime: %d samples at %d Hz, %d in the collector: user %.1f ms, system %.1f ms (%.1f%% of its CPU time)\n",
      all, hz, g, (g - gk) * 1000 / hz, gk * 1000 / hz, g ? 100 * gk / g : 0
    printf "gc_systime: of the system time, %.1f ms faulted in the next allocation window after the pause (mc_prefault: the mutators would fault those pages themselves)\n",
      pf * 1000 / hz
    if (wall > 0)
      printf "gc_systime: pauses %.1f ms of wall time (fhbench -v pause_total_ms): system time %.2f%% of it, %.2f%% without the prefault\n",
        wall, 100 * gk * 1000 / hz / wall, 100 * (gk - pf) * 1000 / hz / wall
  }'
