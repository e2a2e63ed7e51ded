#!/bin/sh
# Installs the agent-attr binary for this machine from one release (README "Install"):
#
#   curl -fsSL RELEASE_URL/install.sh | sh -s -- --dir ~/.local/bin
#
# It detects the platform, downloads SHA256SUMS and the matching binary from the release URL,
# checks the binary's SHA-256 against SHA256SUMS and refuses on a mismatch (nothing is installed,
# an existing agent-attr is left as it was), then installs it as DIR/agent-attr.
#
# Options:
#   --dir DIR          where to install (default: $AGENT_ATTR_INSTALL_DIR, else $HOME/.local/bin)
#   --url URL          the release: the folder holding SHA256SUMS and the binaries
#                      (default: $AGENT_ATTR_RELEASE_URL, else RELEASE_URL below)
#   --platform NAME    install another platform's binary: linux-x64, linux-arm64, linux-x64-musl,
#                      darwin-x64, darwin-arm64, windows-x64 (default: this machine's)
#   --public-key FILE  also check the signature SHA256SUMS.sig with this public key
#                      (agent-attr-release.pem, from a source you trust; needs OpenSSL 3)
set -eu

# The release this script installs from: the one place it is set. `bun run release --base-url URL`
# writes the release's own URL here in the copy of this script it puts beside the binaries.
RELEASE_URL=""

say() { printf 'agent-attr install: %s\n' "$*" >&2; }
fail() {
  say "$*"
  exit 1
}
usage() {
  say "$*"
  say "usage: install.sh [--dir DIR] [--url URL] [--platform NAME] [--public-key FILE]"
  exit 2
}

dir="${AGENT_ATTR_INSTALL_DIR:-${HOME:-}/.local/bin}"
url="${AGENT_ATTR_RELEASE_URL:-$RELEASE_URL}"
platform=""
public_key=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dir | --url | --platform | --public-key)
      [ $# -ge 2 ] || usage "$1 needs a value"
      case "$1" in
        --dir) dir="$2" ;;
        --url) url="$2" ;;
        --platform) platform="$2" ;;
        --public-key) public_key="$2" ;;
      esac
      shift 2
      ;;
    -h | --help) usage "installs agent-attr from a release" ;;
    *) usage "unknown argument '$1'" ;;
  esac
done

[ -n "$url" ] || usage "no release URL: pass --url URL (the folder with SHA256SUMS and the binaries) or set AGENT_ATTR_RELEASE_URL"
[ -n "$dir" ] || usage "no install folder: pass --dir DIR"
url="${url%/}"
# The checksum comes from the same place as the binary, so the transport must be trusted: https,
# or plain http to this machine only (a local mirror, the tests).
case "$url" in
  https://*) ;;
  http://127.0.0.1[:/]* | http://localhost[:/]* | http://\[::1\][:/]*) ;;
  *) fail "the release URL must be https:// (plain http only to localhost): $url" ;;
esac

is_musl() {
  if command -v ldd >/dev/null 2>&1; then
    ldd_says="$(ldd --version 2>&1 || true)"
    case "$ldd_says" in
      *musl*) return 0 ;;
      *GLIBC* | *"GNU libc"* | *glibc*) return 1 ;;
    esac
  fi
  for loader in /lib/ld-musl-*.so.1; do
    [ -e "$loader" ] && return 0
  done
  return 1
}

host_platform() {
  kernel="$(uname -s)"
  machine="$(uname -m)"
  case "$kernel" in
    Linux) os=linux ;;
    Darwin) os=darwin ;;
    MINGW* | MSYS* | CYGWIN* | Windows_NT) os=windows ;;
    *) fail "no agent-attr build for the operating system '$kernel' (builds: Linux, macOS, Windows)" ;;
  esac
  case "$machine" in
    x86_64 | amd64) arch=x64 ;;
    aarch64 | arm64) arch=arm64 ;;
    *) fail "no agent-attr build for the CPU '$machine' (builds: x86_64, arm64)" ;;
  esac
  # An x64 shell on Apple silicon (Rosetta) still gets the native arm64 binary.
  if [ "$os" = darwin ] && [ "$arch" = x64 ] && [ "$(sysctl -n sysctl.proc_translated 2>/dev/null || echo 0)" = 1 ]; then
    arch=arm64
  fi
  if [ "$os" = linux ] && is_musl; then
    [ "$arch" = x64 ] || fail "no agent-attr build for linux-arm64 with musl (Alpine); use a glibc system or image on arm64"
    echo "linux-x64-musl"
  else
    echo "$os-$arch"
  fi
}

if [ -n "$platform" ]; then
  host="$(host_platform 2>/dev/null)" || host=unknown
else
  host="$(host_platform)"
  platform="$host"
fi
case "$platform" in
  linux-x64 | linux-arm64 | linux-x64-musl | darwin-x64 | darwin-arm64) ext="" ;;
  windows-x64) ext=".exe" ;;
  *) usage "unknown platform '$platform' (linux-x64, linux-arm64, linux-x64-musl, darwin-x64, darwin-arm64, windows-x64)" ;;
esac

fetch() {
  if command -v curl >/dev/null 2>&1; then
    curl -fsSL --retry 2 -o "$2" "$1" || fail "cannot download $1 (curl exit $?)"
  elif command -v wget >/dev/null 2>&1; then
    wget -q -O "$2" "$1" || fail "cannot download $1 (wget exit $?)"
  else
    fail "neither curl nor wget is installed: install one of them"
  fi
}

sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d ' ' -f 1
  elif command -v shasum >/dev/null 2>&1; then
    shasum -a 256 "$1" | cut -d ' ' -f 1
  elif command -v openssl >/dev/null 2>&1; then
    openssl dgst -sha256 -r "$1" | cut -d ' ' -f 1
  else
    fail "no sha256sum, shasum or openssl to check the download with: install one of them"
  fi
}

work="$(mktemp -d 2>/dev/null || mktemp -d -t agent-attr)"
staged=""
cleanup() {
  rm -rf "$work"
  if [ -n "$staged" ]; then rm -f "$staged"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fetch "$url/SHA256SUMS" "$work/SHA256SUMS"
if [ -n "$public_key" ]; then
  [ -r "$public_key" ] || fail "cannot read the public key $public_key"
  command -v openssl >/dev/null 2>&1 || fail "--public-key needs openssl (OpenSSL 3) to check the signature"
  fetch "$url/SHA256SUMS.sig" "$work/SHA256SUMS.sig"
  openssl pkeyutl -verify -pubin -inkey "$public_key" -rawin -in "$work/SHA256SUMS" -sigfile "$work/SHA256SUMS.sig" >/dev/null 2>&1 ||
    fail "the signature of SHA256SUMS does not match the key $public_key (or this openssl is older than 3.0): nothing was installed"
  say "SHA256SUMS is signed by the key in $public_key"
fi

# The one line of SHA256SUMS for this platform: "<sha256>  agent-attr-<version>-<platform>[.exe]".
suffix="-$platform$ext"
matches="$(awk -v suffix="$suffix" '{
  name = $2; sub(/^\*/, "", name)
  if (index(name, "agent-attr-") == 1 && length(name) > length(suffix) + 11 && substr(name, length(name) - length(suffix) + 1) == suffix) print $1, name
}' "$work/SHA256SUMS")"
[ -n "$matches" ] || fail "the release at $url has no binary for $platform (SHA256SUMS lists none)"
[ "$(printf '%s\n' "$matches" | wc -l | tr -d ' ')" = 1 ] || fail "SHA256SUMS at $url lists more than one binary for $platform"
expected="${matches%% *}"
name="${matches#* }"
case "$expected" in
  *[!0-9a-f]*) fail "SHA256SUMS at $url is malformed (the checksum for $name is not hex)" ;;
esac
[ "${#expected}" = 64 ] || fail "SHA256SUMS at $url is malformed (the checksum for $name is not SHA-256)"
case "$name" in
  *[!A-Za-z0-9._-]*) fail "SHA256SUMS at $url names an unexpected file: $name" ;;
esac
version="${name#agent-attr-}"
version="${version%"$suffix"}"

say "downloading $name from $url"
fetch "$url/$name" "$work/$name"
actual="$(sha256_of "$work/$name")"
if [ "$actual" != "$expected" ]; then
  fail "checksum mismatch for $name: SHA256SUMS says $expected, the download is $actual. Nothing was installed; download again, and if it persists report it."
fi

mkdir -p "$dir" || fail "cannot create the folder $dir"
target="$dir/agent-attr$ext"
staged="$dir/.agent-attr-install.$$"
cp "$work/$name" "$staged" || fail "cannot write to $dir"
chmod 755 "$staged"
mv -f "$staged" "$target" || fail "cannot replace $target"
staged=""

if [ "$platform" = "$host" ]; then
  if ! runs="$("$target" --version 2>&1)"; then
    say "$target is installed but does not start here:"
    say "$runs"
    [ "$platform" != linux-x64-musl ] || say "on Alpine, the binary needs: apk add libstdc++ libgcc"
    exit 1
  fi
  echo "installed $target: agent-attr $runs"
else
  echo "installed $target: agent-attr $version for $platform (not run: this machine is $host)"
fi
case ":${PATH:-}:" in
  *":$dir:"*) ;;
  *) say "$dir is not on your PATH: add it (export PATH=\"$dir:\$PATH\") or run $target" ;;
esac
