//! Safety checks on template source before gtmpl sees it: size, nesting, include cycles, escapes.

use super::*;

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
pub(super) type Calls = HashMap<String, Vec<(String, String)>>;

/// Checks a template's size and nesting before gtmpl sees it, and records which templates
/// each `define` (or the file itself, outside any) calls, for [`refuse_cycles`].
pub(super) fn scan(name: &str, src: &str, calls: &mut Calls) -> Result<(), RenderError> {
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
        if let Some(why) = refused(action) {
            return Err(fail(action_line, why));
        }
        let first = action.split_whitespace().next().unwrap_or_default();
        // Who calls: the innermost define around this action, or the file itself.
        let caller = open
            .iter()
            .rev()
            .find_map(|o| o.clone())
            .unwrap_or_else(|| name.to_string());
        for callee in callees(action) {
            calls
                .entry(caller.clone())
                .or_default()
                .push((callee, format!("{name}:{action_line}")));
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

/// Why gtmpl may not see an action: a non-ASCII character outside a string, an escape it
/// mishandles, or parentheses nested too deep.
fn refused(action: &str) -> Option<String> {
    if let Some((_, c)) = unquoted(action).find(|(_, c)| !c.is_ascii()) {
        // gtmpl's lexer steps back one byte, not one character, after a token: a non-ASCII
        // character there would be split (it panics on its thread).
        return Some(format!(
            "{c:?} outside a quoted string in an action is not supported"
        ));
    }
    if let Some(why) = bad_escape(action) {
        return Some(why);
    }
    let mut depth = 0usize;
    for c in action.chars() {
        match c {
            '(' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Some(format!("parentheses nested deeper than {MAX_NESTING}"));
                }
            }
            ')' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// The string literal at the start of `after` (past blanks), if there is one.
fn literal(after: &str) -> Option<String> {
    let t = after.trim_start().strip_prefix('"')?;
    t.find('"').map(|e| t[..e].to_string())
}

/// The templates an action calls by a literal name (`template`, `include`, `block`).
fn callees(action: &str) -> Vec<String> {
    let mut out = Vec::new();
    for word in ["template", "include", "block"] {
        let mut a = action;
        while let Some(i) = find_word(a, word) {
            a = &a[i + word.len()..];
            out.extend(literal(a));
        }
    }
    out
}

/// The characters of an action (with their byte offsets) that are not inside a string
/// ("…", `…`) or a character constant ('…'), as gtmpl's lexer reads them.
pub(super) fn unquoted(action: &str) -> impl Iterator<Item = (usize, char)> + '_ {
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
pub(super) fn bad_escape(action: &str) -> Option<String> {
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
pub(super) fn action_end(s: &str) -> Option<usize> {
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
pub(super) fn refuse_cycles(calls: &Calls) -> Result<(), RenderError> {
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
pub(super) fn mark_required(name: &str, src: &str) -> Result<String, RenderError> {
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
pub(super) fn find_word(s: &str, word: &str) -> Option<usize> {
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
