{{- define "azdo-agent-pool.fullname" -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- end -}}

{{- define "azdo-agent-pool.labels" -}}
app.kubernetes.io/name: azdo-agent-pool
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "azdo-agent-pool.patSecret" -}}
{{- if .Values.azp.existingSecret -}}
{{- .Values.azp.existingSecret -}}
{{- else -}}
{{- printf "%s-pat" (include "azdo-agent-pool.fullname" .) -}}
{{- end -}}
{{- end -}}
