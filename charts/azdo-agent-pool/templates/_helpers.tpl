{{- define "azdo-agent-pool.fullname" -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of the agent pods: none changes with the chart's version. */}}
{{- define "azdo-agent-pool.selectorLabels" -}}
app.kubernetes.io/name: azdo-agent-pool
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "azdo-agent-pool.labels" -}}
{{ include "azdo-agent-pool.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The registration credential's file name in the register container, and its default key in the Secret. */}}
{{- define "azdo-agent-pool.credentialFile" -}}
{{- ternary "clientSecret" "pat" (eq .Values.azp.auth "service-principal") -}}
{{- end -}}

{{/* The key of the registration credential in its Secret. */}}
{{- define "azdo-agent-pool.secretKey" -}}
{{- .Values.azp.secretKey | default (include "azdo-agent-pool.credentialFile" .) -}}
{{- end -}}

{{- define "azdo-agent-pool.credentialSecret" -}}
{{- if .Values.azp.existingSecret -}}
{{- .Values.azp.existingSecret -}}
{{- else -}}
{{- printf "%s-pat" (include "azdo-agent-pool.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/*
The trigger's capabilities as the agent's environment: the agent reports its
environment variables as capabilities (at registration and each time it
starts listening), so what the trigger claims is what Azure DevOps sees.
Agent.* capabilities are the agent's own and are skipped; a bare NAME gets
the value "true". In the agent container (agent: true) a name extraEnv sets
is left to extraEnv: an env var may appear only once.
*/}}
{{- define "azdo-agent-pool.capabilityEnv" -}}
{{- $user := list }}
{{- if .agent }}
{{- range .Values.extraEnv }}{{ $user = append $user .name }}{{ end }}
{{- end }}
{{- range (splitList "," (.Values.trigger.capabilities | default "")) }}
{{- $c := trim . }}
{{- if and $c (not (hasPrefix "agent." (lower $c))) }}
{{- $name := $c }}
{{- $value := "true" }}
{{- if contains "=" $c }}
{{- $name = trim (regexReplaceAll "=.*$" $c "") }}
{{- $value = trim (regexReplaceAll "^[^=]*=" $c "") }}
{{- end }}
{{- if not (has $name $user) }}
- {name: {{ $name | quote }}, value: {{ $value | quote }}}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}
