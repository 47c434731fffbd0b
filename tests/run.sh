#!/bin/sh
# Run every test binary given, print each one's cmocka report, and close with
# one summary line.  Exit status is non-zero when any suite failed.  A suite
# that runs longer than FH_TEST_TIMEOUT seconds (default 300) is killed and
# counted as failed: a hang must show up as a failure, not stall CI.
build=$1; shift
passed=0; failed=0; failed_names=""
for t in "$@"; do
  name=$(basename "$t")
  out=$(mktemp)
  if timeout -s KILL "${FH_TEST_TIMEOUT:-300}" "$t" >"$out" 2>&1; then rc=0; else rc=$?; fi
  [ "$rc" = 137 ] && echo "$name: killed after ${FH_TEST_TIMEOUT:-300} s (hung?)" >>"$out"
  cat "$out"
  p=$(grep -Eo '^\[  PASSED  \] [0-9]+' "$out" | grep -Eo '[0-9]+$' | tail -1)
  f=$(grep -Eo '^\[  FAILED  \] [0-9]+' "$out" | grep -Eo '[0-9]+$' | tail -1)
  passed=$((passed + ${p:-0}))
  if [ "$rc" != 0 ]; then
    failed=$((failed + ${f:-1})); failed_names="$failed_names $name"
  fi
  rm -f "$out"
done
echo
[ -n "$failed_names" ] && echo "failing suites:$failed_names"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
