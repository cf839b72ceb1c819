#!/usr/bin/env bash
# fetch-agent.sh VERSION ARCH DEST: at image build time, downloads the
# Azure Pipelines agent package for a Docker TARGETARCH (amd64 or arm64),
# verifies its SHA-256 and unpacks it into DEST. The check is never skipped.
# The expected SHA-256 comes from the first of these that has one:
#
#   1. a line for the package in agent-packages.sha256 (pinned by you);
#   2. Azure DevOps itself, when the build is given an organization
#      (AZP_URL) and a PAT in the file AZP_TOKEN_FILE (a BuildKit secret):
#      the hashValue of the package in _apis/distributedtask/packages/agent,
#      the value the agent's own self-update verifies a new package against
#      (a SHA-256 of the archive: IOUtil.GetFileHash, compared without
#      dashes and case);
#   3. the "Agent Downloads" table of the agent's release notes on GitHub
#      (read through GitHub's releases API).
#
# A source that is asked and cannot be read fails the build: it never
# falls through to a weaker one. Azure DevOps only lists the packages it
# offers now, so a pinned older VERSION it does not list goes on to GitHub,
# and the build says so. The source used is printed.
#
# VERSION "" means the one in agent-version beside this script.
#
#   AGENT_SHA256_FILE  the pinned checksums (default: beside this script)
#   AGENT_BASE_URL     where packages are (default: Microsoft's download site)
#   AZP_URL            organization URL, for source 2 (optional)
#   AZP_TOKEN_FILE     its PAT (default /run/secrets/azp_token)
#   GITHUB_API_URL     default https://api.github.com
#   GITHUB_TOKEN_FILE  optional token for GitHub's rate limit (default /run/secrets/github_token)
set -euo pipefail

die() { echo "fetch-agent.sh: $*" >&2; exit 1; }
log() { echo "fetch-agent.sh: $*" >&2; }
[[ $# -eq 3 ]] || die "usage: fetch-agent.sh VERSION ARCH DEST"
version=$1 arch=$2 dest=$3
here=$(dirname "$0")
if [[ -z "$version" ]]; then
  version=$(tr -d ' \r\n' <"$here/agent-version") || die "no VERSION and no $here/agent-version"
fi
[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "agent version '$version' is not MAJOR.MINOR.PATCH"
sums=${AGENT_SHA256_FILE:-$here/agent-packages.sha256}
base=${AGENT_BASE_URL:-https://download.agent.dev.azure.com/agent}
github=${GITHUB_API_URL:-https://api.github.com}

case "$arch" in
  amd64) pkg=linux-x64 ;;
  arm64) pkg=linux-arm64 ;;
  *) die "no agent package for architecture '$arch': amd64 or arm64 (build with BuildKit, which sets TARGETARCH)" ;;
esac
file="vsts-agent-$pkg-$version.tar.gz"

# normalize prints a SHA-256 as 64 lowercase hex digits (the agent writes
# them upper case with dashes), or nothing.
normalize() {
  local h
  h=$(printf '%s' "$1" | tr -d '-' | tr 'A-F' 'a-f')
  [[ "$h" =~ ^[0-9a-f]{64}$ ]] && printf '%s' "$h"
  return 0
}

# get URL [TOKEN_FILE BASIC]: the body of a GET; the credential goes to
# curl on stdin, never on a command line or into the output.
get() {
  local url=$1 token_file=${2:-} basic=${3:-}
  if [[ -n "$token_file" ]]; then
    local token auth
    token=$(tr -d '\r\n' <"$token_file")
    if [[ -n "$basic" ]]; then
      auth="Basic $(printf ':%s' "$token" | base64 -w0)"
    else
      auth="Bearer $token"
    fi
    printf 'header = "Authorization: %s"\n' "$auth" | curl -fsS --retry 2 -K - "$url"
  else
    curl -fsS --retry 2 "$url"
  fi
}

want="" source=""

# 1. Pinned.
if [[ -r "$sums" ]]; then
  want=$(normalize "$(awk -v f="$file" '$1 !~ /^#/ && $2 == f {print $1}' "$sums")")
  [[ -n "$want" ]] && source="the pinned line in $(basename "$sums")"
fi

# 2. Azure DevOps' own package list.
if [[ -z "$want" && -n "${AZP_URL:-}" ]]; then
  token_file=${AZP_TOKEN_FILE:-/run/secrets/azp_token}
  [[ -s "$token_file" ]] || die "AZP_URL is set but there is no PAT in $token_file (pass it as a BuildKit secret: --secret id=azp_token,src=FILE)"
  # No api-version, as Microsoft's own agent image scripts call it: the resource's versions lag
  # the others' (7.1 is out of its range).
  url="${AZP_URL%/}/_apis/distributedtask/packages/agent?platform=$pkg&top=100"
  body=$(get "$url" "$token_file" basic) || die "cannot read the agent packages of ${AZP_URL%/} (is the PAT valid, with Agent Pools read?); not falling back"
  # One package per record ({...},{...}); the one whose filename is ours.
  hash=$(printf '%s' "$body" | awk -v RS='[}][ \t\r\n]*,[ \t\r\n]*[{]' -v f="\"$file\"" '
    index($0, "\"filename\":" f) || index($0, "\"filename\": " f) {
      if (match($0, /"hashValue"[ ]*:[ ]*"[^"]*"/)) { v = substr($0, RSTART, RLENGTH); sub(/^"hashValue"[ ]*:[ ]*"/, "", v); sub(/"$/, "", v); print v; exit }
    }')
  if [[ -n "$hash" ]]; then
    want=$(normalize "$hash")
    [[ -n "$want" ]] || die "Azure DevOps gives $file the hash '$hash', which is not a SHA-256; refusing it"
    source="Azure DevOps (${AZP_URL%/}, _apis/distributedtask/packages/agent hashValue)"
  else
    log "Azure DevOps does not list $file (it lists only the packages it offers now); trying the release notes on GitHub"
  fi
fi

# 3. The release notes on GitHub.
if [[ -z "$want" ]]; then
  token_file=${GITHUB_TOKEN_FILE:-/run/secrets/github_token}
  [[ -s "$token_file" ]] || token_file=""
  release="${github%/}/repos/microsoft/azure-pipelines-agent/releases/tags/v$version"
  json=$(get "$release" "$token_file") || die "no SHA-256 for $file: not pinned in $(basename "$sums"), no Azure DevOps to ask (AZP_URL), and GitHub's release v$version cannot be read ($release)"
  # The release's body (a JSON string); its table row for the package.
  body=$(printf '%s' "$json" | grep -o '"body"[ ]*:[ ]*"\([^"\\]\|\\.\)*"' | head -n1 | sed 's/\\r\\n/\n/g; s/\\n/\n/g') || true
  hash=$(printf '%s\n' "$body" | grep -F "$file" | grep -oE '(^|[^0-9a-fA-F])[0-9a-fA-F]{64}([^0-9a-fA-F]|$)' | head -n1 | tr -dc '0-9a-fA-F') || true
  want=$(normalize "$hash")
  [[ -n "$want" ]] || die "no SHA-256 for $file in the release notes of v$version ($release)"
  source="the release notes of v$version on GitHub"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
curl -fsSL --retry 2 -o "$tmp/$file" "$base/$version/$file" || die "cannot download $base/$version/$file"
got=$(sha256sum "$tmp/$file" | cut -d' ' -f1)
[[ "$got" == "$want" ]] || die "$file has SHA-256 $got, but $source says $want: refusing it"
mkdir -p "$dest"
tar -xzf "$tmp/$file" -C "$dest"
echo "fetch-agent.sh: $file verified against $source (SHA-256 $want) and unpacked into $dest"
