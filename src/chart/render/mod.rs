//! Go-template rendering through gtmpl, with the Sprig functions chart authors use most.
//!
//! gtmpl's functions are plain `fn` pointers and its errors carry no position, so two things
//! are done around it: `include` finds the templates through a thread-local copy of the
//! chart's sources (rendering is synchronous, one chart at a time per thread), and every
//! `required` call is rewritten before parsing to carry its own `template:line`, so that a
//! missing value names where it was required.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use gtmpl::{Context, Func, FuncError, Template, Value};

mod dates;
mod funcs;
mod scan;
mod sprig;

use funcs::*;
pub use funcs::{from_json, to_json};
use scan::*;
pub use scan::{MAX_INCLUDE_DEPTH, MAX_NESTING, MAX_OUTPUT_BYTES, MAX_TEMPLATE_BYTES};

/// A template that failed: which, where when known, and why. Not retryable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{template}: {reason}")]
pub struct RenderError {
    /// `templates/bundle.yaml`, or `templates/bundle.yaml:12` when the line is known.
    pub template: String,
    pub reason: String,
}

/// Template files as (name, source).
type Sources = Rc<Vec<(String, String)>>;

thread_local! {
    /// The chart's template sources while it renders, for `include`.
    static SOURCES: RefCell<Option<Sources>> = const { RefCell::new(None) };
    /// How many `include`s are rendering inside each other on this thread.
    static INCLUDE_DEPTH: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Runs gtmpl, turning a panic inside it into an error naming the template: gtmpl is a
/// third-party parser fed with chart authors' text, and no input may bring berth down. The
/// checks before it (nesting, recursion, printf formats) keep the known panics from
/// happening at all; the fuzz tests count any panic, caught here or not, as a failure.
fn guarded<T>(name: &str, f: impl FnOnce() -> T) -> Result<T, RenderError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|_| RenderError {
        template: name.to_string(),
        reason: "the template engine failed on this template".into(),
    })
}

/// A chart's templates ready to render: `(name, source)` for every template file, partials
/// (`_*.tpl`) included.
pub struct Renderer {
    sources: Sources,
    template: Template,
}

impl Renderer {
    /// Parses every template; a syntax error names the template and line.
    pub fn new(files: &[(String, String)]) -> Result<Renderer, RenderError> {
        let mut calls = Calls::new();
        for (n, s) in files {
            scan(n, s, &mut calls)?;
        }
        refuse_cycles(&calls)?;
        let sources: Vec<(String, String)> = files
            .iter()
            .map(|(n, s)| Ok((n.clone(), mark_required(n, s)?)))
            .collect::<Result<_, RenderError>>()?;
        let mut template = Template::default();
        template.add_funcs(&funcs());
        for (n, src) in &sources {
            guarded(n, || {
                template
                    .add_template(n.clone(), src.clone())
                    .map_err(|e| e.to_string())
            })?
            .map_err(|reason| RenderError {
                template: n.clone(),
                reason,
            })?;
        }
        Ok(Renderer {
            sources: Rc::new(sources),
            template,
        })
    }

    /// Renders one template file with the given top-level object (.Values, .Release, …).
    pub fn render(&mut self, name: &str, ctx: &serde_json::Value) -> Result<String, RenderError> {
        SOURCES.with(|s| *s.borrow_mut() = Some(self.sources.clone()));
        self.template.name = name.to_string();
        let template = &mut self.template;
        let out = guarded(name, || {
            template
                .render(&Context::from(from_json(ctx)))
                .map_err(|e| e.to_string())
        });
        SOURCES.with(|s| *s.borrow_mut() = None);
        INCLUDE_DEPTH.with(|d| d.set(0));
        let out = out?;
        if let Ok(o) = &out
            && o.len() > MAX_OUTPUT_BYTES
        {
            return Err(RenderError {
                template: name.to_string(),
                reason: format!("rendered output larger than {MAX_OUTPUT_BYTES} bytes"),
            });
        }
        out.map_err(|msg| match msg.find(REQUIRED_MARK) {
            Some(i) => {
                let rest = &msg[i + REQUIRED_MARK.len()..];
                let (at, why) = rest.split_once('\u{0}').unwrap_or((name, rest));
                RenderError {
                    template: at.to_string(),
                    reason: format!("required value missing: {why}"),
                }
            }
            None => RenderError {
                template: name.to_string(),
                reason: msg,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(
        files: &[(&str, &str)],
        main: &str,
        ctx: serde_json::Value,
    ) -> Result<String, RenderError> {
        let files: Vec<(String, String)> = files
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        Renderer::new(&files)?.render(main, &ctx)
    }

    #[test]
    fn tpl_text_gets_the_checks_a_template_file_gets() {
        // Found by the fuzzer: gtmpl never returned on this.
        let e = render(
            &[("t", r#"{{ tpl "{{ tpl . ." "{{ }tpl . . }}" }}"#)],
            "t",
            json!({}),
        )
        .unwrap_err();
        assert!(e.reason.contains("tpl"), "{e}");
        let e = render(
            &[("t", r#"{{ tpl "{{ define \"x\" }}{{ end }}" . }}"#)],
            "t",
            json!({}),
        )
        .unwrap_err();
        assert!(e.reason.contains("may not define templates"), "{e}");
        assert_eq!(
            render(&[("t", r#"{{ tpl "a{{ .x }}" . }}"#)], "t", json!({"x": 1})).unwrap(),
            "a1"
        );
    }

    #[test]
    fn sprig_functions() {
        let t = r#"{{ default 3 .Values.n }} {{ default 3 .Values.missing }} {{ quote .Values.s }} {{ upper "a" }}{{ lower "B" }} [{{ trim "  x " }}] {{ b64enc "hi" }} {{ ternary "y" "n" .Values.flag }} {{ printf "%d-%s" 5 "z" }}
{{- $d := dict "a" 1 "b" (list 1 2) }}
{{ toYaml $d | indent 2 }}
k:{{ toYaml .Values.m | nindent 2 }}"#;
        let out = render(
            &[("templates/t.yaml", t)],
            "templates/t.yaml",
            json!({"Values": {"n": 5, "s": "a\"b", "flag": true, "m": {"x": [1, 2]}}}),
        )
        .unwrap();
        assert_eq!(
            out,
            "5 3 \"a\\\"b\" Ab [x] aGk= y 5-z\n  a: 1\n  b:\n  - 1\n  - 2\nk:\n  x:\n  - 1\n  - 2"
        );
    }

    #[test]
    fn include_and_define() {
        let helpers = r#"{{- define "name" -}}{{ .Release.Name }}-{{ .Chart.Name }}{{- end -}}
{{- define "labels" -}}app: {{ include "name" . }}{{- end -}}"#;
        let out = render(
            &[("templates/_helpers.tpl", helpers), ("templates/b.yaml", "n: {{ include \"name\" . }}\nl:{{ include \"labels\" . | nindent 2 }}\nt: {{ template \"name\" . }}")],
            "templates/b.yaml",
            json!({"Release": {"Name": "r1"}, "Chart": {"Name": "httpd"}}),
        )
        .unwrap();
        assert_eq!(out, "n: r1-httpd\nl:\n  app: r1-httpd\nt: r1-httpd");
    }

    #[test]
    fn required_names_template_and_line() {
        let t = "a: 1\nb: {{ required \"image is required\" .Values.image }}\n";
        let e = render(
            &[("templates/x.yaml", t)],
            "templates/x.yaml",
            json!({"Values": {}}),
        )
        .unwrap_err();
        assert_eq!(e.template, "templates/x.yaml:2");
        assert_eq!(e.reason, "required value missing: image is required");
        let piped = "a: 1\n\n\nb: {{ .Values.image | required \"need image\" }}\n";
        let e = render(
            &[("templates/y.yaml", piped)],
            "templates/y.yaml",
            json!({"Values": {}}),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "templates/y.yaml:4: required value missing: need image"
        );
        let ok = render(
            &[("templates/y.yaml", piped)],
            "templates/y.yaml",
            json!({"Values": {"image": "i"}}),
        )
        .unwrap();
        assert_eq!(ok, "a: 1\n\n\nb: i\n");
    }

    #[test]
    fn syntax_error_names_the_template() {
        let e = Renderer::new(&[("templates/bad.yaml".into(), "a: 1\nx: {{ .Values.a ".into())])
            .err()
            .unwrap();
        assert_eq!(
            e.to_string(),
            "templates/bad.yaml:2: unclosed action: {{ without }}"
        );
        let e = Renderer::new(&[(
            "templates/bad.yaml".into(),
            "x: {{ .Values.a | nosuch }}".into(),
        )])
        .err()
        .unwrap();
        assert!(e.template.starts_with("templates/bad.yaml"), "{e}");
    }

    #[test]
    fn hostile_templates_are_refused_with_a_reason() {
        let refused = |src: &str| {
            let files = [("templates/t.yaml".to_string(), src.to_string())];
            match Renderer::new(&files) {
                Err(e) => e.to_string(),
                Ok(mut r) => r
                    .render("templates/t.yaml", &json!({"Values": {}}))
                    .unwrap_err()
                    .to_string(),
            }
        };
        let deep = format!(
            "{}x{}",
            "{{ if 1 }}".repeat(10_000),
            "{{ end }}".repeat(10_000)
        );
        assert!(refused(&deep).contains("blocks nested deeper than 64"));
        let parens = format!("{{{{ {}1{} }}}}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(refused(&parens).contains("parentheses nested deeper"));
        let e = refused(
            r#"{{ define "a" }}{{ include "b" . }}{{ end }}{{ define "b" }}{{ template "a" . }}{{ end }}{{ include "a" . }}"#,
        );
        assert!(e.contains("calls itself"), "{e}");
        assert!(refused(r#"{{ indent 2000000000 "x" }}"#).contains("would exceed"));
        assert!(refused(r#"{{ printf "%999999999d" 1 }}"#).contains("above 999"));
        assert!(refused(r#"{{ printf "%*d" 5 1 }}"#).contains("not supported"));
        assert!(refused("{{ .Values.é }}").contains("outside a quoted string"));
        assert!(refused(r#"{{ indent 2 "\x" }}"#).contains("needs 2 hexadecimal digits"));
        assert!(refused(r#"{{ print "\u12" }}"#).contains("needs 4 hexadecimal digits"));
        assert!(refused(r#"{{ print "\q" }}"#).contains("unknown escape"));
        assert!(refused("x: {{ .Values.a \" }}x\" ").contains("unclosed action"));
        assert_eq!(
            render(
                &[(
                    "templates/t.yaml",
                    "{{/* café */}}{{ printf \"%3d|%s|\" 7 \"é\" }}"
                )],
                "templates/t.yaml",
                json!({})
            )
            .unwrap(),
            "  7|é|"
        );
    }
}
