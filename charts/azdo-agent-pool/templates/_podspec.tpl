{{/*
The agent pod. Three containers share it:
  - register (init): the only one with the PAT (or the service principal's client secret);
    registers the agent and leaves its own configuration and credentials in the state
    volume, and a copy of the agent's externals in the externals volume;
  - dind (native sidecar): Docker on a unix socket; sees the work directory, the externals,
    the cache and the extra volumes at the agent's own paths, so container jobs work;
  - agent: runs one job with the agent's credentials only. No PAT or secret is mounted here.
*/}}
{{- define "azdo-agent-pool.podSpec" -}}
{{- $sock := "/var/run/dind" -}}
{{- $externals := "/azp/agent/externals" -}}
{{- $win := eq .Values.os "windows" -}}
{{- if and $win (or .Values.caBundle.configMap .Values.caBundle.secret) -}}
{{- fail "caBundle is not supported with os: windows (start.ps1 does not add CAs): import your CA into the Windows image" -}}
{{- end -}}
{{- /* Windows: no Docker-in-Docker (Windows containers cannot nest), Windows paths. */ -}}
{{- $dind := and .Values.dind.enabled (not $win) -}}
{{- $state := ternary "C:\\azp\\state" "/azp/state" $win -}}
{{- $workDir := ternary .Values.windows.workDir .Values.azp.workDir $win -}}
{{- $secrets := ternary "C:\\azp\\secrets" "/var/run/secrets/azp" $win -}}
{{- $sep := ternary "\\" "/" $win -}}
{{- $securityContext := ternary .Values.windows.securityContext .Values.securityContext $win -}}
{{- $podSecurityContext := ternary .Values.windows.podSecurityContext .Values.podSecurityContext $win -}}
{{- $userEnv := include "azdo-agent-pool.extraEnvNames" . | splitList "," -}}
{{- $image := printf "%s:%s" .Values.image.repository (.Values.image.tag | default (printf "%s%s" .Chart.AppVersion (ternary .Values.windows.tagSuffix "" $win))) -}}
{{- $sharedMounts := list (dict "name" "work" "mountPath" $workDir) -}}
{{- if $dind }}{{ $sharedMounts = append $sharedMounts (dict "name" "externals" "mountPath" $externals) }}{{ end -}}
{{- if .Values.cache.enabled }}{{ $sharedMounts = append $sharedMounts (dict "name" "cache" "mountPath" .Values.cache.mountPath) }}{{ end -}}
{{- $sharedMounts = concat $sharedMounts .Values.extraVolumeMounts -}}
{{- $caDir := include "azdo-agent-pool.caDir" . -}}
{{- $caMounts := list -}}
{{- if $caDir }}{{ $caMounts = list (dict "name" "ca-bundle" "mountPath" $caDir "readOnly" true) }}{{ end -}}
{{- $agentResources := deepCopy .Values.resources -}}
{{- if not (hasKey ($agentResources.requests | default dict) "ephemeral-storage") -}}
{{- $_ := set $agentResources "requests" (merge (dict "ephemeral-storage" .Values.azp.workStorageRequest) ($agentResources.requests | default dict)) -}}
{{- end -}}
{{- $dindResources := deepCopy .Values.dind.resources -}}
{{- if and (eq .Values.dind.storage.type "emptyDir") (not (hasKey ($dindResources.requests | default dict) "ephemeral-storage")) -}}
{{- $_ := set $dindResources "requests" (merge (dict "ephemeral-storage" .Values.dind.storage.request) ($dindResources.requests | default dict)) -}}
{{- end -}}
restartPolicy: Never
terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
automountServiceAccountToken: {{ .Values.serviceAccount.automountToken }}
{{- with .Values.serviceAccount.name }}
serviceAccountName: {{ . }}
{{- end }}
{{- with .Values.runtimeClassName }}
runtimeClassName: {{ . }}
{{- end }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- if and $dind .Values.dind.userNamespace }}
# Its own user namespace: root in the dind sidecar is not root on the node.
hostUsers: false
{{- end }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if $win }}
os: {name: windows}
{{- end }}
securityContext:
  {{- toYaml $podSecurityContext | nindent 2 }}
initContainers:
  {{- if not $win }}
  - name: register
    image: {{ $image | quote }}
    imagePullPolicy: {{ .Values.image.pullPolicy }}
    args: [register]
    env:
      - {name: AZP_URL, value: {{ required "azp.url is required" .Values.azp.url | quote }}}
      - {name: AZP_POOL, value: {{ required "azp.pool is required" .Values.azp.pool | quote }}}
      - name: AZP_AGENT_NAME
        valueFrom: {fieldRef: {fieldPath: metadata.name}}
      {{- include "azdo-agent-pool.credentialEnv" (dict "Values" .Values "file" (printf "%s%s" $secrets $sep)) | nindent 6 }}
      - {name: AZP_WORK, value: {{ $workDir | quote }}}
      - {name: AZP_STATE_DIR, value: {{ $state | quote }}}
      {{- if $dind }}
      - {name: AZP_EXTERNALS_DIR, value: /azp/externals-copy}
      {{- end }}
      {{- include "azdo-agent-pool.capabilityEnv" (dict "Values" .Values "agent" false) | nindent 6 }}
      {{- include "azdo-agent-pool.proxyEnv" (dict "Values" .Values "agent" true) | nindent 6 }}
      {{- with $caDir }}
      - {name: AZP_CA_DIR, value: {{ . }}}
      {{- end }}
      {{- with .Values.extraEnv }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    {{- with .Values.envFrom }}
    envFrom:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    securityContext:
      {{- toYaml $securityContext | nindent 6 }}
    resources:
      {{- toYaml .Values.register.resources | nindent 6 }}
    volumeMounts:
      - {name: azp-credential, mountPath: {{ $secrets | quote }}, readOnly: true}
      - {name: state, mountPath: {{ $state | quote }}}
      {{- if $dind }}
      - {name: externals, mountPath: /azp/externals-copy}
      {{- end }}
      {{- with concat .Values.extraVolumeMounts $caMounts }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
  {{- end }}
  {{- if $dind }}
  # Docker-in-Docker as a native sidecar (restartPolicy: Always): it starts after register, the
  # agent waits for its startup probe, and it is stopped only after the agent has exited.
  - name: dind
    # Rootless uses the image's -rootless variant of the same Docker release.
    image: "{{ .Values.dind.image.repository }}:{{ .Values.dind.image.tag }}{{ if .Values.dind.rootless }}-rootless{{ end }}"
    imagePullPolicy: {{ .Values.dind.image.pullPolicy }}
    restartPolicy: Always
    {{- if .Values.dind.rootless }}
    command: [dockerd-entrypoint.sh]
    args: ["--host=unix://{{ $sock }}/docker.sock"{{ with .Values.dind.mtu }}, "--mtu={{ . }}"{{ end }}]
    env:
      - {name: DOCKER_TLS_CERTDIR, value: ""}
      - {name: XDG_RUNTIME_DIR, value: {{ $sock }}}
      {{- include "azdo-agent-pool.dindEnv" (dict "Values" .Values "caDir" $caDir) | nindent 6 }}
    securityContext:
      runAsUser: 1000
      runAsGroup: 1000
      privileged: false
      seccompProfile: {type: Unconfined}
      appArmorProfile: {type: Unconfined}
    {{- else }}
    # Only a unix socket on a shared emptyDir: no TCP port, so no TLS-off daemon on the network.
    args: ["--host=unix://{{ $sock }}/docker.sock", "--group=1000"{{ with .Values.dind.mtu }}, "--mtu={{ . }}"{{ end }}]
    env:
      - {name: DOCKER_TLS_CERTDIR, value: ""}
      {{- include "azdo-agent-pool.dindEnv" (dict "Values" .Values "caDir" $caDir) | nindent 6 }}
    securityContext:
      # Docker-in-Docker needs a privileged container (or rootless, above).
      privileged: true
    {{- end }}
    startupProbe:
      exec:
        command: [docker, "--host=unix://{{ $sock }}/docker.sock", info]
      periodSeconds: 2
      failureThreshold: 60
    resources:
      {{- toYaml $dindResources | nindent 6 }}
    volumeMounts:
      - {name: docker-socket, mountPath: {{ $sock }}}
      - {name: docker-storage, mountPath: {{ if .Values.dind.rootless }}/home/rootless/.local/share/docker{{ else }}/var/lib/docker{{ end }}}
      {{- toYaml (concat $sharedMounts $caMounts) | nindent 6 }}
  {{- end }}
  {{- with .Values.extraInitContainers }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
containers:
  - name: agent
    image: {{ $image | quote }}
    imagePullPolicy: {{ .Values.image.pullPolicy }}
    {{- if $win }}
    # Windows: one container registers, runs the job and removes the agent (start.ps1 all): the
    # Windows agent keeps its key under DPAPI's machine scope, which a second container cannot open.
    args: [all]
    {{- else }}
    args: [run]
    {{- end }}
    env:
      - {name: AZP_URL, value: {{ .Values.azp.url | quote }}}
      - {name: AZP_POOL, value: {{ .Values.azp.pool | quote }}}
      - name: AZP_AGENT_NAME
        valueFrom: {fieldRef: {fieldPath: metadata.name}}
      {{- if $win }}
      {{- include "azdo-agent-pool.credentialEnv" (dict "Values" .Values "file" (printf "%s%s" $secrets $sep)) | nindent 6 }}
      {{- end }}
      - {name: AZP_WORK, value: {{ $workDir | quote }}}
      - {name: AZP_STATE_DIR, value: {{ $state | quote }}}
      - {name: AZP_IDLE_TIMEOUT, value: {{ .Values.azp.idleTimeoutSeconds | quote }}}
      {{- if or (ne (toString .Values.standby.count) "0") .Values.standby.schedule }}
      # At the idle timeout the agent asks the scaler whether it stays as a standby agent.
      - {name: AZP_STANDBY_URL, value: {{ .Values.standby.url | default (printf "http://%s:8081/api/v1/standby" (first (splitList ":" .Values.scaler.address))) | quote }}}
      - {name: AZP_STANDBY_CHECK, value: {{ .Values.standby.checkSeconds | quote }}}
      - name: AZP_POD_NAMESPACE
        valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
      {{- end }}
      # A running job may finish within the grace period, less 15s to cancel it cleanly.
      - {name: AZP_STOP_TIMEOUT, value: {{ max 0 (sub .Values.terminationGracePeriodSeconds 15) | quote }}}
      {{- if $dind }}
      - {name: DOCKER_HOST, value: "unix://{{ $sock }}/docker.sock"}
      {{- if not (has "VSTS_SETUP_DOCKERGROUP" $userEnv) }}
      # For a container job the agent puts the job's user in the group of /var/run/docker.sock,
      # and fails the job when there is no socket there; here it is at {{ $sock }}.
      - {name: VSTS_SETUP_DOCKERGROUP, value: "false"}
      {{- end }}
      {{- with .Values.dind.mtu }}
      - {name: AGENT_DOCKER_MTU_VALUE, value: {{ . | quote }}}
      {{- end }}
      {{- end }}
      {{- include "azdo-agent-pool.capabilityEnv" (dict "Values" .Values "agent" true) | nindent 6 }}
      {{- include "azdo-agent-pool.proxyEnv" (dict "Values" .Values "agent" true) | nindent 6 }}
      {{- with $caDir }}
      - {name: AZP_CA_DIR, value: {{ . }}}
      {{- end }}
      {{- with .Values.extraEnv }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    {{- with .Values.envFrom }}
    envFrom:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    securityContext:
      {{- toYaml $securityContext | nindent 6 }}
    resources:
      {{- toYaml $agentResources | nindent 6 }}
    volumeMounts:
      {{- if $win }}
      - {name: azp-credential, mountPath: {{ $secrets | quote }}, readOnly: true}
      {{- else }}
      - {name: state, mountPath: {{ $state | quote }}, readOnly: true}
      {{- end }}
      {{- if $dind }}
      - {name: docker-socket, mountPath: {{ $sock }}}
      {{- end }}
      {{- toYaml (concat $sharedMounts $caMounts) | nindent 6 }}
  {{- with .Values.extraContainers }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
volumes:
  - name: azp-credential
    secret:
      secretName: {{ include "azdo-agent-pool.credentialSecret" . }}
      defaultMode: 0440
      items:
        - {key: {{ include "azdo-agent-pool.secretKey" . }}, path: {{ include "azdo-agent-pool.credentialFile" . }}}
  - name: state
    emptyDir: {sizeLimit: 16Mi}
  - name: work
    emptyDir: {sizeLimit: {{ .Values.azp.workStorage }}}
  {{- if $dind }}
  - name: externals
    emptyDir: {sizeLimit: 2Gi}
  - name: docker-socket
    emptyDir: {}
  {{- if eq .Values.dind.storage.type "ephemeral" }}
  - name: docker-storage
    ephemeral:
      volumeClaimTemplate:
        spec:
          accessModes: [ReadWriteOnce]
          {{- with .Values.dind.storage.storageClassName }}
          storageClassName: {{ . }}
          {{- end }}
          resources:
            requests: {storage: {{ .Values.dind.storage.size }}}
  {{- else }}
  - name: docker-storage
    emptyDir: {sizeLimit: {{ .Values.dind.storage.size }}}
  {{- end }}
  {{- end }}
  {{- if .Values.caBundle.configMap }}
  - name: ca-bundle
    configMap: {name: {{ .Values.caBundle.configMap }}}
  {{- else if .Values.caBundle.secret }}
  - name: ca-bundle
    secret: {secretName: {{ .Values.caBundle.secret }}}
  {{- end }}
  {{- if .Values.cache.enabled }}
  - name: cache
    {{- toYaml .Values.cache.volume | nindent 4 }}
  {{- end }}
  {{- with .Values.extraVolumes }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- $nodeSelector := deepCopy (.Values.nodeSelector | default dict) }}
{{- if $win }}{{ $_ := set $nodeSelector "kubernetes.io/os" "windows" }}{{ end }}
{{- with $nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
