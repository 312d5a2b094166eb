#!/bin/sh
# The image's entrypoint, run by tini (PID 1): starts the app (its arguments) in
# its place (exec), so the app stays tini's only child and gets its signals.
#
# A skewable lab (SCALELAB_SKEWABLE, the topology setting `skewable`) runs the app
# with libfaketime preloaded, as the local platform does (chaos/local_faults.py):
# its wall clock is the real time plus the offset in $SCALELAB_CLOCK_FILE, re-read
# every second; the file starts at +0 and the platform's skew rewrites it through
# exec (chaos/kubernetes/names.py, CLOCK_FILE). Only the wall clock moves: monotonic time
# stays real. A container restarted in its pod keeps its skew (the file is on the
# pod's /tmp emptyDir), as a local instance restarted in place does.
set -eu

case "${SCALELAB_SKEWABLE:-}" in
  [Tt]rue|1|[Yy]es|[Oo]n) ;;
  *) exec "$@" ;;
esac

lib="${SCALELAB_FAKETIME_LIB:-/opt/venv/lib/libfaketime.so.1}"
clock="${SCALELAB_CLOCK_FILE:-/tmp/scalelab.faketime}"
if [ ! -r "$lib" ]; then
  echo "scalelab-entrypoint: a skewable lab needs libfaketime, and $lib is missing" >&2
  exit 2
fi
# The libfaketime wheel is tagged for any platform but ships an x86-64 build: the
# dynamic loader would ignore it on another CPU, with a warning, and leave the
# clock unskewed. Refuse instead (ELF e_machine: 62 x86-64, 183 aarch64).
machine="$(od -An -tu2 -j18 -N2 "$lib" | tr -d ' ')"
case "$(uname -m):$machine" in
  x86_64:62|aarch64:183) ;;
  *)
    echo "scalelab-entrypoint: $lib (ELF machine $machine) cannot be preloaded on this $(uname -m) node: clock skew needs amd64 nodes" >&2
    exit 2 ;;
esac
[ -f "$clock" ] || echo "+0.000" > "$clock"

export LD_PRELOAD="$lib${LD_PRELOAD:+:$LD_PRELOAD}"
export FAKETIME_TIMESTAMP_FILE="$clock"
export FAKETIME_CACHE_DURATION=1
export FAKETIME_DONT_FAKE_MONOTONIC=1 DONT_FAKE_MONOTONIC=1
export FAKETIME_DONT_RESET=1
export NO_FAKE_STAT=1
exec "$@"
