#!/bin/sh
# Install the Debian packages named on the command line that are missing.
# As root: apt-get install -y.  Otherwise: print the exact command and fail.
missing=""
for p in "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
cmd="apt-get install -y$missing"
if [ "$(id -u)" = 0 ]; then
  echo "deps: installing$missing"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive $cmd -qq) >/dev/null || {
    echo "deps: '$cmd' failed" >&2; exit 1; }
else
  echo "deps: missing Debian packages; run as root:" >&2
  echo "  sudo apt-get update && sudo $cmd" >&2
  exit 1
fi
