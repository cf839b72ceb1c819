{{- define "azdo-keda-scaler.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "azdo-keda-scaler.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
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

{{/* The proxy's port, from proxy.httpsProxy (http://host:port): what the NetworkPolicy lets the pods reach. */}}
{{- define "azdo-keda-scaler.proxyPort" -}}
{{- $u := urlParse .Values.proxy.httpsProxy -}}
{{- $hostPort := splitList ":" $u.host -}}
{{- if gt (len $hostPort) 1 -}}
{{- last $hostPort -}}
{{- else if eq $u.scheme "https" -}}
443
{{- else -}}
80
{{- end -}}
{{- end -}}

{{/* gRPC TLS: the server's Secret (generated or brought). */}}
{{- define "azdo-keda-scaler.tlsSecret" -}}
{{- default (printf "%s-tls" (include "azdo-keda-scaler.fullname" .)) .Values.tls.existingSecret -}}
{{- end -}}

{{/* gRPC TLS: KEDA's client Secret in keda.namespace ("" when brought without one). */}}
{{- define "azdo-keda-scaler.tlsClientSecret" -}}
{{- if .Values.tls.existingSecret -}}
{{- .Values.tls.existingClientSecret -}}
{{- else -}}
{{- printf "%s-keda-client" (include "azdo-keda-scaler.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* gRPC TLS: the client names the scaler admits, comma-separated. */}}
{{- define "azdo-keda-scaler.tlsClientNames" -}}
{{- $names := .Values.tls.clientNames -}}
{{- if not .Values.tls.existingSecret -}}
{{- $names = prepend $names (printf "%s-keda" (include "azdo-keda-scaler.fullname" .)) -}}
{{- end -}}
{{- join "," ($names | uniq) -}}
{{- end -}}

{{/* gRPC TLS: the ClusterTriggerAuthentication pools reference. */}}
{{- define "azdo-keda-scaler.clusterTriggerAuthentication" -}}
{{- default (include "azdo-keda-scaler.fullname" .) .Values.tls.clusterTriggerAuthentication.name -}}
{{- end -}}
