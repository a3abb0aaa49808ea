#!/usr/bin/env bash
# Fetches libsodium.js for `harness browser --encrypt` from the npm registry: the packages
# libsodium-wrappers and libsodium (the WebAssembly build the wrappers call), pinned by version and by the
# registry's sha512 integrity. Nothing third-party is committed: the files go into a git-ignored directory,
# $ACIP_SODIUM_JS if set, else harness/assets/browser/vendor/libsodium (where the harness looks by default).
#
# Exit codes: 0 done (or already there), 1 the download failed, 3 a tarball's sha512 differs from the pin.
set -euo pipefail

VERSION=0.8.4
# `npm view <package>@0.8.4 dist.integrity`
PINS=(
  "libsodium-wrappers sha512-mu8aAWucZjTB5O/BtGXtW4e1agy7uHxNYG7zPthmmD1jU43LCDmSWZLN4JhflbdPXj3yDO4lxM1O9hLDgIOXDw=="
  "libsodium sha512-lMcYaRi0zcs7tarATsQUYC7rstliIXZuoq0c6zXSgNtSNtdvBgkSegjWhpMJAXzKX3SUSwIp7+zEsob+j3LuRw=="
)

here="$(cd "$(dirname "$0")" && pwd)"
dest="${ACIP_SODIUM_JS:-$here/vendor/libsodium}"
stamp="$dest/VERSION"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$VERSION" ] \
  && [ -f "$dest/libsodium.js" ] && [ -f "$dest/libsodium-wrappers.js" ]; then
  echo "libsodium.js $VERSION already in $dest"
  exit 0
fi

if ! command -v npm >/dev/null 2>&1; then
  echo "fetch-sodium: npm is not installed (apt-get install npm)" >&2
  exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

for pin in "${PINS[@]}"; do
  name="${pin%% *}"
  integrity="${pin#* }"
  if ! (cd "$work" && npm pack --silent "$name@$VERSION" >/dev/null); then
    echo "fetch-sodium: npm pack $name@$VERSION failed" >&2
    exit 1
  fi
  tgz="$work/$name-$VERSION.tgz"
  want="$(printf '%s' "${integrity#sha512-}" | base64 -d | od -An -v -tx1 | tr -d ' \n')"
  got="$(sha512sum "$tgz" | cut -d' ' -f1)"
  if [ "$want" != "$got" ]; then
    echo "fetch-sodium: $name-$VERSION.tgz has sha512 $got, the pin says $want: not installed" >&2
    exit 3
  fi
  mkdir -p "$work/$name"
  tar -xzf "$tgz" -C "$work/$name" --strip-components=1
done

mkdir -p "$dest"
cp "$work/libsodium/dist/modules/libsodium.js" "$dest/libsodium.js"
cp "$work/libsodium-wrappers/dist/modules/libsodium-wrappers.js" "$dest/libsodium-wrappers.js"
cp "$work/libsodium/LICENSE" "$dest/LICENSE"
echo "$VERSION" >"$stamp"
echo "libsodium.js $VERSION (sha512 verified) in $dest"
