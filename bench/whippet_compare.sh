#!/bin/sh
# Side by side with Whippet (github.com/wingo/whippet) on its own
# benchmarks: mt-gcbench.c and quads.c at 2x and 5x live (fhbench
# whippet-mt-gcbench / whippet-quads), ephemerons.c and finalizers.c
# (whippet-ephemerons / whippet-finalizers); faultheap's versions and
# Whippet's binaries run in the same rounds.  Fetches and builds nothing: pass the bin/
# directory of a Whippet tree built with its own Makefile, for example
#     git clone https://github.com/wingo/whippet && cd whippet
#     make bin/mt-gcbench.mmc bin/quads.mmc bin/ephemerons.mmc ...   # one per collector
# (needs gcc, pkg-config and, for bdw, libgc-dev).
#
# usage: bench/whippet_compare.sh WHIPPET_BIN_DIR [RUNS] [HEAP_SIZE]
# Runs multipliers 2 (Whippet's usual figure) and 3 (where its semi and pcc
# collectors fit), one mutator, RUNS rounds (default 5), HEAP_SIZE bytes
# (default 50e6).  FHBENCH overrides the fhbench to use (default
# build/fhbench beside this script's directory).
set -eu
dir=${1:?usage: $0 WHIPPET_BIN_DIR [RUNS] [HEAP_SIZE]}
runs=${2:-5}
heap=${3:-50e6}
fhbench=${FHBENCH:-$(dirname "$0")/../build/fhbench}
[ -x "$fhbench" ] || { echo "$0: no $fhbench (run make first)" >&2; exit 2; }
[ -d "$dir" ] || { echo "$0: $dir is not a directory" >&2; exit 2; }
status=0
for b in mt-gcbench quads; do
  for m in 2 5; do
    echo "\$ $fhbench whippet-$b --whippet $dir --runs $runs --multiplier $m"
    "$fhbench" "whippet-$b" --whippet "$dir" --runs "$runs" --multiplier "$m" || status=1
    echo
  done
done
for b in ephemerons finalizers; do
  for m in 2 3; do
    echo "\$ $fhbench whippet-$b --whippet $dir --runs $runs --heap-size $heap --multiplier $m"
    "$fhbench" "whippet-$b" --whippet "$dir" --runs "$runs" --heap-size "$heap" \
      --multiplier "$m" || status=1
    echo
  done
done
exit $status
