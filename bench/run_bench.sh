#!/usr/bin/env bash
# bench/run_bench.sh [BUILD_DIR] [--rounds N] [--throughput-seconds S]
# Start-up, python one-liner, peak RSS and throughput of `kennel run`
# against bubblewrap, unshare and plain exec; prints markdown.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
py=python3
[ -x /usr/bin/python3 ] && py=/usr/bin/python3
exec "$py" "$here/run_bench.py" "$@"
