//! Manifests: YAML (multi-document), JSON and Pacemaker XML, told apart by their first
//! character, so that a file, stdin or an etcd value may hold any of them.

use std::fmt;

use serde::de::DeserializeOwned;

use super::Bundle;
use super::cib::{self, XmlError};

/// The three formats berth reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
    Xml,
}

impl Format {
    /// Guesses from the first non-blank character: `<` is XML, `{` or `[` JSON, else YAML.
    pub fn detect(text: &str) -> Format {
        match text.trim_start().chars().next() {
            Some('<') => Format::Xml,
            Some('{') | Some('[') => Format::Json,
            _ => Format::Yaml,
        }
    }
}

/// Text that is not a bundle manifest. Not retryable: the input must change.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// A YAML document does not fit the schema (unknown field, wrong type, …).
    #[error("yaml document {doc}: {path}: {source}")]
    Yaml {
        doc: usize,
        path: String,
        #[source]
        source: serde_yaml::Error,
    },
    /// A JSON value does not fit the schema.
    #[error("json: {path}: {source}")]
    Json {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Xml(#[from] XmlError),
    /// Nested deeper than [`MAX_FLOW_DEPTH`].
    #[error(transparent)]
    TooDeep(TooDeep),
}

/// The deepest flow nesting (`{`, `[`) accepted in YAML: libyaml's scanner takes time
/// quadratic in it (20,000 levels take seconds, 100,000 minutes), and no real document
/// comes near.
pub const MAX_FLOW_DEPTH: usize = 256;

/// YAML nested deeper than [`MAX_FLOW_DEPTH`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("nested deeper than {MAX_FLOW_DEPTH} levels of {{ and [")]
pub struct TooDeep;

/// Refuses YAML whose flow collections nest deeper than [`MAX_FLOW_DEPTH`], before a YAML
/// parser sees it. Brackets are counted wherever they are, quoted ones included: an
/// over-count that only a pathological document reaches.
pub fn check_flow_depth(text: &str) -> Result<(), TooDeep> {
    let mut depth = 0usize;
    for b in text.bytes() {
        match b {
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_FLOW_DEPTH {
                    return Err(TooDeep);
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Bundles read from one text, with warnings about what was ignored (CIB sections).
#[derive(Debug, Default)]
pub struct Parsed {
    pub bundles: Vec<Bundle>,
    pub warnings: Vec<String>,
}

/// Reads every bundle a text holds, whatever its format. Empty YAML documents are skipped.
/// Only the schema is checked here; [`super::validate::validate`] checks the rules.
pub fn parse(text: &str) -> Result<Parsed, ParseError> {
    match Format::detect(text) {
        Format::Xml => {
            let imported = cib::import(text)?;
            Ok(Parsed {
                bundles: imported.bundles,
                warnings: imported.warnings,
            })
        }
        Format::Json => {
            let value: serde_json::Value =
                serde_json::from_str(text).map_err(|source| ParseError::Json {
                    path: ".".into(),
                    source,
                })?;
            let items = match value {
                serde_json::Value::Array(items) => items,
                one => vec![one],
            };
            let bundles = items
                .into_iter()
                .enumerate()
                .map(|(i, v)| {
                    typed(v).map_err(|(path, source)| ParseError::Json {
                        path: format!("[{i}].{path}"),
                        source,
                    })
                })
                .collect::<Result<_, _>>()?;
            Ok(Parsed {
                bundles,
                warnings: Vec::new(),
            })
        }
        Format::Yaml => {
            check_flow_depth(text).map_err(ParseError::TooDeep)?;
            let mut bundles = Vec::new();
            for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
                let yaml_err = |path: String, source| ParseError::Yaml {
                    doc: i + 1,
                    path,
                    source,
                };
                let value: serde_yaml::Value =
                    serde::Deserialize::deserialize(doc).map_err(|e| yaml_err(".".into(), e))?;
                if value.is_null() {
                    continue;
                }
                bundles.push(typed(value).map_err(|(p, e)| yaml_err(p, e))?);
            }
            Ok(Parsed {
                bundles,
                warnings: Vec::new(),
            })
        }
    }
}

/// Deserializes a generic value into a typed one, keeping the path of the field that failed.
fn typed<'de, D, T>(value: D) -> Result<T, (String, D::Error)>
where
    D: serde::Deserializer<'de>,
    T: DeserializeOwned,
{
    serde_path_to_error::deserialize(value).map_err(|e| (e.path().to_string(), e.into_inner()))
}

/// Bundles as a multi-document YAML stream (`---` between documents).
pub fn to_yaml(bundles: &[Bundle]) -> String {
    let mut out = String::new();
    for (i, b) in bundles.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&serde_yaml::to_string(b).expect("a bundle always serializes"));
    }
    out
}

/// One bundle as pretty JSON; several as a JSON array.
pub fn to_json(bundles: &[Bundle]) -> String {
    let s = match bundles {
        [one] => serde_json::to_string_pretty(one),
        many => serde_json::to_string_pretty(many),
    };
    s.expect("a bundle always serializes") + "\n"
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Yaml => "yaml",
            Format::Json => "json",
            Format::Xml => "xml",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::seed;
    use super::*;

    #[test]
    fn deep_flow_yaml_is_refused_before_the_parser() {
        let deep = format!("a: {}1{}", "{b: ".repeat(100_000), "}".repeat(100_000));
        let e = parse(&deep).unwrap_err().to_string();
        assert!(e.contains("nested deeper than 256"), "{e}");
        let ok = format!("a: {}1{}", "[".repeat(200), "]".repeat(200));
        assert!(check_flow_depth(&ok).is_ok());
    }

    #[test]
    fn yaml_multi_document_and_json_array() {
        let b = seed();
        let two = [b.clone(), b.clone()];
        let yaml = format!("---\n{}---\n", to_yaml(&two));
        assert_eq!(parse(&yaml).unwrap().bundles, two.to_vec());
        assert_eq!(parse(&to_json(&two)).unwrap().bundles, two.to_vec());
        assert_eq!(
            parse(&to_json(&two[..1])).unwrap().bundles,
            two[..1].to_vec()
        );
    }

    #[test]
    fn unknown_field_is_refused_with_its_path() {
        let yaml = to_yaml(&[seed()]).replace("replicas: 3", "replica: 3");
        let e = parse(&yaml).unwrap_err().to_string();
        assert!(
            e.starts_with("yaml document 1: spec.docker.replica: unknown field `replica`"),
            "{e}"
        );
        let json = to_json(&[seed()]).replace("\"replicas\"", "\"replica\"");
        let e = parse(&json).unwrap_err().to_string();
        assert!(
            e.starts_with("json: [0].spec.docker.replica: unknown field `replica`"),
            "{e}"
        );
    }

    #[test]
    fn wrong_type_is_refused_with_its_path() {
        let yaml = to_yaml(&[seed()]).replace("port: 80", "port: eighty");
        let e = parse(&yaml).unwrap_err().to_string();
        assert!(e.contains("spec.network.portMappings[0].port"), "{e}");
    }
}
