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
}

/// Functions added to gtmpl's builtins (which already give printf, and, or, not, len,
/// index, eq, ne, lt, le, gt, ge, print, println, html, js, urlquery, call).
fn funcs() -> Vec<(&'static str, Func)> {
    vec![
        ("default", default as Func),
        ("quote", quote),
        ("toYaml", to_yaml),
        ("indent", indent),
        ("nindent", nindent),
        ("required", required),
        ("include", include),
        ("upper", upper),
        ("lower", lower),
        ("trim", trim),
        ("b64enc", b64enc),
        ("ternary", ternary),
        ("list", list),
        ("dict", dict),
    ]
}

fn err(msg: impl Into<String>) -> FuncError {
    FuncError::Generic(msg.into())
}

/// Sprig's notion of empty: nil, "", 0, false, an empty list or map.
fn empty(v: &Value) -> bool {
    match v {
        Value::NoValue | Value::Nil => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Array(a) => a.is_empty(),
        Value::Map(m) | Value::Object(m) => m.is_empty(),
        Value::Function(_) => false,
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::NoValue | Value::Nil => String::new(),
        other => other.to_string(),
    }
}

fn int(v: &Value, what: &str) -> Result<usize, FuncError> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .map(|n| n as usize)
            .ok_or_else(|| err(format!("{what}: not a count"))),
        Value::String(s) => s.parse().map_err(|_| err(format!("{what}: not a count"))),
        _ => Err(err(format!("{what}: not a count"))),
    }
}

fn default(args: &[Value]) -> Result<Value, FuncError> {
    match args {
        [d] => Ok(d.clone()),
        [d, v] => Ok(if empty(v) { d.clone() } else { v.clone() }),
        _ => Err(FuncError::AtLeastXArgs("default".into(), 1)),
    }
}

fn quote(args: &[Value]) -> Result<Value, FuncError> {
    let quoted: Vec<String> = args
        .iter()
        .filter(|v| !matches!(v, Value::NoValue | Value::Nil))
        .map(|v| serde_json::to_string(&text(v)).expect("a string serializes"))
        .collect();
    Ok(Value::String(quoted.join(" ")))
}

/// gtmpl's value as JSON, for toYaml.
pub fn to_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::NoValue | Value::Nil | Value::Function(_) => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::String(s) => J::String(s.clone()),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => J::from(i),
            (_, Some(u), _) => J::from(u),
            (_, _, Some(f)) => serde_json::Number::from_f64(f).map_or(J::Null, J::Number),
            _ => J::Null,
        },
        Value::Array(a) => J::Array(a.iter().map(to_json).collect()),
        Value::Map(m) | Value::Object(m) => {
            let sorted: std::collections::BTreeMap<_, _> =
                m.iter().map(|(k, v)| (k.clone(), to_json(v))).collect();
            J::Object(sorted.into_iter().collect())
        }
    }
}

/// JSON (values, chart metadata) as gtmpl's value.
pub fn from_json(v: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match v {
        J::Null => Value::Nil,
        J::Bool(b) => Value::Bool(*b),
        J::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::from(i),
            (_, Some(u)) => Value::from(u),
            _ => Value::from(n.as_f64().unwrap_or(0.0)),
        },
        J::String(s) => Value::String(s.clone()),
        J::Array(a) => Value::Array(a.iter().map(from_json).collect()),
        J::Object(o) => Value::Map(o.iter().map(|(k, v)| (k.clone(), from_json(v))).collect()),
    }
}

fn to_yaml(args: &[Value]) -> Result<Value, FuncError> {
    let [v] = args else {
        return Err(FuncError::ExactlyXArgs("toYaml".into(), 1));
    };
    let y = serde_yaml::to_string(&to_json(v)).map_err(|e| err(format!("toYaml: {e}")))?;
    Ok(Value::String(y.trim_end_matches('\n').to_string()))
}

fn indent_by(n: usize, s: &str) -> String {
    let pad = " ".repeat(n);
    s.split('\n')
        .map(|l| format!("{pad}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn indent(args: &[Value]) -> Result<Value, FuncError> {
    let [n, s] = args else {
        return Err(FuncError::ExactlyXArgs("indent".into(), 2));
    };
    Ok(Value::String(indent_by(int(n, "indent")?, &text(s))))
}

fn nindent(args: &[Value]) -> Result<Value, FuncError> {
    let [n, s] = args else {
        return Err(FuncError::ExactlyXArgs("nindent".into(), 2));
    };
    Ok(Value::String(format!(
        "\n{}",
        indent_by(int(n, "nindent")?, &text(s))
    )))
}

/// `required MSG VALUE`, rewritten before parsing to `required "template:line" MSG VALUE`.
fn required(args: &[Value]) -> Result<Value, FuncError> {
    let (at, msg, v) = match args {
        [at, msg, v] => (text(at), text(msg), v),
        [at, msg] => (text(at), text(msg), &Value::NoValue),
        _ => return Err(FuncError::ExactlyXArgs("required".into(), 2)),
    };
    if matches!(v, Value::NoValue | Value::Nil) || matches!(v, Value::String(s) if s.is_empty()) {
        return Err(err(format!("{REQUIRED_MARK}{at}\u{0}{msg}")));
    }
    Ok(v.clone())
}

/// Marks a `required` failure so that the renderer can lift its position into the error.
const REQUIRED_MARK: &str = "\u{0}required\u{0}";

fn include(args: &[Value]) -> Result<Value, FuncError> {
    let (name, ctx) = match args {
        [name, ctx] => (text(name), ctx.clone()),
        [name] => (text(name), Value::Nil),
        _ => return Err(FuncError::ExactlyXArgs("include".into(), 2)),
    };
    let sources = SOURCES
        .with(|s| s.borrow().clone())
        .ok_or_else(|| err("include: no chart is rendering"))?;
    let mut t = Template::with_name(name.clone());
    t.add_funcs(&funcs());
    for (n, src) in sources.iter() {
        t.add_template(n.clone(), src.clone())
            .map_err(|e| err(format!("include {name:?}: {e}")))?;
    }
    if !t.tree_set.contains_key(&name) {
        return Err(err(format!("include: template {name:?} not defined")));
    }
    t.render(&Context::from(ctx))
        .map(Value::String)
        .map_err(|e| lift(e.to_string()))
}

/// Keeps a nested `required` failure's marker intact through gtmpl's error wrapping.
fn lift(msg: String) -> FuncError {
    match msg.find(REQUIRED_MARK) {
        Some(i) => err(msg[i..].to_string()),
        None => err(msg),
    }
}

fn upper(args: &[Value]) -> Result<Value, FuncError> {
    one("upper", args).map(|s| Value::String(s.to_uppercase()))
}

fn lower(args: &[Value]) -> Result<Value, FuncError> {
    one("lower", args).map(|s| Value::String(s.to_lowercase()))
}

fn trim(args: &[Value]) -> Result<Value, FuncError> {
    one("trim", args).map(|s| Value::String(s.trim().to_string()))
}

fn one(name: &str, args: &[Value]) -> Result<String, FuncError> {
    match args {
        [v] => Ok(text(v)),
        _ => Err(FuncError::ExactlyXArgs(name.into(), 1)),
    }
}

fn b64enc(args: &[Value]) -> Result<Value, FuncError> {
    use base64::Engine as _;
    let s = one("b64enc", args)?;
    Ok(Value::String(
        base64::engine::general_purpose::STANDARD.encode(s.as_bytes()),
    ))
}

fn ternary(args: &[Value]) -> Result<Value, FuncError> {
    let [yes, no, cond] = args else {
        return Err(FuncError::ExactlyXArgs("ternary".into(), 3));
    };
    Ok(if empty(cond) { no.clone() } else { yes.clone() })
}

fn list(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::Array(args.to_vec()))
}

fn dict(args: &[Value]) -> Result<Value, FuncError> {
    if !args.len().is_multiple_of(2) {
        return Err(err("dict: needs key and value pairs"));
    }
    let m: HashMap<String, Value> = args
        .chunks(2)
        .map(|kv| (text(&kv[0]), kv[1].clone()))
        .collect();
    Ok(Value::Map(m))
}

/// Rewrites every `required` inside `{{ … }}` to pass its own `name:line` first. An action
/// left open is refused here, with its line (gtmpl's parser does not return on one).
fn mark_required(name: &str, src: &str) -> Result<String, RenderError> {
    let mut out = String::with_capacity(src.len());
    let mut rest = src;
    let mut line = 1;
    while let Some(open) = rest.find("{{") {
        let (before, after) = rest.split_at(open);
        line += before.matches('\n').count();
        out.push_str(before);
        let close = after.find("}}").map(|c| c + 2).ok_or_else(|| RenderError {
            template: format!("{name}:{line}"),
            reason: "unclosed action: {{ without }}".into(),
        })?;
        let (action, tail) = after.split_at(close);
        let mut rewritten = String::new();
        let mut a = action;
        let mut action_line = line;
        while let Some(i) = find_word(a, "required") {
            action_line += a[..i].matches('\n').count();
            rewritten.push_str(&a[..i]);
            rewritten.push_str(&format!("required \"{name}:{action_line}\""));
            a = &a[i + "required".len()..];
        }
        rewritten.push_str(a);
        line += action.matches('\n').count();
        out.push_str(&rewritten);
        rest = tail;
    }
    out.push_str(rest);
    Ok(out)
}

/// The byte offset of `word` standing alone (not part of a longer name, not in a string).
fn find_word(s: &str, word: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut in_str = false;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'"' && (i == 0 || bytes[i - 1] != b'\\') {
            in_str = !in_str;
        } else if !in_str && s[i..].starts_with(word) {
            let before = i.checked_sub(1).map(|j| bytes[j]);
            let after = bytes.get(i + word.len()).copied();
            let ident = |b: Option<u8>| {
                b.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'$')
            };
            if !ident(before) && !ident(after) {
                return Some(i);
            }
        }
        i += 1;
    }
    None
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
        let sources: Vec<(String, String)> = files
            .iter()
            .map(|(n, s)| Ok((n.clone(), mark_required(n, s)?)))
            .collect::<Result<_, RenderError>>()?;
        let mut template = Template::default();
        template.add_funcs(&funcs());
        for (n, src) in &sources {
            template
                .add_template(n.clone(), src.clone())
                .map_err(|e| RenderError {
                    template: n.clone(),
                    reason: e.to_string(),
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
        let out = self.template.render(&Context::from(from_json(ctx)));
        SOURCES.with(|s| *s.borrow_mut() = None);
        out.map_err(|e| {
            let msg = e.to_string();
            match msg.find(REQUIRED_MARK) {
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
            }
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
}
