//! `values.schema.json`: the JSON Schema keywords chart schemas use most, checked on the
//! merged values. Supported: type (one or a list), required, properties,
//! additionalProperties (boolean or schema), items, enum, const, minimum, maximum,
//! exclusiveMinimum, exclusiveMaximum, minLength, maxLength, minItems, maxItems. Other
//! keywords are ignored, as a validator ignores unknown keywords.

use serde_json::Value as Json;

/// Every violation, each as `values.path: reason`.
pub fn check(schema: &Json, value: &Json) -> Vec<String> {
    let mut out = Vec::new();
    walk(schema, value, "values", &mut out);
    out
}

fn type_name(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "boolean",
        Json::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Json::Number(_) => "number",
        Json::String(_) => "string",
        Json::Array(_) => "array",
        Json::Object(_) => "object",
    }
}

fn type_ok(want: &str, v: &Json) -> bool {
    let have = type_name(v);
    have == want || (want == "number" && have == "integer")
}

fn walk(schema: &Json, v: &Json, path: &str, out: &mut Vec<String>) {
    let Json::Object(s) = schema else { return };
    if let Some(why) = wrong_type(s, v) {
        out.push(format!("{path}: {why}"));
        return;
    }
    let mut whys = Vec::new();
    check_value(s, v, &mut whys);
    check_size(s, v, &mut whys);
    out.extend(whys.into_iter().map(|why| format!("{path}: {why}")));
    match v {
        Json::Array(items) => {
            if let Some(item_schema) = s.get("items") {
                for (i, item) in items.iter().enumerate() {
                    walk(item_schema, item, &format!("{path}[{i}]"), out);
                }
            }
        }
        Json::Object(map) => walk_object(s, map, path, out),
        _ => {}
    }
}

/// Why `v` is none of the schema's `type`s, if it is not.
fn wrong_type(s: &serde_json::Map<String, Json>, v: &Json) -> Option<String> {
    let wants: Vec<&str> = match s.get("type")? {
        Json::String(one) => vec![one.as_str()],
        Json::Array(many) => many.iter().filter_map(Json::as_str).collect(),
        _ => vec![],
    };
    (!wants.is_empty() && !wants.iter().any(|w| type_ok(w, v)))
        .then(|| format!("is {}, must be {}", type_name(v), wants.join(" or ")))
}

/// `enum`, `const`, and a number's bounds.
fn check_value(s: &serde_json::Map<String, Json>, v: &Json, fail: &mut Vec<String>) {
    if let Some(Json::Array(options)) = s.get("enum")
        && !options.contains(v)
    {
        fail.push(format!(
            "{v} is not one of {}",
            Json::Array(options.clone())
        ));
    }
    if let Some(c) = s.get("const")
        && c != v
    {
        fail.push(format!("must be {c}"));
    }
    let Some(n) = v.as_f64() else { return };
    let bound = |k: &str| s.get(k).and_then(Json::as_f64);
    if let Some(m) = bound("minimum").filter(|m| n < *m) {
        fail.push(format!("{v} is below the minimum {m}"));
    }
    if let Some(m) = bound("maximum").filter(|m| n > *m) {
        fail.push(format!("{v} is above the maximum {m}"));
    }
    if let Some(m) = bound("exclusiveMinimum").filter(|m| n <= *m) {
        fail.push(format!("{v} must be above {m}"));
    }
    if let Some(m) = bound("exclusiveMaximum").filter(|m| n >= *m) {
        fail.push(format!("{v} must be below {m}"));
    }
}

/// A string's length and an array's item count against their bounds.
fn check_size(s: &serde_json::Map<String, Json>, v: &Json, fail: &mut Vec<String>) {
    let count = |k: &str| s.get(k).and_then(Json::as_u64).map(|n| n as usize);
    if let Json::String(text) = v {
        let len = text.chars().count();
        if let Some(m) = count("minLength").filter(|m| len < *m) {
            fail.push(format!("shorter than {m} characters"));
        }
        if let Some(m) = count("maxLength").filter(|m| len > *m) {
            fail.push(format!("longer than {m} characters"));
        }
    }
    if let Json::Array(items) = v {
        if let Some(m) = count("minItems").filter(|m| items.len() < *m) {
            fail.push(format!("fewer than {m} items"));
        }
        if let Some(m) = count("maxItems").filter(|m| items.len() > *m) {
            fail.push(format!("more than {m} items"));
        }
    }
}

/// An object's `required` keys, and each key against its `properties` schema or
/// `additionalProperties`.
fn walk_object(
    s: &serde_json::Map<String, Json>,
    map: &serde_json::Map<String, Json>,
    path: &str,
    out: &mut Vec<String>,
) {
    if let Some(Json::Array(req)) = s.get("required") {
        for r in req.iter().filter_map(Json::as_str) {
            if !map.contains_key(r) {
                out.push(format!("{path}.{r}: required"));
            }
        }
    }
    let props = s.get("properties").and_then(Json::as_object);
    for (k, val) in map {
        let sub = format!("{path}.{k}");
        match props.and_then(|p| p.get(k)) {
            Some(ps) => walk(ps, val, &sub, out),
            None => match s.get("additionalProperties") {
                Some(Json::Bool(false)) => out.push(format!("{sub}: not allowed by the schema")),
                Some(extra @ Json::Object(_)) => walk(extra, val, &sub, out),
                _ => {}
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reports_every_violation_with_its_path() {
        let schema = json!({
            "type": "object",
            "required": ["image", "replicas"],
            "additionalProperties": false,
            "properties": {
                "image": {"type": "string", "minLength": 1},
                "replicas": {"type": "integer", "minimum": 1},
                "ports": {"type": "array", "items": {"type": "integer", "maximum": 65535}}
            }
        });
        assert!(
            check(
                &schema,
                &json!({"image": "x", "replicas": 2, "ports": [80]})
            )
            .is_empty()
        );
        let errs = check(
            &schema,
            &json!({"replicas": 0, "ports": [80, 70000], "typo": 1}),
        );
        assert_eq!(
            errs,
            vec![
                "values.image: required",
                "values.ports[1]: 70000 is above the maximum 65535",
                "values.replicas: 0 is below the minimum 1",
                "values.typo: not allowed by the schema",
            ]
        );
        assert_eq!(
            check(&schema, &json!({"image": 5, "replicas": 1})),
            vec!["values.image: is integer, must be string"]
        );
    }
}
