{{/* The chart name, or nameOverride. */}}
{{- define "kpx.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's objects: fullnameOverride, else the release name when it already
contains the chart name (release "kpx" gives "kpx"), else <release>-<name>. 63 characters at most
(DNS label).
*/}}
{{- define "kpx.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* chart-version, for the helm.sh/chart label. */}}
{{- define "kpx.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The labels that select the release's pods (never change them: DaemonSet selectors are immutable). */}}
{{- define "kpx.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kpx.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels on every object the chart creates. */}}
{{- define "kpx.labels" -}}
helm.sh/chart: {{ include "kpx.chart" . }}
{{ include "kpx.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kpx
{{- end }}

{{/* repository:tag, repository:tag@digest with a digest; the tag defaults to the chart's appVersion. */}}
{{- define "kpx.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* The ServiceAccount kpx runs as. */}}
{{- define "kpx.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kpx.fullname" .) .Values.serviceAccount.name }}
{{- else if .Values.serviceAccount.name }}
{{- .Values.serviceAccount.name }}
{{- else }}
{{- fail "serviceAccount.name is required when serviceAccount.create is false: name the ServiceAccount kpx should run as" }}
{{- end }}
{{- end }}

{{/* The port of a host:port bind address (config.healthzBindAddress, config.metricsBindAddress). */}}
{{- define "kpx.bindPort" -}}
{{- regexFind "[0-9]+$" . }}
{{- end }}

{{/* The host of a host:port bind address, without IPv6 brackets. */}}
{{- define "kpx.bindHost" -}}
{{- regexReplaceAll ":[0-9]+$" . "" | trimPrefix "[" | trimSuffix "]" }}
{{- end }}

{{/* Whether a bind address listens only on loopback ("true" or ""). */}}
{{- define "kpx.isLoopback" -}}
{{- $host := include "kpx.bindHost" . }}
{{- if or (hasPrefix "127." $host) (eq $host "::1") (eq $host "localhost") }}true{{ end }}
{{- end }}

{{/* The KubeProxyConfiguration kpx reads: chart defaults (values.yaml config) with the user's values merged over them. */}}
{{- define "kpx.configYaml" -}}
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
{{ omit .Values.config "apiVersion" "kind" | toYaml }}
{{- end }}
