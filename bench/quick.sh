#!/usr/bin/env bash
#
# bench/quick.sh: the benchmark in a short form for development (200k rows,
# about a minute).  Same as `bash bench/run.sh --quick [SIZE ...] [--no-build]`.
#
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/run.sh" --quick "$@"
