//! Sprig's and Helm's template functions beyond the first set in [`super::funcs`]: the
//! string, list, dict, math, encoding, regex, semver and crypto-hash families (dates are in
//! [`super::dates`]), `tpl` and
//! `fromYaml`/`fromJson`. Each checks its arguments and fails with a message naming the
//! function. Functions that reach outside the chart (`lookup`, `env`, `getHostByName`, file
//! access) are defined only to fail with that reason.

use super::funcs::{err, int, text, to_json};
use super::*;

/// The functions this module adds.
pub(super) fn funcs() -> Vec<(&'static str, Func)> {
    vec![
        // Strings.
        ("trunc", trunc as Func),
        ("trimSuffix", trim_suffix),
        ("trimPrefix", trim_prefix),
        ("trimAll", trim_all),
        ("replace", replace),
        ("contains", contains),
        ("hasPrefix", has_prefix),
        ("hasSuffix", has_suffix),
        ("repeat", repeat),
        ("substr", substr),
        ("nospace", nospace),
        ("title", title),
        ("untitle", untitle),
        ("snakecase", snakecase),
        ("kebabcase", kebabcase),
        ("camelcase", camelcase),
        ("squote", squote),
        ("cat", cat),
        ("splitList", split_list),
        ("split", split),
        ("join", join),
        ("toString", to_string),
        ("toStrings", to_strings),
        // Lists.
        ("first", first),
        ("last", last),
        ("rest", rest),
        ("initial", initial),
        ("append", append),
        ("prepend", prepend),
        ("concat", concat),
        ("uniq", uniq),
        ("has", has),
        ("without", without),
        ("compact", compact),
        ("reverse", reverse),
        ("sortAlpha", sort_alpha),
        ("until", until),
        // Dicts.
        ("get", get),
        ("set", set),
        ("unset", unset),
        ("hasKey", has_key),
        ("keys", keys),
        ("values", values),
        ("pick", pick),
        ("omit", omit),
        ("merge", merge),
        ("mergeOverwrite", merge_overwrite),
        ("deepCopy", deep_copy),
        // Math.
        ("add", add),
        ("add1", add1),
        ("sub", sub),
        ("mul", mul),
        ("div", div),
        ("mod", modulo),
        ("max", max),
        ("min", min),
        ("int", to_int),
        ("int64", to_int),
        ("float64", to_float),
        ("floor", floor),
        ("ceil", ceil),
        ("round", round),
        // Encoding and hashes.
        ("b64dec", b64dec),
        ("toJson", to_json_text),
        ("toPrettyJson", to_pretty_json),
        ("fromJson", from_json_text),
        ("fromYaml", from_yaml),
        ("sha256sum", sha256sum),
        ("sha512sum", sha512sum),
        ("sha1sum", sha1sum),
        ("adler32sum", adler32sum),
        // Regular expressions.
        ("regexMatch", regex_match),
        ("regexFind", regex_find),
        ("regexFindAll", regex_find_all),
        ("regexReplaceAll", regex_replace_all),
        ("regexSplit", regex_split),
        // Versions.
        ("semver", semver_fn),
        ("semverCompare", semver_compare),
        // Helm.
        ("tpl", tpl),
        // Out of reach on purpose.
        ("lookup", lookup),
        ("env", env),
        ("expandenv", env),
        ("getHostByName", host_by_name),
    ]
}

fn arity(name: &str, args: &[Value], n: usize) -> Result<(), FuncError> {
    if args.len() == n {
        Ok(())
    } else {
        Err(FuncError::ExactlyXArgs(name.into(), n))
    }
}

/// A result string, refused over the output limit (a `repeat` cannot fill memory).
fn bounded(name: &str, s: String) -> Result<Value, FuncError> {
    if s.len() > MAX_OUTPUT_BYTES {
        return Err(err(format!(
            "{name}: the result would exceed {MAX_OUTPUT_BYTES} bytes"
        )));
    }
    Ok(Value::String(s))
}

fn signed(v: &Value, what: &str) -> Result<i64, FuncError> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .ok_or_else(|| err(format!("{what}: not a number"))),
        Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| err(format!("{what}: {s:?} is not a number"))),
        Value::Bool(b) => Ok(i64::from(*b)),
        Value::NoValue | Value::Nil => Ok(0),
        _ => Err(err(format!("{what}: not a number"))),
    }
}

fn float(v: &Value, what: &str) -> Result<f64, FuncError> {
    match v {
        Value::Number(n) => n
            .as_f64()
            .ok_or_else(|| err(format!("{what}: not a number"))),
        Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| err(format!("{what}: {s:?} is not a number"))),
        _ => signed(v, what).map(|n| n as f64),
    }
}

fn items(v: &Value, what: &str) -> Result<Vec<Value>, FuncError> {
    match v {
        Value::Array(a) => Ok(a.clone()),
        Value::NoValue | Value::Nil => Ok(Vec::new()),
        _ => Err(err(format!("{what}: not a list"))),
    }
}

fn map(v: &Value, what: &str) -> Result<HashMap<String, Value>, FuncError> {
    match v {
        Value::Map(m) | Value::Object(m) => Ok(m.clone()),
        Value::NoValue | Value::Nil => Ok(HashMap::new()),
        _ => Err(err(format!("{what}: not a dict"))),
    }
}

fn same(a: &Value, b: &Value) -> bool {
    to_json(a) == to_json(b)
}

// Strings ---------------------------------------------------------------------------------

fn trunc(args: &[Value]) -> Result<Value, FuncError> {
    arity("trunc", args, 2)?;
    let n = signed(&args[0], "trunc")?;
    let s: Vec<char> = text(&args[1]).chars().collect();
    let len = s.len() as i64;
    let kept: String = if n >= 0 {
        s.iter().take(n as usize).collect()
    } else {
        s.iter().skip((len + n).max(0) as usize).collect()
    };
    Ok(Value::String(kept))
}

/// A function of (a pattern, a string) that returns a string.
fn on_text(
    name: &str,
    args: &[Value],
    f: impl Fn(&str, &str) -> String,
) -> Result<Value, FuncError> {
    arity(name, args, 2)?;
    Ok(Value::String(f(&text(&args[0]), &text(&args[1]))))
}

fn trim_suffix(args: &[Value]) -> Result<Value, FuncError> {
    on_text("trimSuffix", args, |suf, s| {
        s.strip_suffix(suf).unwrap_or(s).to_string()
    })
}

fn trim_prefix(args: &[Value]) -> Result<Value, FuncError> {
    on_text("trimPrefix", args, |pre, s| {
        s.strip_prefix(pre).unwrap_or(s).to_string()
    })
}

fn trim_all(args: &[Value]) -> Result<Value, FuncError> {
    on_text("trimAll", args, |cut, s| {
        s.trim_matches(|c| cut.contains(c)).to_string()
    })
}

fn replace(args: &[Value]) -> Result<Value, FuncError> {
    arity("replace", args, 3)?;
    let (old, new, s) = (text(&args[0]), text(&args[1]), text(&args[2]));
    if old.is_empty() {
        return Ok(Value::String(s));
    }
    bounded("replace", s.replace(&old, &new))
}

/// A test of (a pattern, a string).
fn test_text(
    name: &str,
    args: &[Value],
    f: impl Fn(&str, &str) -> bool,
) -> Result<Value, FuncError> {
    arity(name, args, 2)?;
    Ok(Value::Bool(f(&text(&args[0]), &text(&args[1]))))
}

fn contains(args: &[Value]) -> Result<Value, FuncError> {
    test_text("contains", args, |sub, s| s.contains(sub))
}

fn has_prefix(args: &[Value]) -> Result<Value, FuncError> {
    test_text("hasPrefix", args, |pre, s| s.starts_with(pre))
}

fn has_suffix(args: &[Value]) -> Result<Value, FuncError> {
    test_text("hasSuffix", args, |suf, s| s.ends_with(suf))
}

fn repeat(args: &[Value]) -> Result<Value, FuncError> {
    arity("repeat", args, 2)?;
    let n = int(&args[0], "repeat")?;
    let s = text(&args[1]);
    if s.len().saturating_mul(n) > MAX_OUTPUT_BYTES {
        return Err(err(format!(
            "repeat {n}: the result would exceed {MAX_OUTPUT_BYTES} bytes"
        )));
    }
    Ok(Value::String(s.repeat(n)))
}

fn substr(args: &[Value]) -> Result<Value, FuncError> {
    arity("substr", args, 3)?;
    let (start, end) = (signed(&args[0], "substr")?, signed(&args[1], "substr")?);
    let s: Vec<char> = text(&args[2]).chars().collect();
    let len = s.len() as i64;
    let start = start.clamp(0, len) as usize;
    let end = if end < 0 { len } else { end.clamp(0, len) } as usize;
    Ok(Value::String(
        s.get(start..end.max(start))
            .unwrap_or_default()
            .iter()
            .collect(),
    ))
}

fn nospace(args: &[Value]) -> Result<Value, FuncError> {
    arity("nospace", args, 1)?;
    Ok(Value::String(
        text(&args[0])
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect(),
    ))
}

/// `s` with the first letter of each word upper-cased (`upper`) or lower-cased.
fn word_starts(s: &str, upper: bool) -> String {
    let mut out = String::new();
    let mut start = true;
    for c in s.chars() {
        match (start, upper) {
            (true, true) => out.extend(c.to_uppercase()),
            (true, false) => out.extend(c.to_lowercase()),
            (false, _) => out.push(c),
        }
        start = c.is_whitespace();
    }
    out
}

fn title(args: &[Value]) -> Result<Value, FuncError> {
    arity("title", args, 1)?;
    Ok(Value::String(word_starts(&text(&args[0]), true)))
}

fn untitle(args: &[Value]) -> Result<Value, FuncError> {
    arity("untitle", args, 1)?;
    Ok(Value::String(word_starts(&text(&args[0]), false)))
}

/// Words of an identifier: split at `_`, `-`, spaces and lower-to-upper changes.
fn words(s: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in s.chars() {
        if c == '_' || c == '-' || c.is_whitespace() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if c.is_uppercase() && prev_lower && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        prev_lower = c.is_lowercase() || c.is_ascii_digit();
        cur.push(c);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The words of the one argument, lower-cased and joined by `sep`.
fn lower_words(name: &str, args: &[Value], sep: &str) -> Result<Value, FuncError> {
    arity(name, args, 1)?;
    let w: Vec<String> = words(&text(&args[0]))
        .iter()
        .map(|w| w.to_lowercase())
        .collect();
    Ok(Value::String(w.join(sep)))
}

fn snakecase(args: &[Value]) -> Result<Value, FuncError> {
    lower_words("snakecase", args, "_")
}

fn kebabcase(args: &[Value]) -> Result<Value, FuncError> {
    lower_words("kebabcase", args, "-")
}

fn camelcase(args: &[Value]) -> Result<Value, FuncError> {
    arity("camelcase", args, 1)?;
    let out: String = words(&text(&args[0]))
        .iter()
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_uppercase().chain(c).collect::<String>(),
                None => String::new(),
            }
        })
        .collect();
    Ok(Value::String(out))
}

fn squote(args: &[Value]) -> Result<Value, FuncError> {
    let quoted: Vec<String> = args
        .iter()
        .filter(|v| !matches!(v, Value::NoValue | Value::Nil))
        .map(|v| format!("'{}'", text(v)))
        .collect();
    Ok(Value::String(quoted.join(" ")))
}

fn cat(args: &[Value]) -> Result<Value, FuncError> {
    let parts: Vec<String> = args
        .iter()
        .filter(|v| !matches!(v, Value::NoValue | Value::Nil))
        .map(text)
        .collect();
    bounded("cat", parts.join(" "))
}

fn split_list(args: &[Value]) -> Result<Value, FuncError> {
    arity("splitList", args, 2)?;
    let (sep, s) = (text(&args[0]), text(&args[1]));
    if sep.is_empty() {
        return Ok(Value::Array(
            s.chars().map(|c| Value::String(c.to_string())).collect(),
        ));
    }
    Ok(Value::Array(
        s.split(sep.as_str())
            .map(|p| Value::String(p.to_string()))
            .collect(),
    ))
}

/// Sprig's `split`: a dict `_0`, `_1`, … of the parts.
fn split(args: &[Value]) -> Result<Value, FuncError> {
    arity("split", args, 2)?;
    let Value::Array(parts) = split_list(args)? else {
        unreachable!("splitList returns a list")
    };
    Ok(Value::Map(
        parts
            .into_iter()
            .enumerate()
            .map(|(i, p)| (format!("_{i}"), p))
            .collect(),
    ))
}

fn join(args: &[Value]) -> Result<Value, FuncError> {
    arity("join", args, 2)?;
    let sep = text(&args[0]);
    let parts: Vec<String> = match &args[1] {
        Value::Array(a) => a.iter().map(text).collect(),
        other => vec![text(other)],
    };
    bounded("join", parts.join(&sep))
}

fn to_string(args: &[Value]) -> Result<Value, FuncError> {
    arity("toString", args, 1)?;
    Ok(Value::String(text(&args[0])))
}

fn to_strings(args: &[Value]) -> Result<Value, FuncError> {
    arity("toStrings", args, 1)?;
    Ok(Value::Array(
        items(&args[0], "toStrings")?
            .iter()
            .map(|v| Value::String(text(v)))
            .collect(),
    ))
}

// Lists -----------------------------------------------------------------------------------

fn first(args: &[Value]) -> Result<Value, FuncError> {
    arity("first", args, 1)?;
    Ok(items(&args[0], "first")?
        .first()
        .cloned()
        .unwrap_or(Value::Nil))
}

fn last(args: &[Value]) -> Result<Value, FuncError> {
    arity("last", args, 1)?;
    Ok(items(&args[0], "last")?
        .last()
        .cloned()
        .unwrap_or(Value::Nil))
}

fn rest(args: &[Value]) -> Result<Value, FuncError> {
    arity("rest", args, 1)?;
    Ok(Value::Array(
        items(&args[0], "rest")?.into_iter().skip(1).collect(),
    ))
}

fn initial(args: &[Value]) -> Result<Value, FuncError> {
    arity("initial", args, 1)?;
    let mut l = items(&args[0], "initial")?;
    l.pop();
    Ok(Value::Array(l))
}

fn append(args: &[Value]) -> Result<Value, FuncError> {
    arity("append", args, 2)?;
    let mut l = items(&args[0], "append")?;
    l.push(args[1].clone());
    Ok(Value::Array(l))
}

fn prepend(args: &[Value]) -> Result<Value, FuncError> {
    arity("prepend", args, 2)?;
    let mut l = items(&args[0], "prepend")?;
    l.insert(0, args[1].clone());
    Ok(Value::Array(l))
}

fn concat(args: &[Value]) -> Result<Value, FuncError> {
    let mut out = Vec::new();
    for a in args {
        out.extend(items(a, "concat")?);
    }
    Ok(Value::Array(out))
}

fn uniq(args: &[Value]) -> Result<Value, FuncError> {
    arity("uniq", args, 1)?;
    let mut out: Vec<Value> = Vec::new();
    for v in items(&args[0], "uniq")? {
        if !out.iter().any(|o| same(o, &v)) {
            out.push(v);
        }
    }
    Ok(Value::Array(out))
}

fn has(args: &[Value]) -> Result<Value, FuncError> {
    arity("has", args, 2)?;
    Ok(Value::Bool(
        items(&args[1], "has")?.iter().any(|v| same(v, &args[0])),
    ))
}

fn without(args: &[Value]) -> Result<Value, FuncError> {
    let Some((l, drop)) = args.split_first() else {
        return Err(FuncError::AtLeastXArgs("without".into(), 1));
    };
    Ok(Value::Array(
        items(l, "without")?
            .into_iter()
            .filter(|v| !drop.iter().any(|d| same(d, v)))
            .collect(),
    ))
}

fn compact(args: &[Value]) -> Result<Value, FuncError> {
    arity("compact", args, 1)?;
    Ok(Value::Array(
        items(&args[0], "compact")?
            .into_iter()
            .filter(|v| !super::funcs::empty(v))
            .collect(),
    ))
}

fn reverse(args: &[Value]) -> Result<Value, FuncError> {
    arity("reverse", args, 1)?;
    let mut l = items(&args[0], "reverse")?;
    l.reverse();
    Ok(Value::Array(l))
}

fn sort_alpha(args: &[Value]) -> Result<Value, FuncError> {
    arity("sortAlpha", args, 1)?;
    let mut l: Vec<String> = items(&args[0], "sortAlpha")?.iter().map(text).collect();
    l.sort();
    Ok(Value::Array(l.into_iter().map(Value::String).collect()))
}

fn until(args: &[Value]) -> Result<Value, FuncError> {
    arity("until", args, 1)?;
    let n = int(&args[0], "until")?;
    if n > 10_000 {
        return Err(err("until: at most 10000 elements"));
    }
    Ok(Value::Array((0..n as i64).map(Value::from).collect()))
}

// Dicts -----------------------------------------------------------------------------------

fn get(args: &[Value]) -> Result<Value, FuncError> {
    arity("get", args, 2)?;
    Ok(map(&args[0], "get")?
        .get(&text(&args[1]))
        .cloned()
        .unwrap_or(Value::String(String::new())))
}

fn set(args: &[Value]) -> Result<Value, FuncError> {
    arity("set", args, 3)?;
    let mut m = map(&args[0], "set")?;
    m.insert(text(&args[1]), args[2].clone());
    Ok(Value::Map(m))
}

fn unset(args: &[Value]) -> Result<Value, FuncError> {
    arity("unset", args, 2)?;
    let mut m = map(&args[0], "unset")?;
    m.remove(&text(&args[1]));
    Ok(Value::Map(m))
}

fn has_key(args: &[Value]) -> Result<Value, FuncError> {
    arity("hasKey", args, 2)?;
    Ok(Value::Bool(
        map(&args[0], "hasKey")?.contains_key(&text(&args[1])),
    ))
}

fn keys(args: &[Value]) -> Result<Value, FuncError> {
    let mut out: Vec<String> = Vec::new();
    for a in args {
        out.extend(map(a, "keys")?.into_keys());
    }
    out.sort();
    Ok(Value::Array(out.into_iter().map(Value::String).collect()))
}

fn values(args: &[Value]) -> Result<Value, FuncError> {
    arity("values", args, 1)?;
    let m = map(&args[0], "values")?;
    let mut k: Vec<&String> = m.keys().collect();
    k.sort();
    Ok(Value::Array(k.into_iter().map(|k| m[k].clone()).collect()))
}

/// A dict with only the named keys (`keep`), or without them.
fn select(name: &str, args: &[Value], keep: bool) -> Result<Value, FuncError> {
    let Some((d, names)) = args.split_first() else {
        return Err(FuncError::AtLeastXArgs(name.into(), 1));
    };
    let names: Vec<String> = names.iter().map(text).collect();
    Ok(Value::Map(
        map(d, name)?
            .into_iter()
            .filter(|(k, _)| names.contains(k) == keep)
            .collect(),
    ))
}

fn pick(args: &[Value]) -> Result<Value, FuncError> {
    select("pick", args, true)
}

fn omit(args: &[Value]) -> Result<Value, FuncError> {
    select("omit", args, false)
}

/// Deep merge of `src` into `dst`; `overwrite` lets `src` win on keys both have.
fn merge_into(dst: &mut HashMap<String, Value>, src: HashMap<String, Value>, overwrite: bool) {
    for (k, v) in src {
        match (dst.get_mut(&k), v) {
            (Some(Value::Map(d) | Value::Object(d)), Value::Map(s) | Value::Object(s)) => {
                merge_into(d, s, overwrite)
            }
            (Some(_), v) if overwrite => {
                dst.insert(k, v);
            }
            (Some(_), _) => {}
            (None, v) => {
                dst.insert(k, v);
            }
        }
    }
}

fn merge_with(name: &str, args: &[Value], overwrite: bool) -> Result<Value, FuncError> {
    let Some((d, rest)) = args.split_first() else {
        return Err(FuncError::AtLeastXArgs(name.into(), 1));
    };
    let mut out = map(d, name)?;
    for s in rest {
        merge_into(&mut out, map(s, name)?, overwrite);
    }
    Ok(Value::Map(out))
}

fn merge(args: &[Value]) -> Result<Value, FuncError> {
    merge_with("merge", args, false)
}

fn merge_overwrite(args: &[Value]) -> Result<Value, FuncError> {
    merge_with("mergeOverwrite", args, true)
}

fn deep_copy(args: &[Value]) -> Result<Value, FuncError> {
    arity("deepCopy", args, 1)?;
    Ok(args[0].clone())
}

// Math ------------------------------------------------------------------------------------

fn fold(
    name: &str,
    args: &[Value],
    f: impl Fn(i64, i64) -> Option<i64>,
) -> Result<Value, FuncError> {
    let Some((a, rest)) = args.split_first() else {
        return Err(FuncError::AtLeastXArgs(name.into(), 1));
    };
    let mut acc = signed(a, name)?;
    for v in rest {
        acc = f(acc, signed(v, name)?).ok_or_else(|| err(format!("{name}: overflow")))?;
    }
    Ok(Value::from(acc))
}

fn add(args: &[Value]) -> Result<Value, FuncError> {
    fold("add", args, i64::checked_add)
}

fn add1(args: &[Value]) -> Result<Value, FuncError> {
    arity("add1", args, 1)?;
    fold(
        "add1",
        &[args[0].clone(), Value::from(1i64)],
        i64::checked_add,
    )
}

fn sub(args: &[Value]) -> Result<Value, FuncError> {
    arity("sub", args, 2)?;
    fold("sub", args, i64::checked_sub)
}

fn mul(args: &[Value]) -> Result<Value, FuncError> {
    fold("mul", args, i64::checked_mul)
}

fn div(args: &[Value]) -> Result<Value, FuncError> {
    arity("div", args, 2)?;
    if signed(&args[1], "div")? == 0 {
        return Err(err("div: division by zero"));
    }
    fold("div", args, i64::checked_div)
}

fn modulo(args: &[Value]) -> Result<Value, FuncError> {
    arity("mod", args, 2)?;
    if signed(&args[1], "mod")? == 0 {
        return Err(err("mod: division by zero"));
    }
    fold("mod", args, i64::checked_rem)
}

fn max(args: &[Value]) -> Result<Value, FuncError> {
    fold("max", args, |a, b| Some(a.max(b)))
}

fn min(args: &[Value]) -> Result<Value, FuncError> {
    fold("min", args, |a, b| Some(a.min(b)))
}

fn to_int(args: &[Value]) -> Result<Value, FuncError> {
    arity("int", args, 1)?;
    Ok(Value::from(signed(&args[0], "int")?))
}

fn to_float(args: &[Value]) -> Result<Value, FuncError> {
    arity("float64", args, 1)?;
    Ok(Value::from(float(&args[0], "float64")?))
}

fn floor(args: &[Value]) -> Result<Value, FuncError> {
    arity("floor", args, 1)?;
    Ok(Value::from(float(&args[0], "floor")?.floor()))
}

fn ceil(args: &[Value]) -> Result<Value, FuncError> {
    arity("ceil", args, 1)?;
    Ok(Value::from(float(&args[0], "ceil")?.ceil()))
}

fn round(args: &[Value]) -> Result<Value, FuncError> {
    if args.is_empty() || args.len() > 2 {
        return Err(FuncError::ExactlyXArgs("round".into(), 2));
    }
    let x = float(&args[0], "round")?;
    let places = args
        .get(1)
        .map(|p| signed(p, "round"))
        .transpose()?
        .unwrap_or(0);
    let f = 10f64.powi(places.clamp(0, 15) as i32);
    Ok(Value::from((x * f).round() / f))
}

// Encoding --------------------------------------------------------------------------------

fn b64dec(args: &[Value]) -> Result<Value, FuncError> {
    use base64::Engine as _;
    arity("b64dec", args, 1)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text(&args[0]).as_bytes())
        .map_err(|e| err(format!("b64dec: {e}")))?;
    String::from_utf8(bytes)
        .map(Value::String)
        .map_err(|_| err("b64dec: not UTF-8 text"))
}

fn to_json_text(args: &[Value]) -> Result<Value, FuncError> {
    arity("toJson", args, 1)?;
    bounded("toJson", to_json(&args[0]).to_string())
}

fn to_pretty_json(args: &[Value]) -> Result<Value, FuncError> {
    arity("toPrettyJson", args, 1)?;
    let s = serde_json::to_string_pretty(&to_json(&args[0])).expect("JSON serializes");
    bounded("toPrettyJson", s)
}

/// JSON as a template value.
fn from_json(j: serde_json::Value) -> Value {
    use serde_json::Value as J;
    match j {
        J::Null => Value::Nil,
        J::Bool(b) => Value::Bool(b),
        J::Number(n) => match n.as_i64() {
            Some(i) => Value::from(i),
            None => Value::from(n.as_f64().unwrap_or(0.0)),
        },
        J::String(s) => Value::String(s),
        J::Array(a) => Value::Array(a.into_iter().map(from_json).collect()),
        J::Object(o) => Value::Map(o.into_iter().map(|(k, v)| (k, from_json(v))).collect()),
    }
}

fn from_json_text(args: &[Value]) -> Result<Value, FuncError> {
    arity("fromJson", args, 1)?;
    serde_json::from_str(&text(&args[0]))
        .map(from_json)
        .map_err(|e| err(format!("fromJson: {e}")))
}

fn from_yaml(args: &[Value]) -> Result<Value, FuncError> {
    arity("fromYaml", args, 1)?;
    let t = text(&args[0]);
    crate::model::manifest::check_flow_depth(&t).map_err(|e| err(format!("fromYaml: {e}")))?;
    serde_yaml::from_str::<serde_json::Value>(&t)
        .map(from_json)
        .map_err(|e| err(format!("fromYaml: {e}")))
}

/// A digest of the argument's text as lower-case hex.
fn hex_digest<D: sha2::Digest>(name: &str, args: &[Value]) -> Result<Value, FuncError> {
    arity(name, args, 1)?;
    Ok(Value::String(crate::hex(&D::digest(
        text(&args[0]).as_bytes(),
    ))))
}

fn sha256sum(args: &[Value]) -> Result<Value, FuncError> {
    hex_digest::<sha2::Sha256>("sha256sum", args)
}

fn sha512sum(args: &[Value]) -> Result<Value, FuncError> {
    hex_digest::<sha2::Sha512>("sha512sum", args)
}

fn sha1sum(args: &[Value]) -> Result<Value, FuncError> {
    hex_digest::<sha1::Sha1>("sha1sum", args)
}

/// Adler-32 as Sprig prints it: the checksum in decimal.
fn adler32sum(args: &[Value]) -> Result<Value, FuncError> {
    arity("adler32sum", args, 1)?;
    let sum = adler2::adler32_slice(text(&args[0]).as_bytes());
    Ok(Value::String(sum.to_string()))
}

// Regular expressions ---------------------------------------------------------------------

fn re(name: &str, v: &Value) -> Result<regex::Regex, FuncError> {
    regex::RegexBuilder::new(&text(v))
        .size_limit(1 << 20)
        .build()
        .map_err(|e| err(format!("{name}: {e}")))
}

fn regex_match(args: &[Value]) -> Result<Value, FuncError> {
    arity("regexMatch", args, 2)?;
    Ok(Value::Bool(
        re("regexMatch", &args[0])?.is_match(&text(&args[1])),
    ))
}

fn regex_find(args: &[Value]) -> Result<Value, FuncError> {
    arity("regexFind", args, 2)?;
    let s = text(&args[1]);
    Ok(Value::String(
        re("regexFind", &args[0])?
            .find(&s)
            .map(|m| m.as_str().to_string())
            .unwrap_or_default(),
    ))
}

fn regex_find_all(args: &[Value]) -> Result<Value, FuncError> {
    arity("regexFindAll", args, 3)?;
    let s = text(&args[1]);
    let n = signed(&args[2], "regexFindAll")?;
    let r = re("regexFindAll", &args[0])?;
    let all = r
        .find_iter(&s)
        .map(|m| Value::String(m.as_str().to_string()));
    Ok(Value::Array(if n < 0 {
        all.collect()
    } else {
        all.take(n as usize).collect()
    }))
}

fn regex_replace_all(args: &[Value]) -> Result<Value, FuncError> {
    arity("regexReplaceAll", args, 3)?;
    let (s, with) = (text(&args[1]), text(&args[2]));
    bounded(
        "regexReplaceAll",
        re("regexReplaceAll", &args[0])?
            .replace_all(&s, with.as_str())
            .into_owned(),
    )
}

fn regex_split(args: &[Value]) -> Result<Value, FuncError> {
    arity("regexSplit", args, 3)?;
    let s = text(&args[1]);
    let n = signed(&args[2], "regexSplit")?;
    let r = re("regexSplit", &args[0])?;
    let parts: Vec<Value> = if n < 0 {
        r.split(&s).map(|p| Value::String(p.to_string())).collect()
    } else {
        r.splitn(&s, n as usize)
            .map(|p| Value::String(p.to_string()))
            .collect()
    };
    Ok(Value::Array(parts))
}

// Versions --------------------------------------------------------------------------------

fn version(name: &str, v: &str) -> Result<semver::Version, FuncError> {
    let v = v.trim().trim_start_matches('v');
    // Masterminds accepts "1" and "1.2"; complete them.
    let dots = v.split(['-', '+']).next().unwrap_or(v).matches('.').count();
    let full = match dots {
        0 => format!("{v}.0.0"),
        1 => format!("{v}.0"),
        _ => v.to_string(),
    };
    semver::Version::parse(&full).map_err(|e| err(format!("{name}: {v:?}: {e}")))
}

fn semver_fn(args: &[Value]) -> Result<Value, FuncError> {
    arity("semver", args, 1)?;
    let v = version("semver", &text(&args[0]))?;
    Ok(Value::Map(HashMap::from([
        ("Major".to_string(), Value::from(v.major)),
        ("Minor".to_string(), Value::from(v.minor)),
        ("Patch".to_string(), Value::from(v.patch)),
        ("Prerelease".to_string(), Value::String(v.pre.to_string())),
        ("Metadata".to_string(), Value::String(v.build.to_string())),
        ("Original".to_string(), Value::String(text(&args[0]))),
    ])))
}

/// Masterminds constraints (`>= 1.2 < 2`, `^1.2 || ~2.0`, `1.2.x`) as Cargo requirements:
/// `||` alternatives, each a list of comparators separated by spaces or commas.
fn semver_compare(args: &[Value]) -> Result<Value, FuncError> {
    arity("semverCompare", args, 2)?;
    let v = version("semverCompare", &text(&args[1]))?;
    let constraint = text(&args[0]);
    for alt in constraint.split("||") {
        let mut comparators = Vec::new();
        let mut pending_op = String::new();
        for tok in alt.split([' ', ',']).filter(|t| !t.is_empty()) {
            if tok.chars().all(|c| "<>=!~^".contains(c)) {
                pending_op = tok.to_string();
                continue;
            }
            comparators.push(format!("{}{tok}", std::mem::take(&mut pending_op)));
        }
        let req = comparators
            .iter()
            .map(|c| c.replace(".x", ".*").replace(".X", ".*"))
            .map(|c| {
                if c.starts_with(|ch: char| ch.is_ascii_digit()) {
                    format!("={c}")
                } else {
                    c
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        let req = semver::VersionReq::parse(&req)
            .map_err(|e| err(format!("semverCompare: {constraint:?}: {e}")))?;
        if req.matches(&v) {
            return Ok(Value::Bool(true));
        }
    }
    Ok(Value::Bool(false))
}

// Helm ------------------------------------------------------------------------------------

/// `tpl TEXT CONTEXT`: renders a string as a template, with the chart's named templates.
fn tpl(args: &[Value]) -> Result<Value, FuncError> {
    arity("tpl", args, 2)?;
    let src = text(&args[0]);
    // The same checks as a template file gets before gtmpl sees it (gtmpl hangs or panics
    // on some malformed text); no templates defined in it (they could call themselves).
    let refused = |e: RenderError| err(format!("tpl: {e}"));
    scan("tpl", &src, &mut Calls::new()).map_err(refused)?;
    let src = mark_required("tpl", &src).map_err(refused)?;
    if find_word(&src, "define").is_some() || find_word(&src, "block").is_some() {
        return Err(err("tpl: the text may not define templates"));
    }
    let mut named = SOURCES
        .with(|s| s.borrow().clone())
        .ok_or_else(|| err("tpl: no chart is rendering"))?;
    let name = "tpl".to_string();
    Rc::make_mut(&mut named).push((name.clone(), src));
    let depth = INCLUDE_DEPTH.with(|d| d.get());
    if depth >= MAX_INCLUDE_DEPTH {
        return Err(err(format!(
            "tpl: templates nested deeper than {MAX_INCLUDE_DEPTH}"
        )));
    }
    let mut t = Template::with_name(name.clone());
    t.add_funcs(&super::funcs::funcs());
    for (n, s) in named.iter() {
        t.add_template(n.clone(), s.clone())
            .map_err(|e| err(format!("tpl: {e}")))?;
    }
    INCLUDE_DEPTH.with(|d| d.set(depth + 1));
    let out = t.render(&Context::from(args[1].clone()));
    INCLUDE_DEPTH.with(|d| d.set(depth));
    out.map(Value::String)
        .map_err(|e| super::funcs::lift(e.to_string()))
}

fn lookup(_: &[Value]) -> Result<Value, FuncError> {
    Err(err(
        "lookup: not available: berth renders charts without reading the cluster",
    ))
}

fn env(_: &[Value]) -> Result<Value, FuncError> {
    Err(err(
        "env: not available: a chart renders the same on every host (use values)",
    ))
}

fn host_by_name(_: &[Value]) -> Result<Value, FuncError> {
    Err(err(
        "getHostByName: not available: a chart renders without the network",
    ))
}
