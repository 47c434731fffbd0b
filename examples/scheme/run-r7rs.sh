#!/bin/sh
# Run programs of ecraven/r7rs-benchmarks on fhscheme and fhscheme-bdw the way
# that suite's `bench` script does (prelude + program + common + postlude,
# the program's input on stdin), and print one line per program and build:
#   examples/scheme/run-r7rs.sh /path/to/r7rs-benchmarks [program...]
# Environment: BUILD (default build), FHS_OPTIONS (faultheap options),
# INPUTS (a directory of replacement .input files, e.g. smaller counts).
set -u
suite=${1:?usage: run-r7rs.sh R7RS-BENCHMARKS-DIR [program...]}
shift
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${BUILD:-build}" && pwd)
progs=${*:-"gcbench nboyer sboyer earley deriv destruc mazefun paraffins conform dynamic lattice peval graphs browse"}
tmp=$(mktemp -d)
for p in $progs; do
  cat "$here/r7rs-bench-prelude.scm" "$suite/src/$p.scm" "$suite/src/common.scm" \
      "$suite/src/common-postlude.scm" > "$tmp/$p.scm"
  input="$suite/inputs/$p.input"
  [ -n "${INPUTS:-}" ] && [ -f "$INPUTS/$p.input" ] && input="$INPUTS/$p.input"
  for b in fhscheme fhscheme-bdw; do
    [ -x "$build/$b" ] || continue
    line=$( (cd "$suite" && /usr/bin/time -f "rss_kb=%M" "$build/$b" "$tmp/$p.scm" < "$input") 2>&1 |
           grep -E "^Elapsed|ERROR|^Error|rss_kb" | tr '\n' ' ')
    echo "$b $p: $line"
  done
done
rm -rf "$tmp"
