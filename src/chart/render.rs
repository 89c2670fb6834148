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
    /// How many `include`s are rendering inside each other on this thread.
    static INCLUDE_DEPTH: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
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
        ("printf", printf),
    ]
}

/// gtmpl's printf, with the format checked first: gtmpl panics on widths it cannot pad to
/// and on `*` widths taken from arguments, so those are refused (a width or precision of
/// at most three digits is kept).
fn printf(args: &[Value]) -> Result<Value, FuncError> {
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

fn indent_by(what: &str, n: usize, s: &str) -> Result<String, FuncError> {
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

fn indent(args: &[Value]) -> Result<Value, FuncError> {
    let [n, s] = args else {
        return Err(FuncError::ExactlyXArgs("indent".into(), 2));
    };
    indent_by("indent", int(n, "indent")?, &text(s)).map(Value::String)
}

fn nindent(args: &[Value]) -> Result<Value, FuncError> {
    let [n, s] = args else {
        return Err(FuncError::ExactlyXArgs("nindent".into(), 2));
    };
    Ok(Value::String(format!(
        "\n{}",
        indent_by("nindent", int(n, "nindent")?, &text(s))?
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

/// The largest template file rendered (charts are text a person writes).
pub const MAX_TEMPLATE_BYTES: usize = 1024 * 1024;
/// How deep blocks (`if`, `range`, `with`, `define`, `block`) and parentheses may nest: gtmpl
/// parses and runs templates recursively, so a deeper one would exhaust the stack.
pub const MAX_NESTING: usize = 64;
/// How deep `include` may nest at run time (an include whose name is computed escapes the
/// static check for recursion).
pub const MAX_INCLUDE_DEPTH: usize = 16;
/// The largest string `indent`, `nindent` and the rendered output may grow to.
pub const MAX_OUTPUT_BYTES: usize = 4 * 1024 * 1024;

/// Template name → the templates it calls (`template` or `include` with a literal name).
type Calls = HashMap<String, Vec<(String, String)>>;

/// Checks a template's size and nesting before gtmpl sees it, and records which templates
/// each `define` (or the file itself, outside any) calls, for [`refuse_cycles`].
fn scan(name: &str, src: &str, calls: &mut Calls) -> Result<(), RenderError> {
    let fail = |line: usize, reason: String| RenderError {
        template: format!("{name}:{line}"),
        reason,
    };
    if src.len() > MAX_TEMPLATE_BYTES {
        return Err(fail(
            1,
            format!("template larger than {MAX_TEMPLATE_BYTES} bytes"),
        ));
    }
    // Open blocks: Some(define name) for define/block, None for if/range/with.
    let mut open: Vec<Option<String>> = Vec::new();
    let mut rest = src;
    let mut line = 1;
    while let Some(at) = rest.find("{{") {
        line += rest[..at].matches('\n').count();
        let after = &rest[at + 2..];
        let Some(close) = action_end(after) else {
            // mark_required reports it with its line.
            return Ok(());
        };
        let action = after[..close]
            .trim_start_matches('-')
            .trim_end_matches('-')
            .trim();
        rest = &after[close + 2..];
        let action_line = line;
        line += after[..close].matches('\n').count();
        if action.starts_with("/*") {
            continue;
        }
        if let Some((_, c)) = unquoted(action).find(|(_, c)| !c.is_ascii()) {
            // gtmpl's lexer steps back one byte, not one character, after a token: a
            // non-ASCII character there would be split (it panics on its thread).
            return Err(fail(
                action_line,
                format!("{c:?} outside a quoted string in an action is not supported"),
            ));
        }
        if let Some(why) = bad_escape(action) {
            return Err(fail(action_line, why));
        }
        let mut depth = 0usize;
        for c in action.chars() {
            match c {
                '(' => {
                    depth += 1;
                    if depth > MAX_NESTING {
                        return Err(fail(
                            action_line,
                            format!("parentheses nested deeper than {MAX_NESTING}"),
                        ));
                    }
                }
                ')' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        let first = action.split_whitespace().next().unwrap_or_default();
        let literal = |after: &str| -> Option<String> {
            let t = after.trim_start().strip_prefix('"')?;
            t.find('"').map(|e| t[..e].to_string())
        };
        // Who calls: the innermost define around this action, or the file itself.
        let caller = open
            .iter()
            .rev()
            .find_map(|o| o.clone())
            .unwrap_or_else(|| name.to_string());
        let mut record = |callee: String| {
            calls
                .entry(caller.clone())
                .or_default()
                .push((callee, format!("{name}:{action_line}")));
        };
        for word in ["template", "include", "block"] {
            let mut a = action;
            while let Some(i) = find_word(a, word) {
                a = &a[i + word.len()..];
                if let Some(callee) = literal(a) {
                    record(callee);
                }
            }
        }
        match first {
            "if" | "range" | "with" => open.push(None),
            "define" | "block" => {
                open.push(Some(literal(&action[first.len()..]).unwrap_or_default()))
            }
            "end" => {
                open.pop();
            }
            _ => {}
        }
        if open.len() > MAX_NESTING {
            return Err(fail(
                action_line,
                format!("blocks nested deeper than {MAX_NESTING}"),
            ));
        }
    }
    Ok(())
}

/// The characters of an action (with their byte offsets) that are not inside a string
/// ("…", `…`) or a character constant ('…'), as gtmpl's lexer reads them.
fn unquoted(action: &str) -> impl Iterator<Item = (usize, char)> + '_ {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    action.char_indices().filter(move |&(_, c)| match quote {
        Some(q) => {
            if escaped {
                escaped = false;
            } else if c == '\\' && q != '`' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            false
        }
        None if matches!(c, '"' | '`' | '\'') => {
            quote = Some(c);
            false
        }
        None => true,
    })
}

/// An escape in a quoted string or character constant of an action that gtmpl cannot read
/// (its unquoting loops forever on `\x` or `\u` without their hex digits, and slices
/// bytes after them): Go's escapes only, with their digits.
fn bad_escape(action: &str) -> Option<String> {
    let mut quote: Option<char> = None;
    let mut chars = action.chars();
    while let Some(c) = chars.next() {
        match quote {
            None if matches!(c, '"' | '\'') => quote = Some(c),
            None if c == '`' => quote = Some(c),
            None => {}
            Some('`') if c == '`' => quote = None,
            Some('`') => {}
            Some(q) if c == q => quote = None,
            Some(_) if c == '\\' => {
                let e = chars.next()?;
                let digits = match e {
                    'x' => 2,
                    'u' => 4,
                    'U' => 8,
                    'b' | 'f' | 'n' | 'r' | 't' | '\'' | '"' | '\\' => 0,
                    other => return Some(format!("unknown escape \\{other} in a string")),
                };
                for _ in 0..digits {
                    if !chars.next().is_some_and(|d| d.is_ascii_hexdigit()) {
                        return Some(format!(
                            "\\{e} in a string needs {digits} hexadecimal digits"
                        ));
                    }
                }
            }
            Some(_) => {}
        }
    }
    None
}

/// Where the action that `s` starts (the text right after `{{`) ends: the offset of its
/// closing `}}`, which a quoted `}}` is not; None when it is not closed. gtmpl's lexer
/// never returns from an action left open at the end of the text, so such a template is
/// refused before it gets there.
fn action_end(s: &str) -> Option<usize> {
    if s.trim_start_matches('-').trim_start().starts_with("/*") {
        let c = s.find("*/")?;
        return s[c..].find("}}").map(|e| c + e);
    }
    unquoted(s)
        .find(|&(i, _)| s[i..].starts_with("}}"))
        .map(|(i, _)| i)
}

/// Refuses templates that call themselves, directly or through others (gtmpl would recurse
/// until the stack ran out). Helm allows bounded recursion; berth does not.
fn refuse_cycles(calls: &Calls) -> Result<(), RenderError> {
    fn visit<'a>(
        name: &'a str,
        calls: &'a Calls,
        path: &mut Vec<&'a str>,
        done: &mut std::collections::HashSet<&'a str>,
    ) -> Result<(), RenderError> {
        if done.contains(name) {
            return Ok(());
        }
        for (callee, at) in calls.get(name).into_iter().flatten() {
            if callee == name || path.contains(&callee.as_str()) {
                return Err(RenderError {
                    template: at.clone(),
                    reason: format!(
                        "template {callee:?} calls itself (recursion is not supported)"
                    ),
                });
            }
            path.push(callee);
            visit(callee, calls, path, done)?;
            path.pop();
        }
        done.insert(name);
        Ok(())
    }
    let mut done = std::collections::HashSet::new();
    let mut names: Vec<&String> = calls.keys().collect();
    names.sort();
    for n in names {
        visit(n, calls, &mut vec![n.as_str()], &mut done)?;
    }
    Ok(())
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
        let close = action_end(&after[2..])
            .map(|c| c + 4)
            .ok_or_else(|| RenderError {
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
        } else if !in_str && bytes[i..].starts_with(word.as_bytes()) {
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
