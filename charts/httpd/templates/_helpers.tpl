{{/* The bundle name: the release name, unless it already says httpd. */}}
{{- define "httpd.name" -}}
{{- if eq .Release.Name "httpd" }}httpd{{ else }}{{ .Release.Name }}-httpd{{ end -}}
{{- end -}}

{{- define "httpd.labels" -}}
app: {{ .Chart.Name }}
release: {{ .Release.Name }}
chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}
