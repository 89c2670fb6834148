//! The template functions charts may call (a Helm/Sprig subset), each checked for bad arguments.

use super::*;

/// Functions added to gtmpl's builtins (which already give printf, and, or, not, len,
/// index, eq, ne, lt, le, gt, ge, print, println, html, js, urlquery, call).
pub(super) fn funcs() -> Vec<(&'static str, Func)> {
    let mut all = vec![
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
        ("printf", printf),
    ];
    all.extend(super::sprig::funcs());
    all.extend(super::dates::funcs());
    all
}

/// gtmpl's printf, with the format checked first: gtmpl panics on widths it cannot pad to
/// and on `*` widths taken from arguments, so those are refused (a width or precision of
/// at most three digits is kept).
pub(super) fn printf(args: &[Value]) -> Result<Value, FuncError> {
    let Some(Value::String(format)) = args.first() else {
        return Err(err("printf: the first argument must be a format string"));
    };
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            continue;
        }
        let mut digits = 0;
        while let Some(&n) = chars.peek() {
            chars.next();
            match n {
                '0'..='9' => {
                    digits += 1;
                    if digits > 3 {
                        return Err(err("printf: width or precision above 999"));
                    }
                }
                '.' => digits = 0,
                '*' | '[' | ']' => {
                    return Err(err(format!("printf: {n:?} in a verb is not supported")));
                }
                '#' | '+' | '-' | ' ' => {}
                _ => break,
            }
        }
    }
    gtmpl::funcs::printf(args)
}

pub(super) fn err(msg: impl Into<String>) -> FuncError {
    FuncError::Generic(msg.into())
}

/// Sprig's notion of empty: nil, "", 0, false, an empty list or map.
pub(super) fn empty(v: &Value) -> bool {
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

pub(super) fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::NoValue | Value::Nil => String::new(),
        other => other.to_string(),
    }
}

pub(super) fn int(v: &Value, what: &str) -> Result<usize, FuncError> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .map(|n| n as usize)
            .ok_or_else(|| err(format!("{what}: not a count"))),
        Value::String(s) => s.parse().map_err(|_| err(format!("{what}: not a count"))),
        _ => Err(err(format!("{what}: not a count"))),
    }
}

pub(super) fn default(args: &[Value]) -> Result<Value, FuncError> {
    match args {
        [d] => Ok(d.clone()),
        [d, v] => Ok(if empty(v) { d.clone() } else { v.clone() }),
        _ => Err(FuncError::AtLeastXArgs("default".into(), 1)),
    }
}

pub(super) fn quote(args: &[Value]) -> Result<Value, FuncError> {
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

pub(super) fn to_yaml(args: &[Value]) -> Result<Value, FuncError> {
    let [v] = args else {
        return Err(FuncError::ExactlyXArgs("toYaml".into(), 1));
    };
    let y = serde_yaml::to_string(&to_json(v)).map_err(|e| err(format!("toYaml: {e}")))?;
    Ok(Value::String(y.trim_end_matches('\n').to_string()))
}

pub(super) fn indent_by(what: &str, n: usize, s: &str) -> Result<String, FuncError> {
    let lines = s.split('\n').count();
    if n.saturating_mul(lines).saturating_add(s.len()) > MAX_OUTPUT_BYTES {
        return Err(err(format!(
            "{what} {n}: the result would exceed {MAX_OUTPUT_BYTES} bytes"
        )));
    }
    let pad = " ".repeat(n);
    Ok(s.split('\n')
        .map(|l| format!("{pad}{l}"))
        .collect::<Vec<_>>()
        .join("\n"))
}

pub(super) fn indent(args: &[Value]) -> Result<Value, FuncError> {
    let [n, s] = args else {
        return Err(FuncError::ExactlyXArgs("indent".into(), 2));
    };
    indent_by("indent", int(n, "indent")?, &text(s)).map(Value::String)
}

pub(super) fn nindent(args: &[Value]) -> Result<Value, FuncError> {
    let [n, s] = args else {
        return Err(FuncError::ExactlyXArgs("nindent".into(), 2));
    };
    Ok(Value::String(format!(
        "\n{}",
        indent_by("nindent", int(n, "nindent")?, &text(s))?
    )))
}

/// `required MSG VALUE`, rewritten before parsing to `required "template:line" MSG VALUE`.
pub(super) fn required(args: &[Value]) -> Result<Value, FuncError> {
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
pub(super) const REQUIRED_MARK: &str = "\u{0}required\u{0}";

pub(super) fn include(args: &[Value]) -> Result<Value, FuncError> {
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
    let depth = INCLUDE_DEPTH.with(|d| d.get());
    if depth >= MAX_INCLUDE_DEPTH {
        return Err(err(format!(
            "include {name:?}: includes nested deeper than {MAX_INCLUDE_DEPTH}"
        )));
    }
    INCLUDE_DEPTH.with(|d| d.set(depth + 1));
    let out = t.render(&Context::from(ctx));
    INCLUDE_DEPTH.with(|d| d.set(depth));
    out.map(Value::String).map_err(|e| lift(e.to_string()))
}

/// Keeps a nested `required` failure's marker intact through gtmpl's error wrapping.
pub(super) fn lift(msg: String) -> FuncError {
    match msg.find(REQUIRED_MARK) {
        Some(i) => err(msg[i..].to_string()),
        None => err(msg),
    }
}

pub(super) fn upper(args: &[Value]) -> Result<Value, FuncError> {
    one("upper", args).map(|s| Value::String(s.to_uppercase()))
}

pub(super) fn lower(args: &[Value]) -> Result<Value, FuncError> {
    one("lower", args).map(|s| Value::String(s.to_lowercase()))
}

pub(super) fn trim(args: &[Value]) -> Result<Value, FuncError> {
    one("trim", args).map(|s| Value::String(s.trim().to_string()))
}

pub(super) fn one(name: &str, args: &[Value]) -> Result<String, FuncError> {
    match args {
        [v] => Ok(text(v)),
        _ => Err(FuncError::ExactlyXArgs(name.into(), 1)),
    }
}

pub(super) fn b64enc(args: &[Value]) -> Result<Value, FuncError> {
    use base64::Engine as _;
    let s = one("b64enc", args)?;
    Ok(Value::String(
        base64::engine::general_purpose::STANDARD.encode(s.as_bytes()),
    ))
}

pub(super) fn ternary(args: &[Value]) -> Result<Value, FuncError> {
    let [yes, no, cond] = args else {
        return Err(FuncError::ExactlyXArgs("ternary".into(), 3));
    };
    Ok(if empty(cond) { no.clone() } else { yes.clone() })
}

pub(super) fn list(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::Array(args.to_vec()))
}

pub(super) fn dict(args: &[Value]) -> Result<Value, FuncError> {
    if !args.len().is_multiple_of(2) {
        return Err(err("dict: needs key and value pairs"));
    }
    let m: HashMap<String, Value> = args
        .chunks(2)
        .map(|kv| (text(&kv[0]), kv[1].clone()))
        .collect();
    Ok(Value::Map(m))
}
