# fetch-agent.ps1 -Version V -Dest D: the Windows counterpart of fetch-agent.sh, at image build time.
# Downloads vsts-agent-win-x64-V.zip, verifies its SHA-256 and unpacks it into D. The check is never
# skipped; the expected value comes from a line in agent-packages.sha256, else from the "Agent
# Downloads" table of the agent's release notes on GitHub (GitHub's releases API). Azure DevOps'
# package list is not a source here: the Windows builder has no BuildKit secrets to hand it a PAT.
# Untested on this project's machines (no PowerShell there); fetch-agent.sh has the same logic, tested.
param([string]$Version = '', [Parameter(Mandatory = $true)][string]$Dest)
$ErrorActionPreference = 'Stop'
function Die([string]$Message) { Write-Error "fetch-agent.ps1: $Message"; exit 1 }
$here = Split-Path -Parent $MyInvocation.MyCommand.Path
if (-not $Version) { $Version = (Get-Content (Join-Path $here 'agent-version') -Raw).Trim() }
if ($Version -notmatch '^\d+\.\d+\.\d+$') { Die "agent version '$Version' is not MAJOR.MINOR.PATCH" }
$file = "vsts-agent-win-x64-$Version.zip"
$base = if ($env:AGENT_BASE_URL) { $env:AGENT_BASE_URL } else { 'https://download.agent.dev.azure.com/agent' }
$github = if ($env:GITHUB_API_URL) { $env:GITHUB_API_URL } else { 'https://api.github.com' }

$want = ''; $source = ''
$sums = Join-Path $here 'agent-packages.sha256'
if (Test-Path $sums) {
  foreach ($line in Get-Content $sums) {
    $f = $line -split '\s+'
    if ($line -notmatch '^#' -and $f.Count -ge 2 -and $f[1] -eq $file) { $want = $f[0].Replace('-', '').ToLowerInvariant(); $source = 'the pinned line in agent-packages.sha256' }
  }
}
if (-not $want) {
  $release = "$($github.TrimEnd('/'))/repos/microsoft/azure-pipelines-agent/releases/tags/v$Version"
  try { $notes = (Invoke-RestMethod -Uri $release -UseBasicParsing).body } catch { Die "no SHA-256 for ${file}: not pinned, and GitHub's release v$Version cannot be read ($release)" }
  foreach ($row in ($notes -split "`n")) {
    if ($row.Contains($file) -and $row -match '(?<![0-9a-fA-F])([0-9a-fA-F]{64})(?![0-9a-fA-F])') { $want = $Matches[1].ToLowerInvariant(); break }
  }
  if (-not $want) { Die "no SHA-256 for $file in the release notes of v$Version ($release)" }
  $source = "the release notes of v$Version on GitHub"
}
if ($want -notmatch '^[0-9a-f]{64}$') { Die "'$want' from $source is not a SHA-256" }

$zip = Join-Path $env:TEMP $file
Invoke-WebRequest -Uri "$base/$Version/$file" -OutFile $zip -UseBasicParsing
$got = (Get-FileHash -Algorithm SHA256 $zip).Hash.ToLowerInvariant()
if ($got -ne $want) { Die "$file has SHA-256 $got, but $source says ${want}: refusing it" }
New-Item -ItemType Directory -Force $Dest | Out-Null
Expand-Archive -Path $zip -DestinationPath $Dest
Remove-Item $zip
Write-Host "fetch-agent.ps1: $file verified against $source (SHA-256 $want) and unpacked into $Dest"
