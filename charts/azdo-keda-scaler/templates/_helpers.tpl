{{- define "azdo-keda-scaler.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "azdo-keda-scaler.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "azdo-keda-scaler.selectorLabels" -}}
app.kubernetes.io/name: {{ include "azdo-keda-scaler.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "azdo-keda-scaler.labels" -}}
{{ include "azdo-keda-scaler.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "azdo-keda-scaler.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "azdo-keda-scaler.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding organization i's PAT. */}}
{{- define "azdo-keda-scaler.patSecret" -}}
{{- $org := index .root.Values.organizations .index -}}
{{- if $org.existingSecret -}}
{{- $org.existingSecret -}}
{{- else -}}
{{- printf "%s-pat-%d" (include "azdo-keda-scaler.fullname" .root) .index | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The sweeper's Lease. */}}
{{- define "azdo-keda-scaler.lease" -}}
{{- default (include "azdo-keda-scaler.fullname" .) .Values.leaderElection.lease -}}
{{- end -}}
