//! Pacemaker XML: a `<bundle>` fragment or a whole `<cib>` in, `<bundle>`s or a `<cib>` out.
//!
//! The XML is read with quick-xml into a small element tree, then mapped one element to one
//! struct of the model, refusing any attribute or element Pacemaker's bundle schema does not
//! have (so a typo is never silently dropped). Ids Pacemaker requires but a manifest leaves
//! out are derived on export the way pcs derives them, and recognised on import so that they
//! do not clutter the manifest; every other id survives XML → manifest → XML.

use std::borrow::Cow;
use std::fmt;

use quick_xml::events::attributes::Attribute;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, Event};
use quick_xml::name::QName;
use quick_xml::{Reader, Writer, XmlVersion};

use super::validate::parse_bool;
use super::{
    Bundle, BundleSpec, ContainerSpec, Metadata, NetworkSpec, NvPair, Operation, PortMapping,
    Primitive, StorageMapping,
};

mod export;
mod import;

pub use export::{export_bundle, export_cib};
pub use import::{Imported, import};

/// An XML document berth cannot read as bundles: where, and why. Not retryable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmlError {
    /// Element path, `bundle[httpd-bundle]/network/port-mapping[httpd-port]`.
    pub path: String,
    pub reason: String,
}

impl fmt::Display for XmlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "xml: {}", self.reason)
        } else {
            write!(f, "xml {}: {}", self.path, self.reason)
        }
    }
}

impl std::error::Error for XmlError {}

fn err<T>(path: &str, reason: impl Into<String>) -> Result<T, XmlError> {
    Err(XmlError {
        path: path.to_string(),
        reason: reason.into(),
    })
}

/// A parsed element: just what the bundle schema needs.
#[derive(Debug, Clone, Default)]
pub(crate) struct Element {
    pub(crate) name: String,
    pub(crate) attrs: Vec<(String, String)>,
    children: Vec<Element>,
    /// Non-whitespace text directly inside (none of the bundle schema's elements has any).
    text: bool,
}

/// How deep elements may nest in an imported document (a CIB needs fewer than ten).
const MAX_DEPTH: usize = 64;

fn parse_tree(text: &str) -> Result<Element, XmlError> {
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let ev = reader.read_event().map_err(|e| XmlError {
            path: String::new(),
            reason: format!("at byte {}: {e}", reader.error_position()),
        })?;
        match ev {
            Event::Start(s) | Event::Empty(s) if root.is_some() => {
                let _ = s;
                return err("", "more than one root element");
            }
            Event::Start(s) => {
                // Pacemaker's bundle schema nests a few levels; a deep document is refused
                // before it can exhaust the stack (when the tree is dropped, if not before).
                if stack.len() >= MAX_DEPTH {
                    return err("", format!("elements nested deeper than {MAX_DEPTH}"));
                }
                stack.push(element(&s)?)
            }
            Event::Empty(s) => {
                let el = element(&s)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::End(_) => {
                let el = stack.pop().expect("the reader checks that tags balance");
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut()
                    && !t.xml10_content().trim().is_empty()
                {
                    top.text = true;
                }
            }
            Event::CData(_) | Event::GeneralRef(_) => {
                if let Some(top) = stack.last_mut() {
                    top.text = true;
                }
            }
            Event::Eof => break,
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
    if !stack.is_empty() {
        return err("", format!("unclosed element <{}>", stack[0].name));
    }
    root.ok_or_else(|| XmlError {
        path: String::new(),
        reason: "no element found".into(),
    })
}

/// One start (or empty) tag: its name and attributes (values normalized).
pub(crate) fn element(s: &BytesStart<'_>) -> Result<Element, XmlError> {
    let name = s.name().into_inner().to_string();
    let mut attrs = Vec::new();
    for a in s.attributes() {
        let a = a.map_err(|e| XmlError {
            path: name.clone(),
            reason: format!("bad attribute: {e}"),
        })?;
        let key = a.key.into_inner().to_string();
        let value = a
            .normalized_value(XmlVersion::Implicit1_0)
            .map_err(|e| XmlError {
                path: name.clone(),
                reason: format!("attribute {key}: {e}"),
            })?
            .into_owned();
        attrs.push((key, value));
    }
    Ok(Element {
        name,
        attrs,
        ..Element::default()
    })
}

/// Takes attributes by name and refuses, at `finish`, any that nobody took.
struct Attrs<'a> {
    el: &'a Element,
    path: String,
    taken: Vec<bool>,
}

impl<'a> Attrs<'a> {
    fn new(el: &'a Element, path: &str) -> Result<Self, XmlError> {
        if el.text {
            return err(
                path,
                format!("<{}> holds text, which the schema does not allow", el.name),
            );
        }
        Ok(Attrs {
            el,
            path: path.to_string(),
            taken: vec![false; el.attrs.len()],
        })
    }

    fn opt(&mut self, name: &str) -> Option<String> {
        let i = self.el.attrs.iter().position(|(k, _)| k == name)?;
        self.taken[i] = true;
        Some(self.el.attrs[i].1.clone())
    }

    fn req(&mut self, name: &str) -> Result<String, XmlError> {
        self.opt(name).ok_or_else(|| XmlError {
            path: self.path.clone(),
            reason: format!("attribute {name} is required"),
        })
    }

    fn num<T: std::str::FromStr>(&mut self, name: &str) -> Result<Option<T>, XmlError> {
        match self.opt(name) {
            None => Ok(None),
            Some(v) => v.trim().parse().map(Some).map_err(|_| XmlError {
                path: self.path.clone(),
                reason: format!("attribute {name}: {v:?} is not a number in range"),
            }),
        }
    }

    fn boolean(&mut self, name: &str) -> Result<Option<bool>, XmlError> {
        match self.opt(name) {
            None => Ok(None),
            Some(v) => parse_bool(&v).map(Some).ok_or_else(|| XmlError {
                path: self.path.clone(),
                reason: format!("attribute {name}: {v:?} is not a boolean"),
            }),
        }
    }

    /// Refuses what was not taken; for `id-ref`, says why (references are not resolved).
    fn finish(self) -> Result<(), XmlError> {
        for (i, (k, _)) in self.el.attrs.iter().enumerate() {
            if !self.taken[i] {
                let why = match k.as_str() {
                    "id-ref" => {
                        "id-ref references are not supported: write the element out".to_string()
                    }
                    "template" => {
                        "resource templates are not supported: write the primitive out".to_string()
                    }
                    _ => format!("unknown attribute {k}"),
                };
                return err(&self.path, why);
            }
        }
        Ok(())
    }
}

/// The id pcs gives an attribute set: `<owner>-<element>` (`httpd-apache-instance_attributes`).
pub fn set_id_for(owner: &str, element: &str) -> String {
    format!("{owner}-{element}")
}

/// The id pcs gives a pair: `<set id>-<name>`.
pub fn nvpair_id(set_id: &str, name: &str) -> String {
    format!("{set_id}-{name}")
}

/// The id pcs gives an operation: `<primitive>-<name>-interval-<interval>`.
pub fn op_id(prim: &str, name: &str, interval: &str) -> String {
    format!("{prim}-{name}-interval-{interval}")
}

// ---- export ----------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::super::fixtures::seed;
    use super::*;

    /// The seed example, exactly as DESIGN.md gives it.
    pub const SEED_XML: &str = r#"<bundle id="httpd-bundle">
  <docker image="pcmk:httpd" replicas="3"/>
  <network ip-range-start="192.168.24.112" host-netmask="24">
    <port-mapping id="httpd-port" port="80"/>
  </network>
  <storage>
    <storage-mapping id="httpd-root" source-dir="/srv/www" target-dir="/var/www/html" options="rw"/>
    <storage-mapping id="httpd-logs" source-dir-root="/var/log/pacemaker/bundles" target-dir="/etc/httpd/logs" options="rw"/>
  </storage>
  <primitive id="httpd-apache" class="ocf" provider="heartbeat" type="apache"/>
</bundle>"#;

    #[test]
    fn seed_xml_imports_as_the_seed() {
        let got = import(SEED_XML).unwrap();
        assert_eq!(got.bundles, vec![seed()]);
        assert!(got.warnings.is_empty());
    }

    #[test]
    fn cib_imports_bundles_and_warns_about_the_rest() {
        let cib = format!(
            r#"<cib validate-with="pacemaker-3.10" epoch="1" num_updates="0" admin_epoch="0">
  <configuration><crm_config/><nodes><node id="1" uname="a"/></nodes>
    <resources><primitive id="vip" class="ocf" provider="heartbeat" type="IPaddr2"/>{SEED_XML}</resources>
    <constraints/></configuration><status/></cib>"#
        );
        let got = import(&cib).unwrap();
        assert_eq!(got.bundles, vec![seed()]);
        assert_eq!(got.warnings.len(), 2, "{:?}", got.warnings);
        assert!(got.warnings.iter().any(|w| w.contains("vip")));
        assert!(got.warnings.iter().any(|w| w.contains("<nodes>")));
    }

    #[test]
    fn export_then_import_is_identity() {
        let mut b = seed();
        let p = b.spec.primitive.as_mut().unwrap();
        p.instance_attributes.push(NvPair {
            id: Some("custom-id".into()),
            name: "configfile".into(),
            value: Some("/etc/httpd/conf/httpd.conf".into()),
        });
        p.operations.push(Operation {
            name: "monitor".into(),
            interval: "10s".into(),
            timeout: Some("20s".into()),
            on_fail: Some("restart".into()),
            ..Default::default()
        });
        b.spec.meta_attributes.push(NvPair {
            id: None,
            name: "target-role".into(),
            value: Some("Started".into()),
        });
        let xml = export_bundle(&b);
        assert!(
            xml.contains(r#"id="httpd-apache-monitor-interval-10s""#),
            "{xml}"
        );
        assert_eq!(import(&xml).unwrap().bundles, vec![b.clone()]);
        let cib = export_cib(std::slice::from_ref(&b));
        assert_eq!(import(&cib).unwrap().bundles, vec![b]);
    }

    #[test]
    fn values_needing_escapes_survive_export() {
        let mut b = seed();
        b.spec.docker.as_mut().unwrap().run_command = Some("sh -c 'a && b'\n\t<x> \"q\"\r".into());
        let xml = export_bundle(&b);
        assert!(xml.contains("&#10;"), "{xml}");
        assert_eq!(import(&xml).unwrap().bundles, vec![b]);
    }

    #[test]
    fn unknown_attribute_is_refused_with_its_path() {
        let bad = SEED_XML.replace(r#"port="80""#, r#"prot="80""#);
        let e = import(&bad).unwrap_err();
        assert_eq!(
            e.path,
            "bundle[httpd-bundle]/network/port-mapping[httpd-port]"
        );
        assert_eq!(e.reason, "unknown attribute prot");
    }

    #[test]
    fn unknown_element_and_bad_numbers_are_refused() {
        let e = import(&SEED_XML.replace("<storage>", "<storage><volume/>")).unwrap_err();
        assert!(e.reason.contains("<volume>"), "{e}");
        let e = import(&SEED_XML.replace(r#"replicas="3""#, r#"replicas="-3""#)).unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"xml bundle[httpd-bundle]/docker: attribute replicas: "-3" is not a number in range"#
        );
        let e = import("<bundle id='x'><docker image='i'/>").unwrap_err();
        assert!(
            e.reason.contains("unclosed") || e.reason.contains("byte"),
            "{e}"
        );
    }
}
