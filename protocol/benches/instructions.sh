#!/usr/bin/env bash
# The instruction-count gate over protocol/benches/instructions.rs (callgrind, through gungraun).
#
#   bash protocol/benches/instructions.sh check     # compare with the committed baseline; exit 3 when an
#                                                   # instruction count grew by more than the tolerance
#   bash protocol/benches/instructions.sh refresh   # measure again and rewrite the committed baseline
#
# The tolerance is INSTRUCTIONS_TOLERANCE (default 3%): counts are exact for one binary, but a new rustc or
# a dependency update moves them by a percent or two. Refresh the baseline in the same commit as a change
# that moves a count on purpose, and say why. The counts are those of this machine kind (x86-64 with AVX2,
# Debian 12's valgrind): on a CPU without AVX2 the cipher takes its portable path and the gate fails.
# Needs valgrind and gungraun-runner 0.20.0 (`cargo install gungraun-runner --version 0.20.0 --locked`).
set -euo pipefail
cd "$(dirname "$0")/../.."

baseline="protocol/benches/instructions-baseline"
tolerance="${INSTRUCTIONS_TOLERANCE:-3%}"
home="$(mktemp -d)"
trap 'rm -rf "$home"' EXIT

case "${1:-check}" in
  check)
    # gungraun compares against baseline files inside its home: a scratch copy keeps the tree clean.
    cp -R "$baseline/." "$home/"
    GUNGRAUN_HOME="$home" cargo bench -p acip --bench instructions -- \
      --baseline=committed --callgrind-limits="ir=$tolerance"
    ;;
  refresh)
    GUNGRAUN_HOME="$home" cargo bench -p acip --bench instructions -- --save-baseline=committed
    # Only the callgrind profiles are kept (the logs name this machine's paths and process ids).
    mkdir -p "$baseline"
    find "$baseline" -name '*.base@committed' -delete
    (cd "$home" && find . -name '*.out.base@committed') | while read -r f; do
      mkdir -p "$baseline/$(dirname "$f")"
      cp "$home/$f" "$baseline/$f"
    done
    echo "baseline rewritten under $baseline"
    ;;
  *)
    echo "usage: $0 check|refresh" >&2
    exit 2
    ;;
esac
