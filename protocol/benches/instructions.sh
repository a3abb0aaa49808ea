#!/usr/bin/env bash
# The instruction-count gate over protocol/benches/instructions.rs (callgrind, through gungraun).
#
#   bash protocol/benches/instructions.sh check     # compare with the committed baseline; exit 3 when an
#                                                   # instruction count grew by more than the tolerance
#   bash protocol/benches/instructions.sh refresh   # measure again and rewrite the committed baseline
#   bash protocol/benches/instructions.sh selftest  # show that the gate fails on a deliberately slowed build
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
  selftest)
    # The gate must catch a regression, not only pass. In a throw-away copy of the working tree (tracked and
    # untracked files, no target/): refresh the copy's baseline from the unslowed code and check that it
    # passes, then add one extra CRC-32C pass over every checksummed buffer (`acip::crc::crc32c`, on the
    # decode path of every packet) and check again: that check must fail with exit 3 naming the slowed
    # benchmarks. Comparing the copy with its own fresh baseline keeps the test independent of whether the
    # committed baseline is current. Builds in its own CARGO_TARGET_DIR (INSTRUCTIONS_SELFTEST_TARGET,
    # default a temporary directory: a full optimised build of the bench's dependencies).
    copy="$home/tree"
    mkdir -p "$copy"
    git ls-files -z --cached --others --exclude-standard \
      | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
      | tar --null -T - -cf - | tar -xf - -C "$copy"
    export CARGO_TARGET_DIR="${INSTRUCTIONS_SELFTEST_TARGET:-$home/target}"
    echo "selftest: copy in $copy, CARGO_TARGET_DIR=$CARGO_TARGET_DIR"
    bash "$copy/protocol/benches/instructions.sh" refresh >"$home/refresh.log" 2>&1 \
      || { cat "$home/refresh.log" >&2; echo "selftest: refresh of the unslowed copy failed" >&2; exit 1; }
    if ! bash "$copy/protocol/benches/instructions.sh" check >"$home/unslowed.log" 2>&1; then
      cat "$home/unslowed.log" >&2
      echo "selftest: the unslowed copy fails against its own baseline" >&2
      exit 1
    fi
    crc="$copy/protocol/src/crc.rs"
    anchor='pub fn crc32c(data: &\[u8\]) -> u32 {'
    [ "$(grep -c "^$anchor\$" "$crc")" = 1 ] \
      || { echo "selftest: slowdown not applied: no single '$anchor' line in $crc" >&2; exit 1; }
    sed -i "/^$anchor\$/a\\    std::hint::black_box(crc32c::crc32c(std::hint::black_box(data)));" "$crc"
    grep -q 'std::hint::black_box(crc32c::crc32c(std::hint::black_box(data)));' "$crc" \
      || { echo "selftest: slowdown not applied to protocol/src/crc.rs" >&2; exit 1; }
    set +e
    bash "$copy/protocol/benches/instructions.sh" check >"$home/slowed.log" 2>&1
    rc=$?
    set -e
    # One line per regressed benchmark, e.g. "decode_crc image_frame: 387146 -> 774046 instructions (+99.9%)".
    regressed="$(awk '
      /^instructions::/ { split($1, p, "::"); bench = p[3] " " $2; sub(/:.*/, "", bench) }
      /^  Instructions:/ { split($2, n, "|"); change = $3; line = n[2] " -> " n[1] " instructions " change }
      /Performance has regressed: Instructions/ { print "  " bench ": " line }
    ' "$home/slowed.log")"
    # decode_crc is where the slowdown surely shows: it doubles that benchmark's one CRC pass.
    if [ "$rc" -ne 3 ] || ! grep -q '^  decode_crc ' <<<"$regressed"; then
      cat "$home/slowed.log" >&2
      echo "selftest: FAILED: the slowed copy's check exited $rc (expected 3 naming decode_crc)" >&2
      exit 1
    fi
    echo "selftest: PASS: with one extra CRC-32C pass the gate fails (exit 3); regressed:"
    echo "$regressed"
    ;;
  *)
    echo "usage: $0 check|refresh|selftest" >&2
    exit 2
    ;;
esac
