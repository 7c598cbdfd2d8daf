#!/bin/sh
# Install the Debian packages the interop tests drive, only where a tool is missing.
# As root it uses apt-get; otherwise it names the packages to install and carries on
# (the tests then skip with a reason, or fail under CI=true).
set -eu
# tool:package pairs
NEEDED="swaks:swaks"
missing=""
for pair in $NEEDED; do
    tool=${pair%%:*}
    pkg=${pair#*:}
    command -v "$tool" >/dev/null 2>&1 || missing="$missing $pkg"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian packages:$missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
else
    echo "missing Debian packages:$missing — install them with: sudo apt-get install$missing" >&2
fi
