{{- define "x" -}}{{ .Values.image | quote }}{{- end -}}
image: {{ include "x" . }}
r: {{ .Values.replicas | default 1 }}
{{- range $i, $v := .Values.l }}
- {{ $i }}: {{ $v | toYaml | nindent 4 }}{{ end }}
{{ required "need" .Values.image }}
{{ ternary "a" "b" true }} {{ b64enc "x" }} {{ dict "a" 1 | toYaml }} {{ list 1 2 | len }}