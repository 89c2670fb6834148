//! The cluster's attributes, kept as Pacemaker keeps them in the CIB: node attributes in the
//! nodes section (permanent, `crm_attribute -l forever`), transient node attributes in the
//! status section (`-l reboot`: gone when that node's instance restarts) and cluster
//! properties (`--type crm_config`, in a named set). Each is one etcd key (see
//! [`crate::store::Keys::attribute`]); this module names the sections and checks names and
//! values. Pure: no I/O.
//!
//! Permanent node attributes are what location rules read: with `berth node --label` as one
//! source, and `berth attribute` setting them at run time (a key's value wins over a label
//! of the same name).

use std::fmt;

/// Where an attribute lives: Pacemaker's CIB sections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Section {
    /// Permanent node attributes (`<nodes><node><instance_attributes>`; `-l forever`).
    Nodes,
    /// Transient node attributes (`<status><node_state><transient_attributes>`; `-l reboot`).
    Status,
    /// Cluster properties (`<crm_config><cluster_property_set id=SET>`).
    CrmConfig,
}

/// Pacemaker's default set of cluster properties.
pub const DEFAULT_SET: &str = "cib-bootstrap-options";

/// The longest attribute name (bytes).
pub const MAX_NAME: usize = 128;
/// The longest attribute value (bytes): agents keep sequence numbers, node names and
/// replication offsets in them.
pub const MAX_VALUE: usize = 4096;

impl Section {
    /// The word in keys and in `crm_attribute --type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Section::Nodes => "nodes",
            Section::Status => "status",
            Section::CrmConfig => "crm_config",
        }
    }

    /// The section of `crm_attribute --type`, and of `--lifetime` (`forever` → nodes,
    /// `reboot` → status) when no type is given: Pacemaker's rules. Without either, a node
    /// attribute (`--node`) is permanent and anything else a cluster property.
    pub fn from_flags(
        kind: Option<&str>,
        lifetime: Option<&str>,
        node_given: bool,
    ) -> Result<Section, String> {
        let by_lifetime = match lifetime {
            None => None,
            Some("reboot") => Some(Section::Status),
            Some("forever") => Some(Section::Nodes),
            Some(other) => {
                return Err(format!("--lifetime {other:?}: expected reboot or forever"));
            }
        };
        let by_type = match kind {
            None => None,
            Some("nodes") => Some(Section::Nodes),
            Some("status") => Some(Section::Status),
            Some("crm_config") => Some(Section::CrmConfig),
            Some(other) => {
                return Err(format!(
                    "--type {other:?}: expected nodes, status or crm_config"
                ));
            }
        };
        match (by_type, by_lifetime) {
            (Some(Section::CrmConfig), Some(_)) => {
                Err("--lifetime applies to node attributes, not to --type crm_config".into())
            }
            (Some(t), Some(l)) if t != l => Err(format!(
                "--type {} and --lifetime {} disagree",
                t.as_str(),
                lifetime.unwrap_or_default()
            )),
            (Some(t), _) | (None, Some(t)) => Ok(t),
            (None, None) if node_given => Ok(Section::Nodes),
            (None, None) => Ok(Section::CrmConfig),
        }
    }

    /// The section named `word` in a key.
    pub fn parse(word: &str) -> Option<Section> {
        match word {
            "nodes" => Some(Section::Nodes),
            "status" => Some(Section::Status),
            "crm_config" => Some(Section::CrmConfig),
            _ => None,
        }
    }
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Checks an attribute's name: 1 to [`MAX_NAME`] bytes of letters, digits and `_ - . :`
/// (Pacemaker's own names, `master-galera`, `rmq-node-attr-last-known-rabbitmq`,
/// `#health-disk`, fit; a `/` would reach another key).
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("attribute name: required".into());
    }
    if name.len() > MAX_NAME {
        return Err(format!(
            "attribute name {:?}…: longer than {MAX_NAME} bytes",
            &name[..name.floor_char_boundary(32)]
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_-.:#".contains(*c)))
    {
        return Err(format!(
            "attribute name {name:?}: {bad:?} is not allowed (letters, digits and _ - . : # only)"
        ));
    }
    Ok(())
}

/// Checks an attribute's value: at most [`MAX_VALUE`] bytes, no control characters but tab.
pub fn check_value(value: &str) -> Result<(), String> {
    if value.len() > MAX_VALUE {
        return Err(format!(
            "attribute value: {} bytes, more than {MAX_VALUE}",
            value.len()
        ));
    }
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err("attribute value: control characters are not allowed".into());
    }
    Ok(())
}

/// Checks the owner of an attribute: a node name (a host, or a replica `<bundle>-<i>`), or a
/// property set's id.
pub fn check_owner(section: Section, owner: &str) -> Result<(), String> {
    match section {
        Section::Nodes | Section::Status => super::validate::node_name(owner),
        Section::CrmConfig => {
            if super::validate::is_xml_id(owner) && !owner.contains('/') {
                Ok(())
            } else {
                Err(format!(
                    "--set-name {owner:?}: not an XML id (a letter or _, then letters, digits, _ - .)"
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_follow_crm_attributes_flags() {
        let s = |t, l, n| Section::from_flags(t, l, n);
        assert_eq!(s(None, Some("reboot"), true), Ok(Section::Status));
        assert_eq!(s(None, Some("forever"), true), Ok(Section::Nodes));
        assert_eq!(s(Some("status"), None, true), Ok(Section::Status));
        assert_eq!(s(Some("crm_config"), None, false), Ok(Section::CrmConfig));
        assert_eq!(s(None, None, true), Ok(Section::Nodes));
        assert_eq!(s(None, None, false), Ok(Section::CrmConfig));
        assert!(s(Some("status"), Some("forever"), true).is_err());
        assert!(s(Some("crm_config"), Some("reboot"), false).is_err());
        assert!(s(Some("cib"), None, false).unwrap_err().contains("--type"));
        assert!(
            s(None, Some("never"), true)
                .unwrap_err()
                .contains("--lifetime")
        );
    }

    #[test]
    fn names_values_and_owners_are_checked() {
        for ok in [
            "galera-role",
            "master-redis",
            "rmq-node-attr-last-known-rabbitmq",
            "#health-disk",
            "a:b.c_d",
        ] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a/b", "a b", "a\nb", &"x".repeat(129)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_value("true").is_ok());
        assert!(check_value("").is_ok());
        assert!(check_value("a\u{1b}[2J").is_err());
        assert!(check_value(&"v".repeat(4097)).is_err());
        assert!(check_owner(Section::Nodes, "controller-0").is_ok());
        assert!(check_owner(Section::Status, "galera-bundle-2").is_ok());
        assert!(check_owner(Section::Nodes, "../x").is_err());
        assert!(check_owner(Section::CrmConfig, "redis_replication").is_ok());
        assert!(check_owner(Section::CrmConfig, "a/b").is_err());
    }
}
