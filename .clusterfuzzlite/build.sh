#!/usr/bin/env bash
# ClusterFuzzLite / OSS-Fuzz build script: builds every cargo-fuzz target of fuzz/ and puts into $OUT
#   - the fuzzer binary            $OUT/<target>
#   - its seed corpus              $OUT/<target>_seed_corpus.zip   (from corpus/seeds/<target>/, if present)
#   - libFuzzer options/dictionary $OUT/<target>.options, $OUT/<target>.dict (from fuzz/, if present)
# and then checks that all of that landed.
#
# Inside the builder image (.clusterfuzzlite/Dockerfile) the repository is $SRC/acip-harness and $OUT is
# set by the build. It also runs outside Docker, as an ordinary user, with nothing but cargo-fuzz, a
# nightly toolchain and python3 (zip is used when present):
#   bash .clusterfuzzlite/build.sh [OUT_DIR]       # OUT_DIR, else $OUT, else target/clusterfuzzlite-out
# Outside Docker the repository is found from this script's own location.
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ -n "${SRC:-}" ] && [ -d "$SRC/acip-harness/fuzz" ]; then
  repo="$SRC/acip-harness"
else
  # Outside the builder image this script lives in <repo>/.clusterfuzzlite/.
  repo="$(cd "$script_dir/.." && pwd)"
  [ -d "$repo/fuzz" ] || { echo "build.sh: no fuzz/ in $repo (set SRC so that \$SRC/acip-harness is the repository)" >&2; exit 1; }
  export SRC="${SRC:-$(dirname "$repo")}"
fi
if [ $# -ge 1 ]; then
  OUT="$1"
fi
OUT="${OUT:-$repo/target/clusterfuzzlite-out}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
export OUT

cd "$repo/fuzz"

# The targets are fuzz/Cargo.toml's [[bin]]s, which is what `cargo fuzz list` prints. They are read with
# `cargo metadata` because in OSS-Fuzz coverage builds the image's cargo wrapper turns every `cargo fuzz`
# command (list included) into a plain `cargo build`.
metadata="$(cargo metadata --no-deps --format-version 1)"
read -r -a targets <<<"$(python3 -c '
import json, sys
m = json.load(sys.stdin)
print(" ".join(t["name"] for p in m["packages"] for t in p["targets"] if "bin" in t["kind"]))' <<<"$metadata")"
target_dir="$(python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])' <<<"$metadata")"
[ "${#targets[@]}" -gt 0 ] || { echo "build.sh: fuzz/Cargo.toml declares no fuzz targets" >&2; exit 1; }
if [ "${SANITIZER:-address}" != coverage ]; then
  listed="$(cargo fuzz list | tr '\n' ' ' | sed 's/ *$//')"
  if [ "$listed" != "${targets[*]}" ]; then
    echo "build.sh: cargo fuzz list says '$listed', fuzz/Cargo.toml '${targets[*]}'" >&2
    exit 1
  fi
fi
echo "build.sh: repository $repo, OUT $OUT, targets: ${targets[*]}"

# Release with debug assertions and overflow checks: what `cargo fuzz run` builds by default, so that the
# fuzz runs that follow in .ci/run reuse these artefacts instead of building everything again (and the
# fuzzers keep the assertions that catch arithmetic bugs).
cargo fuzz build -O --debug-assertions

# Writes ZIP with the files of DIR at its top level (like `zip -j`); a fresh archive every time.
make_zip() {
  local zip_path="$1" dir="$2"
  rm -f "$zip_path"
  if command -v zip >/dev/null 2>&1; then
    (cd "$dir" && find . -maxdepth 1 -type f -print0 | sort -z | xargs -0 -r zip -q -j -X "$zip_path")
  else
    python3 - "$zip_path" "$dir" <<'EOF'
import os, sys, zipfile
zip_path, d = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as z:
    for name in sorted(os.listdir(d)):
        p = os.path.join(d, name)
        if os.path.isfile(p):
            z.write(p, arcname=name)
EOF
  fi
}

for t in "${targets[@]}"; do
  install -m 755 "$target_dir/x86_64-unknown-linux-gnu/release/$t" "$OUT/$t"
  seeds="$repo/corpus/seeds/$t"
  if [ -d "$seeds" ] && [ -n "$(find "$seeds" -maxdepth 1 -type f -print -quit)" ]; then
    make_zip "$OUT/${t}_seed_corpus.zip" "$seeds"
  fi
  for ext in options dict; do
    if [ -f "$repo/fuzz/$t.$ext" ]; then
      cp "$repo/fuzz/$t.$ext" "$OUT/$t.$ext"
    fi
  done
done

# Self-check: every target's binary, and a seed archive holding exactly the seed files of every target
# that has seeds.
status=0
for t in "${targets[@]}"; do
  if [ ! -x "$OUT/$t" ] || [ "$(head -c 4 "$OUT/$t" | od -An -c | tr -d ' ')" != '177ELF' ]; then
    echo "build.sh: MISSING $OUT/$t (not an executable ELF file)" >&2
    status=1
  fi
  seeds="$repo/corpus/seeds/$t"
  [ -d "$seeds" ] || continue
  want="$(find "$seeds" -maxdepth 1 -type f | wc -l)"
  [ "$want" -gt 0 ] || continue
  have="$(python3 -c 'import sys, zipfile; print(len(zipfile.ZipFile(sys.argv[1]).namelist()))' \
    "$OUT/${t}_seed_corpus.zip" 2>/dev/null || echo missing)"
  if [ "$have" != "$want" ]; then
    echo "build.sh: $OUT/${t}_seed_corpus.zip holds $have entries, corpus/seeds/$t has $want files" >&2
    status=1
  else
    echo "build.sh: $t: binary, $have seeds"
  fi
done
exit "$status"
