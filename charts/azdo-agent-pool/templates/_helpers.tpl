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
