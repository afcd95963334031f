{{/* Names and labels, the usual Helm shape (63-character DNS labels). */}}
{{- define "wsedge.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "wsedge.fullname" -}}
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

{{- define "wsedge.selectorLabels" -}}
app.kubernetes.io/name: {{ include "wsedge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "wsedge.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "wsedge.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "wsedge.operatorSelectorLabels" -}}
app.kubernetes.io/name: {{ include "wsedge.name" . }}-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "wsedge.operatorLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "wsedge.operatorSelectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "wsedge.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "wsedge.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "wsedge.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/*
Drain timings, all from drain.timeoutSeconds (and the preStop sleep), so that
the server's DRAIN_TIMEOUT, the kubelet's grace period and the ALB's
deregistration delay can never disagree.
*/}}
{{- define "wsedge.gracePeriod" -}}
{{- add .Values.drain.preStopSeconds .Values.drain.timeoutSeconds 10 -}}
{{- end -}}
{{- define "wsedge.drainSpread" -}}
{{- div .Values.drain.timeoutSeconds 4 -}}
{{- end -}}

{{/* Whether something other than replicaCount decides the pod count. */}}
{{- define "wsedge.hpaEnabled" -}}
{{- if and .Values.autoscaling.enabled (not .Values.operator.enabled) -}}true{{- end -}}
{{- end -}}

{{/*
Checks the schema cannot express with a clear message; included by the
Deployment so that every render runs them.
*/}}
{{- define "wsedge.validate" -}}
{{- $redis := or .Values.redis.url .Values.redis.existingSecret -}}
{{- $multi := or (gt (int .Values.replicaCount) 1) (and (include "wsedge.hpaEnabled" .) (gt (int .Values.autoscaling.maxReplicas) 1)) .Values.operator.enabled -}}
{{- if and $multi (not $redis) -}}
{{- fail "more than one replica (replicaCount > 1, autoscaling or the operator) needs Redis: set redis.url or redis.existingSecret, or every pod serves its own island of sessions" -}}
{{- end -}}
{{- if and (not .Values.config.debug) (not .Values.secrets.existingSecret) -}}
{{- fail "secrets.existingSecret is required unless config.debug is true: name a Secret holding SECRET_KEY (the chart never stores secrets)" -}}
{{- end -}}
{{- if and (not .Values.config.debug) (not .Values.config.allowedHosts) -}}
{{- fail "config.allowedHosts is required unless config.debug is true: the hosts allowed as WebSocket Origin, e.g. app.example.com" -}}
{{- end -}}
{{- if and .Values.operator.enabled (not .Values.operator.adminToken.existingSecret) -}}
{{- fail "operator.adminToken.existingSecret is required with operator.enabled: name a Secret holding a random admin token (the chart never stores secrets)" -}}
{{- end -}}
{{- if and .Values.operator.enabled (lt (int .Values.operator.maxReplicas) (int .Values.operator.minReplicas)) -}}
{{- fail "operator.maxReplicas must be at least operator.minReplicas" -}}
{{- end -}}
{{- if gt (int .Values.config.readyMaxConnections) (int .Values.config.maxConnections) -}}
{{- fail "config.readyMaxConnections must not exceed config.maxConnections" -}}
{{- end -}}
{{- if and .Values.ingress.enabled (le (int .Values.ingress.alb.idleTimeoutSeconds) (include "wsedge.seconds" .Values.config.pingInterval | int)) -}}
{{- fail "ingress.alb.idleTimeoutSeconds must exceed config.pingInterval, or the ALB closes idle WebSockets before the server pings them" -}}
{{- end -}}
{{- if and .Values.pdb.enabled .Values.pdb.minAvailable .Values.pdb.maxUnavailable -}}
{{- fail "pdb: set either minAvailable or maxUnavailable, not both" -}}
{{- end -}}
{{- if and (include "wsedge.hpaEnabled" .) (lt (int .Values.autoscaling.maxReplicas) (int .Values.autoscaling.minReplicas)) -}}
{{- fail "autoscaling.maxReplicas must be at least autoscaling.minReplicas" -}}
{{- end -}}
{{- if and (include "wsedge.hpaEnabled" .) (not .Values.autoscaling.targetCPUUtilizationPercentage) (not .Values.autoscaling.targetConnectionsPerPod) -}}
{{- fail "autoscaling needs a metric: targetCPUUtilizationPercentage and/or targetConnectionsPerPod" -}}
{{- end -}}
{{- end -}}

{{/* Whole seconds of a Go duration made of s/m/h parts ("20s", "1m30s"); the schema limits the form. */}}
{{- define "wsedge.seconds" -}}
{{- $total := 0 -}}
{{- range regexFindAll "[0-9]+[hms]" . -1 -}}
{{- $n := int (trimSuffix "h" (trimSuffix "m" (trimSuffix "s" .))) -}}
{{- if hasSuffix "h" . }}{{ $total = add $total (mul $n 3600) }}{{ else if hasSuffix "m" . }}{{ $total = add $total (mul $n 60) }}{{ else }}{{ $total = add $total $n }}{{ end -}}
{{- end -}}
{{- $total -}}
{{- end -}}
