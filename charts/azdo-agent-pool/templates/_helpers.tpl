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

{{/* The names extraEnv sets, comma-separated (no env var name holds a comma): the chart's own
variables leave a name to extraEnv, since a name may appear once in a container. */}}
{{- define "azdo-agent-pool.extraEnvNames" -}}
{{- $names := list }}
{{- range .Values.extraEnv }}{{ $names = append $names .name }}{{ end }}
{{- join "," $names }}
{{- end -}}

{{/*
The trigger's capabilities as the agent's environment: the agent reports its
environment variables as capabilities (at registration and each time it
starts listening), so what the trigger claims is what Azure DevOps sees.
Agent.* capabilities are the agent's own and are skipped; a bare NAME gets
the value "true". A name extraEnv sets is left to extraEnv (both the register
and the agent container get it): an env var may appear only once.
*/}}
{{- define "azdo-agent-pool.capabilityEnv" -}}
{{- $user := include "azdo-agent-pool.extraEnvNames" . | splitList "," }}
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

{{/*
The proxy's environment (.agent: the register and agent containers, which
also get VSTS_HTTP_PROXY, the variable the agent itself reads first). The
cluster's own names are never proxied. A name extraEnv sets is left to it
in the containers that get extraEnv.
*/}}
{{- define "azdo-agent-pool.proxyEnv" -}}
{{- $p := .Values.proxy }}
{{- $user := list }}
{{- if .agent }}{{ $user = include "azdo-agent-pool.extraEnvNames" . | splitList "," }}{{ end }}
{{- if or $p.httpProxy $p.httpsProxy }}
{{- $no := join "," (concat (list "$(KUBERNETES_SERVICE_HOST)" "kubernetes.default.svc" ".svc" ".cluster.local" "localhost" "127.0.0.1") ($p.noProxy | default list)) }}
{{- $env := list }}
{{- with $p.httpProxy }}{{ $env = concat $env (list (list "HTTP_PROXY" .) (list "http_proxy" .)) }}{{ end }}
{{- with $p.httpsProxy }}{{ $env = concat $env (list (list "HTTPS_PROXY" .) (list "https_proxy" .)) }}{{ end }}
{{- $env = concat $env (list (list "NO_PROXY" $no) (list "no_proxy" $no)) }}
{{- if .agent }}{{ $env = append $env (list "VSTS_HTTP_PROXY" ($p.httpsProxy | default $p.httpProxy)) }}{{ end }}
{{- range $env }}
{{- if not (has (index . 0) $user) }}
- {name: {{ index . 0 }}, value: {{ index . 1 | quote }}}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Where the extra CAs are mounted, when there are any. */}}
{{- define "azdo-agent-pool.caDir" -}}
{{- if or .Values.caBundle.configMap .Values.caBundle.secret }}/etc/azp/ca{{ end -}}
{{- end -}}

{{/* The Docker daemon's extra environment: the proxy, and the extra CAs beside the image's (Go reads SSL_CERT_DIR). */}}
{{- define "azdo-agent-pool.dindEnv" -}}
{{- include "azdo-agent-pool.proxyEnv" (dict "Values" .Values "agent" false) }}
{{- with .caDir }}
- {name: SSL_CERT_DIR, value: "/etc/ssl/certs:{{ . }}"}
{{- end }}
{{- end -}}

{{/* How start.sh (or start.ps1) finds the registration credential; .file is the Secret's mount path with its separator. */}}
{{- define "azdo-agent-pool.credentialEnv" -}}
{{- if eq .Values.azp.auth "service-principal" }}
- {name: AZP_AUTH, value: SP}
- {name: AZP_TENANT_ID, value: {{ .Values.azp.tenantId | quote }}}
- {name: AZP_CLIENT_ID, value: {{ .Values.azp.clientId | quote }}}
- {name: AZP_CLIENT_SECRET_FILE, value: {{ printf "%sclientSecret" .file | quote }}}
{{- with .Values.azp.authorityHost }}
- {name: AZURE_AUTHORITY_HOST, value: {{ . | quote }}}
{{- end }}
{{- else }}
- {name: AZP_TOKEN_FILE, value: {{ printf "%spat" .file | quote }}}
{{- end }}
{{- end -}}
