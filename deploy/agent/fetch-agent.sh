#!/usr/bin/env bash
# fetch-agent.sh VERSION ARCH DEST: at image build time, downloads the
# Azure Pipelines agent package for a Docker TARGETARCH (amd64 or arm64),
# checks its SHA-256 against agent-packages.sha256 and unpacks it into DEST.
# The check is never skipped: a package without a pinned checksum, or one
# that does not match it, fails the build.
#
#   AGENT_SHA256_FILE  the checksum file (default: beside this script)
#   AGENT_BASE_URL     where packages are (default: Microsoft's download site)
set -euo pipefail

die() { echo "fetch-agent.sh: $*" >&2; exit 1; }
[[ $# -eq 3 ]] || die "usage: fetch-agent.sh VERSION ARCH DEST"
version=$1 arch=$2 dest=$3
sums=${AGENT_SHA256_FILE:-$(dirname "$0")/agent-packages.sha256}
base=${AGENT_BASE_URL:-https://download.agent.dev.azure.com/agent}

case "$arch" in
  amd64) pkg=linux-x64 ;;
  arm64) pkg=linux-arm64 ;;
  *) die "no agent package for architecture '$arch': amd64 or arm64 (build with BuildKit, which sets TARGETARCH)" ;;
esac
file="vsts-agent-$pkg-$version.tar.gz"
want=$(awk -v f="$file" '$1 !~ /^#/ && $2 == f {print $1}' "$sums")
[[ "$want" =~ ^[0-9a-f]{64}$ ]] ||
  die "no SHA-256 for $file in $(basename "$sums"): add the one Microsoft publishes with the release (https://github.com/microsoft/azure-pipelines-agent/releases/tag/v$version)"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
curl -fsSL -o "$tmp/$file" "$base/$version/$file" || die "cannot download $base/$version/$file"
echo "$want  $tmp/$file" | sha256sum -c --quiet - >/dev/null 2>&1 ||
  die "$file does not match its pinned SHA-256 $want: refusing it"
mkdir -p "$dest"
tar -xzf "$tmp/$file" -C "$dest"
echo "fetch-agent.sh: $file verified and unpacked into $dest"
