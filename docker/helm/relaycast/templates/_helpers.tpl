{{/*
Names and labels.
*/}}
{{- define "relaycast.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Kept at 40 characters: workload names add "-edge-<region>" and pods "-<hash>-<id>". */}}
{{- define "relaycast.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else if contains (include "relaycast.name" .) .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "relaycast.name" .) | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "relaycast.selectorLabels" -}}
app.kubernetes.io/name: {{ include "relaycast.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "relaycast.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "relaycast.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "relaycast.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "relaycast.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "relaycast.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "relaycast.authSecret" -}}
{{- .Values.auth.existingSecret | default (printf "%s-auth" (include "relaycast.fullname" .)) }}
{{- end }}

{{- define "relaycast.databaseSecret" -}}
{{- .Values.database.existingSecret | default (printf "%s-database" (include "relaycast.fullname" .)) }}
{{- end }}

{{- define "relaycast.databaseSecretKey" -}}
{{- if .Values.database.existingSecret }}{{ .Values.database.existingSecretKey }}{{ else }}url{{ end }}
{{- end }}

{{/* The region clients nobody can place go to, and origins default to: the first edge region. */}}
{{- define "relaycast.firstRegion" -}}
{{- (first .Values.edges.regions).name }}
{{- end }}

{{/*
Environment every Relaycast container has: the database, the cluster secret (which the preStop
hook also uses, to call the node's drain endpoint), its node id (the pod name: unique).
*/}}
{{- define "relaycast.commonEnv" -}}
- name: RELAYCAST_NODE_ID
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "relaycast.databaseSecret" . }}
      key: {{ include "relaycast.databaseSecretKey" . }}
- name: RELAYCAST_CLUSTER_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ include "relaycast.authSecret" . }}
      key: cluster-secret
- name: RELAYCAST_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Recordings: where origins write them and edges read them, the recordings volume in every origin
and edge pod (a shared claim with recording.persistence, else an emptyDir).
*/}}
{{- define "relaycast.recordDir" -}}
/var/lib/relaycast-recordings
{{- end }}

{{- define "relaycast.recordingsClaim" -}}
{{- .Values.recording.persistence.existingClaim | default (printf "%s-recordings" (include "relaycast.fullname" .)) }}
{{- end }}

{{/*
Recording environment of an origin or an edge, called with (dict "root" . "origin" bool): the
directory and the object storage for both (an edge reads what the origins wrote), whether to
record and how long to keep for origins (they record, and sweep).
*/}}
{{- define "relaycast.recordingEnv" -}}
{{- $r := .root.Values.recording }}
{{- if and (not $r.s3.url) (or $r.s3.endpoint $r.s3.region $r.s3.existingSecret) }}
{{- fail "recording.s3: endpoint, region and existingSecret are for the bucket in recording.s3.url (s3://bucket/prefix), which is empty" }}
{{- end }}
- name: RELAYCAST_RECORD_DIR
  value: {{ include "relaycast.recordDir" .root | quote }}
{{- if .origin }}
- name: RELAYCAST_RECORD
  value: {{ ternary "on" "off" $r.enabled | quote }}
- name: RELAYCAST_RECORDING_RETENTION_DAYS
  value: {{ $r.retentionDays | quote }}
{{- end }}
{{- with $r.s3.url }}
- name: RELAYCAST_RECORD_S3
  value: {{ . | quote }}
{{- end }}
{{- with $r.s3.endpoint }}
- name: RELAYCAST_RECORD_S3_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- with $r.s3.region }}
- name: RELAYCAST_RECORD_S3_REGION
  value: {{ . | quote }}
{{- end }}
{{- with $r.s3.existingSecret }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: AWS_ACCESS_KEY_ID
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: AWS_SECRET_ACCESS_KEY
{{- end }}
{{- end }}

{{- define "relaycast.probes" -}}
startupProbe:
  httpGet:
    path: /healthz
    port: http
  periodSeconds: 2
  failureThreshold: 60
livenessProbe:
  httpGet:
    path: /healthz
    port: http
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 6
readinessProbe:
  httpGet:
    path: /readyz
    port: http
  periodSeconds: 5
  timeoutSeconds: 3
  failureThreshold: 3
{{- end }}

{{/* Pod-level scheduling settings of a workload's values (w). */}}
{{- define "relaycast.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
A region's edge values: edges.defaults with the region's entry over them, two levels deep, so that
`pdb: {enabled: false}` or `autoscaling: {maxReplicas: 3}` in an entry change just that key (sprig's
merge functions skip false and 0). Called with (dict "root" . "region" $entry); returns YAML.
*/}}
{{- define "relaycast.regionValues" -}}
{{- $w := deepCopy .root.Values.edges.defaults }}
{{- range $key, $value := .region }}
{{- if and (kindIs "map" $value) (kindIs "map" (index $w $key)) }}
{{- range $k, $v := $value }}{{ $_ := set (index $w $key) $k $v }}{{ end }}
{{- else }}
{{- $_ := set $w $key $value }}
{{- end }}
{{- end }}
{{- toYaml $w }}
{{- end }}
