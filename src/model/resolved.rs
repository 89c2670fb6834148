//! A bundle as the controller and the node agent act on it: its text fields parsed once.
//!
//! The wire types ([`Bundle`] and what it holds) stay faithful to the text a user wrote, so
//! that a CIB or a manifest round-trips byte for byte. [`Resolved`] is what that text means:
//! the meta attributes typed ([`Meta`]), the engine's `options` and `runCommand` parsed, the
//! constraint scores as numbers. [`validate`](super::validate::validate) returns it; a stored
//! bundle keeps it beside its text ([`Bundle::resolved`]), made the first time it is asked
//! for, so that no pass parses a bundle's text again.
//!
//! Resolution itself never fails: a value validation would refuse (one written around it)
//! reads as Pacemaker's default, and a bad `options` or `runCommand` is kept as the reason
//! the replica cannot run.

use std::sync::{Arc, OnceLock};

use super::meta::Meta;
use super::options::{self, OptionError, RunOptions, WordsError};
use super::validate::parse_score;
use super::{Bundle, BundleSpec};

/// The options of a bundle that sets none, shared.
static NO_OPTIONS: std::sync::LazyLock<Arc<RunOptions>> =
    std::sync::LazyLock::new(|| Arc::new(RunOptions::default()));

/// A bundle's text, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// The meta attributes berth acts on.
    pub meta: Meta,
    /// The engine's `options`, parsed (one shared empty value when unset: most bundles set
    /// none, and a `RunOptions` is about a kilobyte).
    pub run: Result<Arc<RunOptions>, OptionError>,
    /// `runCommand` split into words (None when unset: the image's command runs).
    pub command: Result<Option<Vec<String>>, WordsError>,
    /// Each of `spec.locations`' scores, in order (0 for one that does not parse).
    pub location_scores: Vec<i64>,
    /// Each of `spec.colocations`' scores, in order (0 for one that does not parse).
    pub colocation_scores: Vec<i64>,
}

impl Resolved {
    /// Parses `spec`'s text.
    pub fn of(spec: &BundleSpec) -> Resolved {
        let (_, c) = spec.container();
        let score = |s: &str| parse_score(s).unwrap_or(0);
        Resolved {
            meta: Meta::of(spec),
            run: c.options.as_deref().map_or_else(
                || Ok(NO_OPTIONS.clone()),
                |o| options::parse(o).map(Arc::new),
            ),
            command: c
                .run_command
                .as_deref()
                .map(options::split_words)
                .transpose(),
            location_scores: spec.locations.iter().map(|l| score(&l.score)).collect(),
            colocation_scores: spec.colocations.iter().map(|c| score(&c.score)).collect(),
        }
    }

    /// The parsed options, or the defaults when they do not parse (what a host policy
    /// reads: validation refuses such options with the reason).
    pub fn run_or_default(&self) -> &RunOptions {
        self.run.as_deref().unwrap_or(&NO_OPTIONS)
    }
}

/// Where a [`Bundle`] keeps its [`Resolved`] once made. It is not part of the bundle's value:
/// it never serializes, compares equal to any other, prints the same, and a clone starts empty (a clone is
/// made to be changed: `Arc::make_mut`, an edit), so it resolves the changed text.
#[derive(Default)]
pub struct ResolvedCache(OnceLock<Arc<Resolved>>);

impl ResolvedCache {
    /// Drops what was kept (after the spec was changed in place).
    pub fn forget(&mut self) {
        self.0 = OnceLock::new();
    }
}

impl Clone for ResolvedCache {
    fn clone(&self) -> Self {
        ResolvedCache::default()
    }
}

impl PartialEq for ResolvedCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// (The same for every bundle, as it is not part of the value.)
impl std::fmt::Debug for ResolvedCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("..")
    }
}

impl Bundle {
    /// The bundle's text, parsed: made on the first call, then kept. Change the spec through
    /// [`Bundle::spec_mut`] (or a clone), never in place after this.
    pub fn resolved(&self) -> &Resolved {
        self.resolved
            .0
            .get_or_init(|| Arc::new(Resolved::of(&self.spec)))
    }

    /// [`validate`](super::validate::validate)s the bundle and keeps what it resolved.
    pub fn validated(&self) -> Result<&Resolved, super::ValidationErrors> {
        let r = super::validate::validate(self)?;
        Ok(self.resolved.0.get_or_init(|| Arc::new(r)))
    }

    /// The spec, to change: what was resolved of it is dropped.
    pub fn spec_mut(&mut self) -> &mut BundleSpec {
        self.resolved.forget();
        &mut self.spec
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ContainerSpec, Location};

    fn bundle(options: Option<&str>, score: &str) -> Bundle {
        Bundle::new(
            "web",
            BundleSpec {
                docker: Some(ContainerSpec {
                    image: "x".into(),
                    options: options.map(String::from),
                    ..Default::default()
                }),
                locations: vec![Location {
                    node: Some("n1".into()),
                    score: score.into(),
                    ..Default::default()
                }],
                ..Default::default()
            },
        )
    }

    #[test]
    fn text_is_parsed_into_values() {
        let b = bundle(Some("--memory 64m --privileged"), "-INFINITY");
        let r = b.resolved();
        let run = r.run.as_ref().unwrap();
        assert_eq!(run.memory, Some(64 << 20));
        assert!(run.privileged);
        assert_eq!(r.location_scores, vec![-crate::model::validate::INFINITY]);
        assert_eq!(r.command, Ok(None));
    }

    #[test]
    fn a_bad_value_is_kept_as_the_reason_or_the_default() {
        let b = bundle(Some("--restart always"), "lots");
        let r = b.resolved();
        assert!(r.run.is_err());
        assert_eq!(r.run_or_default(), &RunOptions::default());
        assert_eq!(r.location_scores, vec![0]);
    }

    #[test]
    fn a_changed_spec_resolves_again() {
        let mut b = bundle(None, "10");
        assert_eq!(b.resolved().location_scores, vec![10]);
        b.spec_mut().locations[0].score = "20".into();
        assert_eq!(b.resolved().location_scores, vec![20]);
        let mut copy = b.clone();
        copy.spec.locations[0].score = "30".into();
        assert_eq!(copy.resolved().location_scores, vec![30]);
        assert_eq!(b.resolved().location_scores, vec![20]);
        assert_eq!(b, b.clone(), "the cache is not part of the value");
    }
}
