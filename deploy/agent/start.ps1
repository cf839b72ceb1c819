# start.ps1: one Azure Pipelines job per Windows pod, start.sh's contract as far as Windows allows.
#
#   start.ps1 [all]   registers the pod as an agent (config.cmd --replace --disableupdate), runs
#                     exactly one job (run.cmd --once) and removes the agent when it leaves.
#
# Only one mode: the Windows agent keeps its RSA key under DPAPI's machine scope (or in the machine
# key store), which a second container cannot open, so the register-in-an-init-container split of
# start.sh does not carry over. The PAT (or client secret) is read from its file into a variable
# and handed to config.cmd only through VSTS_AGENT_INPUT_TOKEN (VSTS_AGENT_INPUT_CLIENTSECRET),
# removed again before the job runs; the mounted Secret file stays readable in the container.
#
# An agent that no job reached within AZP_IDLE_TIMEOUT seconds (300; 0: never) leaves with exit 0.
# On a stop, Windows sends the container's processes CTRL_SHUTDOWN_EVENT; the agent handles it
# itself (start.sh's AZP_STOP_TIMEOUT has no counterpart here).
#
# Environment: AZP_URL, AZP_POOL (required); AZP_AUTH (PAT or SP); AZP_TOKEN_FILE
# (default C:\azp\secrets\pat); AZP_TENANT_ID, AZP_CLIENT_ID, AZP_CLIENT_SECRET_FILE
# (default C:\azp\secrets\clientSecret) for SP; AZP_AGENT_NAME (default: the host name);
# AZP_WORK (default C:\azp\_work); AZP_AGENT_DIR (default C:\azp\agent); AZP_IDLE_TIMEOUT.
#
# Untested on this project's machines (no PowerShell there).
param([ValidateSet('all')][string]$Mode = 'all')
$ErrorActionPreference = 'Stop'

function Log([string]$Message) { Write-Host "$((Get-Date).ToUniversalTime().ToString('yyyy-MM-ddTHH:mm:ssZ')) start.ps1: $Message" }
function Die([string]$Message) { Log "error: $Message"; exit 1 }
function Default([string]$Value, [string]$Fallback) { if ($Value) { $Value } else { $Fallback } }

if (-not $env:AZP_URL) { Die 'AZP_URL is required (e.g. https://dev.azure.com/contoso)' }
if (-not $env:AZP_POOL) { Die 'AZP_POOL is required' }
$url = $env:AZP_URL.TrimEnd('/')
$auth = (Default $env:AZP_AUTH 'PAT').ToUpperInvariant()
$agentName = Default $env:AZP_AGENT_NAME $env:COMPUTERNAME
$work = Default $env:AZP_WORK 'C:\azp\_work'
$agentDir = Default $env:AZP_AGENT_DIR 'C:\azp\agent'
$idle = [int](Default $env:AZP_IDLE_TIMEOUT '300')

switch ($auth) {
  'PAT' { $file = Default $env:AZP_TOKEN_FILE 'C:\azp\secrets\pat'; $var = 'AZP_TOKEN'; $inputVar = 'VSTS_AGENT_INPUT_TOKEN' }
  'SP' {
    if (-not $env:AZP_TENANT_ID -or -not $env:AZP_CLIENT_ID) { Die 'AZP_TENANT_ID and AZP_CLIENT_ID are required with AZP_AUTH=SP' }
    $file = Default $env:AZP_CLIENT_SECRET_FILE 'C:\azp\secrets\clientSecret'; $var = 'AZP_CLIENT_SECRET'; $inputVar = 'VSTS_AGENT_INPUT_CLIENTSECRET'
  }
  default { Die "AZP_AUTH must be PAT or SP, got '$auth'" }
}
$secret = [Environment]::GetEnvironmentVariable($var)
if (-not $secret) {
  if (-not (Test-Path $file)) { Die "no credential: $file is not readable and $var is not set" }
  $secret = (Get-Content $file -Raw).Trim()
}
Remove-Item "Env:$var" -ErrorAction SilentlyContinue
if (-not $secret) { Die "the credential in $file is empty" }

function Invoke-Config([string[]]$Arguments) {
  $extra = if ($auth -eq 'SP') { @('--auth', 'SP', '--clientId', $env:AZP_CLIENT_ID, '--tenantId', $env:AZP_TENANT_ID) } else { @('--auth', 'PAT') }
  [Environment]::SetEnvironmentVariable($inputVar, $secret, 'Process')
  try {
    Push-Location $agentDir
    # Out-Host: config.cmd's output is the log's, not this function's return value.
    & .\config.cmd @Arguments @extra | Out-Host
    return $LASTEXITCODE
  } finally {
    Pop-Location
    [Environment]::SetEnvironmentVariable($inputVar, $null, 'Process')
  }
}

Log "registering agent $agentName in pool $env:AZP_POOL of $url"
# --disableupdate: a single-run agent must not update itself in the middle of its one job.
$rc = Invoke-Config @('--unattended', '--url', $url, '--pool', $env:AZP_POOL, '--agent', $agentName, '--work', $work, '--replace', '--acceptTeeEula', '--disableupdate')
if ($rc -ne 0) { Die "config.cmd could not register agent $agentName in pool $env:AZP_POOL (exit $rc; see its output above)" }

$exit = 0
try {
  Log "running one job (leaving if none arrives within ${idle}s; 0: never)"
  $out = Join-Path $env:TEMP 'agent.out'
  $proc = Start-Process -FilePath (Join-Path $agentDir 'run.cmd') -ArgumentList '--once' -WorkingDirectory $agentDir `
    -RedirectStandardOutput $out -RedirectStandardError "$out.err" -NoNewWindow -PassThru
  $deadline = (Get-Date).AddSeconds($idle); $shown = 0; $started = $false
  while (-not $proc.HasExited) {
    if (Test-Path $out) {
      $lines = @(Get-Content $out)
      for (; $shown -lt $lines.Count; $shown++) {
        Write-Host $lines[$shown]
        if ($lines[$shown] -match 'Running job:') { $started = $true }
      }
    }
    if (-not $started -and $idle -gt 0 -and (Get-Date) -ge $deadline) {
      Log "no job reached agent $agentName within ${idle}s (AZP_IDLE_TIMEOUT): another agent took the job this pod was started for; leaving"
      # The whole tree: run.cmd's Agent.Listener outlives a killed cmd.exe.
      & taskkill.exe /T /F /PID $proc.Id | Out-Host
      break
    }
    Start-Sleep -Milliseconds 500
  }
  $proc.WaitForExit()
  if (Test-Path $out) { Get-Content $out | Select-Object -Skip $shown | Write-Host }
  $exit = if ($started) { $proc.ExitCode } else { 0 }
  Log "agent exited with $exit"
} finally {
  for ($i = 1; $i -le 30; $i++) {
    if ((Invoke-Config @('remove', '--unattended')) -eq 0) { Log "agent $agentName removed"; break }
    Log "removing agent $agentName failed (attempt $i/30), retrying in 10s"
    Start-Sleep -Seconds 10
  }
}
exit $exit
