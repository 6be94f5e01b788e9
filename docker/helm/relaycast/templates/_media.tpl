{{/*
An origin or edge workload and what goes with it. Called with a dict:
  root       the chart's top-level context
  component  origin | edge
  name       the workload's name
  region     the region the pods serve
  w          the workload's values (origins, or edges.defaults merged with a region's entry)

hostNetwork mode: a Deployment whose pods use their node's network and announce its address.
portRange mode: a StatefulSet (pod N takes port block N and announced address N, see
docker/entrypoint.sh), its headless Service, and a LoadBalancer Service per pod.
Either way the pods mount the recordings volume (templates/recordings.yaml), one for all.
*/}}
{{- define "relaycast.mediaWorkload" -}}
{{- $root := .root }}
{{- $w := .w }}
{{- $hostNetwork := eq $root.Values.network.mode "hostNetwork" }}
{{- $edge := eq .component "edge" }}
{{- $autoscaled := and $edge $root.Values.autoscaling.enabled }}
{{- $maxPods := int $w.replicas }}
{{- if $autoscaled }}{{ $maxPods = max $maxPods (int $w.autoscaling.maxReplicas) | int }}{{ end }}
{{- if and (not $hostNetwork) (lt (len $w.portRange.announcedIps) $maxPods) }}
{{- fail (printf "%s: network.mode portRange needs one address in portRange.announcedIps per pod (%d, up to %d pods)" .name (len $w.portRange.announcedIps) $maxPods) }}
{{- end }}
{{- /*
Shutdown: the preStop hook drains the node and waits $wait seconds, then SIGTERM. Origins wait for
their streams to end, up to the grace period minus 60 s (their own shutdown takes seconds). Edges
wait preStopWaitSeconds (balancers and endpoints stop sending viewers), then on SIGTERM move their
viewers within RELAYCAST_DRAIN_TIMEOUT_MS (20 s unless an extraEnv sets it) and leave the cluster
(15 s kept for that): the grace period must cover all three.
*/}}
{{- $grace := int $w.terminationGracePeriodSeconds }}
{{- $wait := 0 }}
{{- if $edge }}
{{- $wait = int $w.preStopWaitSeconds }}
{{- $drainMs := 20000 }}
{{- range (concat ($root.Values.extraEnv | default list) ($w.extraEnv | default list)) }}
{{- if and (eq (toString .name) "RELAYCAST_DRAIN_TIMEOUT_MS") (hasKey . "value") }}{{ $drainMs = int .value }}{{ end }}
{{- end }}
{{- $drainS := div (add $drainMs 999) 1000 | int }}
{{- $needed := add $wait $drainS 15 | int }}
{{- if lt $grace $needed }}
{{- fail (printf "%s: terminationGracePeriodSeconds (%d) must cover the preStop wait (preStopWaitSeconds, %d s), moving the viewers on SIGTERM (RELAYCAST_DRAIN_TIMEOUT_MS, %d s) and 15 s to leave the cluster: at least %d" .name $grace $wait $drainS $needed) }}
{{- end }}
{{- else }}
{{- if lt $grace 60 }}
{{- fail (printf "%s: terminationGracePeriodSeconds (%d) must be at least 60 (the preStop hook waits for streams to end for it minus 60 s, the rest is the node's own shutdown)" .name $grace) }}
{{- end }}
{{- $wait = sub $grace 60 | int }}
{{- end }}
{{- $labels := dict "app.kubernetes.io/component" .component }}
{{- if $edge }}{{ $_ := set $labels "relaycast.io/region" .region }}{{ end }}
apiVersion: apps/v1
kind: {{ ternary "Deployment" "StatefulSet" $hostNetwork }}
metadata:
  name: {{ .name }}
  labels:
    {{- include "relaycast.labels" $root | nindent 4 }}
    {{- toYaml $labels | nindent 4 }}
spec:
  {{- if not $autoscaled }}
  replicas: {{ $w.replicas }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "relaycast.selectorLabels" $root | nindent 6 }}
      {{- toYaml $labels | nindent 6 }}
  {{- if $hostNetwork }}
  strategy:
    {{- if $w.updateStrategy }}
    {{- toYaml $w.updateStrategy | nindent 4 }}
    {{- else }}
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 0
      maxUnavailable: 1
    {{- end }}
  {{- else }}
  serviceName: {{ .name }}-pods
  podManagementPolicy: Parallel
  {{- with $w.updateStrategy }}
  updateStrategy:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- end }}
  template:
    metadata:
      labels:
        {{- include "relaycast.selectorLabels" $root | nindent 8 }}
        {{- toYaml $labels | nindent 8 }}
        {{- with $w.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with $w.podAnnotations }}
      annotations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    spec:
      serviceAccountName: {{ include "relaycast.serviceAccountName" $root }}
      automountServiceAccountToken: false
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- if $hostNetwork }}
      hostNetwork: true
      dnsPolicy: ClusterFirstWithHostNet
      {{- end }}
      terminationGracePeriodSeconds: {{ $grace }}
      securityContext:
        {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      {{- with include "relaycast.scheduling" $w }}{{ . | nindent 6 }}{{ end }}
      containers:
        - name: {{ .component }}
          image: {{ include "relaycast.image" $root }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          args: [{{ .component | quote }}]
          env:
            {{- include "relaycast.commonEnv" $root | nindent 12 }}
            - name: RELAYCAST_REGION
              value: {{ .region | quote }}
            - name: RELAYCAST_LAT
              value: {{ $w.lat | quote }}
            - name: RELAYCAST_LON
              value: {{ $w.lon | quote }}
            - name: RELAYCAST_HTTP_PORT
              value: {{ $w.httpPort | quote }}
            {{- if $edge }}
            - name: RELAYCAST_AGENT_PORT
              value: {{ $w.agentPort | quote }}
            {{- else }}
            - name: RELAYCAST_RTMP_PORT
              value: {{ $w.rtmpPort | quote }}
            {{- end }}
            {{- if $hostNetwork }}
            - name: HOST_IP
              valueFrom:
                fieldRef:
                  fieldPath: status.hostIP
            - name: RELAYCAST_ANNOUNCED_IP
              value: {{ $root.Values.network.announcedIp | default "$(HOST_IP)" | quote }}
            - name: RELAYCAST_PUBLIC_URL
              value: "http://$(RELAYCAST_ANNOUNCED_IP):{{ $w.httpPort }}"
            - name: RELAYCAST_RTC_MIN_PORT
              value: {{ $w.rtcMinPort | quote }}
            - name: RELAYCAST_RTC_MAX_PORT
              value: {{ $w.rtcMaxPort | quote }}
            {{- else }}
            - name: RELAYCAST_PORT_BLOCK_BASE
              value: {{ $w.portRange.base | quote }}
            - name: RELAYCAST_PORT_BLOCK_SIZE
              value: {{ $w.portRange.blockSize | quote }}
            - name: RELAYCAST_ANNOUNCED_IPS
              value: {{ join "," $w.portRange.announcedIps | quote }}
            {{- end }}
            {{- with $w.workers }}
            - name: RELAYCAST_WORKERS
              value: {{ . | quote }}
            {{- end }}
            {{- with $w.capacity }}
            - name: RELAYCAST_CAPACITY
              value: {{ . | quote }}
            {{- end }}
            {{- include "relaycast.recordingEnv" (dict "root" $root "origin" (not $edge)) | nindent 12 }}
            - name: RELAYCAST_PRESTOP_ROLE
              value: {{ .component | quote }}
            - name: RELAYCAST_PRESTOP_WAIT_S
              value: {{ $wait | quote }}
            {{- with $w.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          ports:
            - name: http
              containerPort: {{ $w.httpPort }}
              protocol: TCP
            {{- if $edge }}
            - name: agent
              containerPort: {{ $w.agentPort }}
              protocol: TCP
            {{- else }}
            - name: rtmp
              containerPort: {{ $w.rtmpPort }}
              protocol: TCP
            {{- end }}
          {{- include "relaycast.probes" $root | nindent 10 }}
          lifecycle:
            preStop:
              exec:
                command: ["node", "/app/docker/prestop.mjs"]
          resources:
            {{- toYaml $w.resources | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.securityContext | nindent 12 }}
          volumeMounts:
            - name: data
              mountPath: /var/lib/relaycast
            - name: tmp
              mountPath: /tmp
            - name: recordings
              mountPath: {{ include "relaycast.recordDir" $root }}
      volumes:
        - name: data
          emptyDir: {}
        - name: tmp
          emptyDir: {}
        - name: recordings
          {{- if $root.Values.recording.persistence.enabled }}
          persistentVolumeClaim:
            claimName: {{ include "relaycast.recordingsClaim" $root }}
          {{- else }}
          emptyDir: {}
          {{- end }}
{{- if $w.pdb.enabled }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ .name }}
  labels:
    {{- include "relaycast.labels" $root | nindent 4 }}
    {{- toYaml $labels | nindent 4 }}
spec:
  maxUnavailable: {{ $w.pdb.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "relaycast.selectorLabels" $root | nindent 6 }}
      {{- toYaml $labels | nindent 6 }}
{{- end }}
{{- if not $hostNetwork }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ .name }}-pods
  labels:
    {{- include "relaycast.labels" $root | nindent 4 }}
    {{- toYaml $labels | nindent 4 }}
spec:
  clusterIP: None
  publishNotReadyAddresses: true
  selector:
    {{- include "relaycast.selectorLabels" $root | nindent 4 }}
    {{- toYaml $labels | nindent 4 }}
  ports:
    - name: http
      port: {{ $w.httpPort }}
      targetPort: http
{{- $svc := $root.Values.network.perPodService }}
{{- range $i := until $maxPods }}
{{- $first := add $w.portRange.base (mul $i $w.portRange.blockSize) }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ printf "%s-%d" $.name $i }}
  labels:
    {{- include "relaycast.labels" $root | nindent 4 }}
    {{- toYaml $labels | nindent 4 }}
  {{- with $svc.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  type: LoadBalancer
  {{- if $svc.setLoadBalancerIP }}
  loadBalancerIP: {{ index $w.portRange.announcedIps $i | quote }}
  {{- end }}
  externalTrafficPolicy: {{ $svc.externalTrafficPolicy }}
  selector:
    statefulset.kubernetes.io/pod-name: {{ printf "%s-%d" $.name $i }}
  ports:
    - name: http
      port: {{ $w.httpPort }}
      targetPort: http
      protocol: TCP
    {{- if $edge }}
    - name: agent
      port: {{ $w.agentPort }}
      targetPort: agent
      protocol: TCP
    {{- else }}
    # The RTMP address the origin registers (rtmp://<its announced address>:<rtmpPort>): the route
    # API and the admin API hand it out, and the balancer's HAProxy forwards RTMP to it.
    - name: rtmp
      port: {{ $w.rtmpPort }}
      targetPort: rtmp
      protocol: TCP
    {{- end }}
    {{- range $port := untilStep (int $first) (int (add $first $w.portRange.blockSize)) 1 }}
    - name: udp-{{ $port }}
      port: {{ $port }}
      targetPort: {{ $port }}
      protocol: UDP
    {{- if $svc.iceTcp }}
    - name: tcp-{{ $port }}
      port: {{ $port }}
      targetPort: {{ $port }}
      protocol: TCP
    {{- end }}
    {{- end }}
{{- end }}
{{- end }}
{{- end }}
