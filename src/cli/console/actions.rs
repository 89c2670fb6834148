//! The console's actions: each one the CLI's own function (`berth standby`, `ban`, `move`,
//! `clear`, `cleanup`, `scale`, `start`, `stop`, `rollout pause|resume|undo`), run with what
//! it prints kept as the answer, and recorded as an event that names who did it.

use anyhow::{Context, Result, bail};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};

use super::{Console, Peer, Shared, refused};
use crate::cli::cluster::{self, BanChange};
use crate::cli::rollout::RolloutCommand;
use crate::store::Store;

/// An action's form: the fields the actions take (each checks for those it needs), where
/// to go back to, and optionally the token.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct ActionForm {
    bundle: Option<String>,
    node: Option<String>,
    replicas: Option<String>,
    /// `move` or `ban` (the node form's two buttons).
    how: Option<String>,
    back: Option<String>,
    token: Option<String>,
}

impl ActionForm {
    fn field<'f>(&'f self, name: &str, v: &'f Option<String>) -> Result<&'f str> {
        match v.as_deref().map(str::trim) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => bail!("field {name}: missing"),
        }
    }

    fn bundle(&self) -> Result<&str> {
        self.field("bundle", &self.bundle)
    }

    fn node(&self) -> Result<&str> {
        self.field("node", &self.node)
    }
}

/// What an action did: the event's reason and object, and what the CLI said.
struct Done {
    reason: &'static str,
    object: String,
    said: String,
}

/// Runs action `name` through the CLI's code.
async fn run(store: &Store, name: &str, f: &ActionForm) -> Result<Done> {
    let mut out = Vec::new();
    let (reason, object) = match name {
        "standby" | "unstandby" => {
            let node = f.node()?;
            let on = name == "standby";
            cluster::standby(store, node, on, &mut out).await?;
            let reason = if on { "Standby" } else { "Unstandby" };
            (reason, format!("node/{node}"))
        }
        "move" | "ban" | "clear" => {
            let bundle = f.bundle()?;
            let (reason, change) = match (name, f.how.as_deref()) {
                ("clear", _) => ("Cleared", BanChange::Clear),
                ("ban", _) | (_, Some("ban")) => ("Banned", BanChange::Ban(f.node()?)),
                _ => ("Moved", BanChange::Move(f.node()?)),
            };
            cluster::ban(store, bundle, change, &mut out).await?;
            (reason, format!("bundle/{bundle}"))
        }
        "cleanup" => {
            let bundle = f.bundle()?;
            cluster::cleanup(store, bundle, &mut out).await?;
            ("CleanedUp", format!("bundle/{bundle}"))
        }
        "scale" => {
            let bundle = f.bundle()?;
            let n = f.field("replicas", &f.replicas)?;
            let n: u32 = n
                .parse()
                .with_context(|| format!("field replicas: {n:?} is not a whole number"))?;
            super::super::edit::scale(store, bundle, n, &mut out).await?;
            ("Scaled", format!("bundle/{bundle}"))
        }
        "start" | "stop" => {
            let bundle = f.bundle()?;
            let run = name == "start";
            super::super::edit::target_role(store, bundle, run, &mut out).await?;
            let reason = if run {
                "StartedByUser"
            } else {
                "StoppedByUser"
            };
            (reason, format!("bundle/{bundle}"))
        }
        "pause" | "resume" | "undo" => {
            let bundle = f.bundle()?.to_string();
            let (reason, cmd) = match name {
                "pause" => (
                    "RolloutPaused",
                    RolloutCommand::Pause {
                        name: bundle.clone(),
                    },
                ),
                "resume" => (
                    "RolloutResumed",
                    RolloutCommand::Resume {
                        name: bundle.clone(),
                    },
                ),
                _ => (
                    "RolloutUndone",
                    RolloutCommand::Undo {
                        name: bundle.clone(),
                        to: None,
                    },
                ),
            };
            super::super::rollout::run(store, cmd, &mut out).await?;
            (reason, format!("bundle/{bundle}"))
        }
        other => bail!("no action {other:?}"),
    };
    Ok(Done {
        reason,
        object,
        said: String::from_utf8_lossy(&out).trim().to_string(),
    })
}

/// Where to go back to: a path of this console (never another site).
fn back_to(f: &ActionForm) -> String {
    match f.back.as_deref() {
        Some(b) if b.starts_with('/') && !b.starts_with("//") && !b.contains('\\') => {
            b.split(['?', '#']).next().unwrap_or("/").to_string()
        }
        _ => "/".into(),
    }
}

/// Whether a browser's request comes from a page of this console (a form posted by another
/// site carries its own origin).
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get("origin").and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    origin
        .split_once("://")
        .is_some_and(|(_, rest)| rest == host)
}

/// `POST /actions/{action}`: checks the token and the origin, runs the action, records it,
/// and sends the browser back with what happened.
pub async fn act(
    State(c): State<Shared>,
    Path(action): Path<String>,
    axum::extract::ConnectInfo(peer): Peer,
    headers: HeaderMap,
    axum::Form(f): axum::Form<ActionForm>,
) -> Response {
    if c.tokens.is_empty() {
        return refused(
            "this console takes no actions: it was started without --console-token-file",
        );
    }
    let token = Console::token_of(&headers).or_else(|| f.token.clone());
    let Some(user) = token.as_deref().and_then(|t| c.user_of(t)) else {
        return refused(if token.is_none() {
            "an action needs a token: give one on the Token page"
        } else {
            "that token is not in the console's token file"
        });
    };
    if !same_origin(&headers) {
        return refused("the request came from another site's page");
    }
    let back = back_to(&f);
    let (said, failed) = match run(&c.store, &action, &f).await {
        Ok(done) => {
            let message = format!("{} (by {user} from the console, {})", done.said, peer.ip());
            c.events.normal(done.reason, done.object, message);
            (done.said, false)
        }
        Err(e) => (format!("{action}: {e:#}"), true),
    };
    let mut to = format!("{back}?said={}", super::pages::url(&said));
    if failed {
        to.push_str("&failed=1");
    }
    Redirect::to(&to).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_goes_only_to_this_console() {
        let f = |b: &str| ActionForm {
            back: Some(b.into()),
            ..Default::default()
        };
        assert_eq!(back_to(&f("/bundles/web?said=x")), "/bundles/web");
        assert_eq!(back_to(&f("//evil.example/")), "/");
        assert_eq!(back_to(&f("https://evil.example/")), "/");
        assert_eq!(back_to(&f("/\\evil.example")), "/");
        assert_eq!(back_to(&ActionForm::default()), "/");
    }

    #[test]
    fn a_form_from_another_site_is_not_same_origin() {
        let mut h = HeaderMap::new();
        h.insert("host", "127.0.0.1:9463".parse().unwrap());
        assert!(same_origin(&h), "no Origin (curl): allowed");
        h.insert("origin", "http://127.0.0.1:9463".parse().unwrap());
        assert!(same_origin(&h));
        h.insert("origin", "http://evil.example".parse().unwrap());
        assert!(!same_origin(&h));
    }

    #[test]
    fn missing_fields_are_named() {
        let f = ActionForm::default();
        assert_eq!(f.bundle().unwrap_err().to_string(), "field bundle: missing");
        assert_eq!(f.node().unwrap_err().to_string(), "field node: missing");
    }
}
