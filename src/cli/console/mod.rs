//! `berth console` (and `berth controller --console ADDR`, `berth up --console ADDR`): a web
//! console served by berth itself. It sits on top, like the rest of the CLI: it reads the
//! cluster through one watch of the prefix ([`snapshot`]), renders plain HTML on the server
//! ([`pages`], [`bundle`]), follows changes live through Server-Sent Events (`/live`), and
//! runs every action through the CLI's own code ([`actions`]), recorded as an event naming
//! who did it. Assets are built into the binary; nothing is fetched at run time.
//!
//! Reading needs no credentials on loopback; every action needs a token from
//! `--console-token-file`. A console bound beyond loopback needs TLS and a token, or it
//! refuses to start.

mod actions;
mod bundle;
mod pages;
mod snapshot;
mod tls;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::store::Store;
pub use snapshot::Snapshot;

/// The default address of `berth console`.
pub const CONSOLE_ADDRESS: &str = "127.0.0.1:9463";

/// Who may act through the console, and how it is reached.
#[derive(Debug, Clone, Default, Args)]
pub struct ConsoleOptions {
    /// A file of tokens, one per line (`TOKEN`, or `NAME TOKEN` to name who acts with it in
    /// the events): every action needs one. Without it the console only shows.
    #[arg(long, value_name = "FILE")]
    pub console_token_file: Option<PathBuf>,
    /// The console's TLS certificate chain (PEM); with --console-tls-key, it serves HTTPS.
    #[arg(long, value_name = "FILE", requires = "console_tls_key")]
    pub console_tls_cert: Option<PathBuf>,
    /// The console's TLS private key (PEM).
    #[arg(long, value_name = "FILE", requires = "console_tls_cert")]
    pub console_tls_key: Option<PathBuf>,
}

/// One token from the token file, and the name actions taken with it are recorded under.
#[derive(Debug, Clone)]
struct Token {
    user: String,
    secret: String,
}

/// Reads a token file: `TOKEN` or `NAME TOKEN` per line; blank lines and `#` comments
/// skipped.
fn read_tokens(file: &std::path::Path) -> Result<Vec<Token>> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("--console-token-file {}: cannot read", file.display()))?;
    let tokens: Vec<Token> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| match l.split_once(char::is_whitespace) {
            Some((user, secret)) => Token {
                user: user.to_string(),
                secret: secret.trim().to_string(),
            },
            None => Token {
                user: "console".into(),
                secret: l.to_string(),
            },
        })
        .collect();
    if tokens.is_empty() {
        bail!("--console-token-file {}: no token in it", file.display());
    }
    if let Some(t) = tokens.iter().find(|t| t.secret.len() < 16) {
        bail!(
            "--console-token-file {}: the token of {:?} is shorter than 16 characters",
            file.display(),
            t.user
        );
    }
    Ok(tokens)
}

/// Refuses a console that others could reach without TLS and a token.
fn check_exposure(addr: SocketAddr, opts: &ConsoleOptions) -> Result<()> {
    if addr.ip().is_loopback() {
        return Ok(());
    }
    let mut missing = Vec::new();
    if opts.console_tls_cert.is_none() {
        missing.push("TLS (--console-tls-cert and --console-tls-key)");
    }
    if opts.console_token_file.is_none() {
        missing.push("a token (--console-token-file)");
    }
    if !missing.is_empty() {
        bail!(
            "console address {addr}: other hosts could reach it, so it needs {}; \
             or bind it to 127.0.0.1 and reach it through an SSH tunnel \
             (ssh -L 9463:127.0.0.1:9463 HOST)",
            missing.join(" and ")
        );
    }
    Ok(())
}

/// What every request handler shares.
struct Console {
    store: Store,
    shared: Arc<snapshot::Shared>,
    tokens: Vec<Token>,
    events: crate::events::Recorder,
    tls: bool,
    shutdown: CancellationToken,
}

type Shared = Arc<Console>;

/// Serves the console on `addr` until `shutdown`. Bad options (an exposed address without
/// TLS and a token, an unreadable token file or certificate) fail before anything listens.
pub async fn serve(
    store: Store,
    addr: SocketAddr,
    opts: &ConsoleOptions,
    shutdown: CancellationToken,
) -> Result<()> {
    check_exposure(addr, opts)?;
    let tokens = match &opts.console_token_file {
        Some(f) => read_tokens(f)?,
        None => Vec::new(),
    };
    let tls = match (&opts.console_tls_cert, &opts.console_tls_key) {
        (Some(c), Some(k)) => Some(tls::acceptor(c, k)?),
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("console address {addr}"))?;
    let bound = listener.local_addr()?;
    let shared = snapshot::Shared::new();
    tokio::spawn(snapshot::follow(
        store.clone(),
        shared.clone(),
        shutdown.clone(),
    ));
    let source = format!("console/{}", super::cluster::hostname().unwrap_or_default());
    let console = Arc::new(Console {
        events: crate::events::Recorder::spawn(store.clone(), source, Default::default()),
        store,
        shared,
        tokens,
        tls: tls.is_some(),
        shutdown: shutdown.clone(),
    });
    let app = router(console).into_make_service_with_connect_info::<SocketAddr>();
    let scheme = if tls.is_some() { "https" } else { "http" };
    say!("berth console: {scheme}://{bound}/");
    let stop = shutdown.clone();
    match tls {
        Some(acceptor) => {
            use axum::serve::ListenerExt;
            // (`tap_io` lends the TLS listener axum's peer-address plumbing.)
            let listener = tls::Listener::spawn(listener, acceptor, shutdown).tap_io(|_| {});
            axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await?
        }
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await?
        }
    }
    Ok(())
}

/// Spawns [`serve`] for a daemon (`controller --console`, `up --console`): a failure is
/// said and logged, the daemon runs on. Options are checked first, so that a refused
/// address stops the daemon before it starts.
pub fn check(addr: SocketAddr, opts: &ConsoleOptions) -> Result<()> {
    check_exposure(addr, opts)?;
    if let Some(f) = &opts.console_token_file {
        read_tokens(f)?;
    }
    Ok(())
}

pub fn spawn(store: Store, addr: SocketAddr, opts: ConsoleOptions, shutdown: CancellationToken) {
    tokio::spawn(async move {
        if let Err(e) = serve(store, addr, &opts, shutdown).await {
            say!("error: console: {e:#}");
            tracing::error!("console: {e:#}");
        }
    });
}

fn router(console: Shared) -> axum::Router {
    axum::Router::new()
        .route("/", get(cluster_page))
        .route("/bundles/{name}", get(bundle_page))
        .route("/events", get(events_page))
        .route("/charts", get(charts_page))
        .route("/plan", get(plan_page))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/actions/{action}", post(actions::act))
        .route("/live", get(live))
        .route("/assets/console.css", get(css))
        .route("/assets/console.js", get(js))
        .fallback(not_found)
        .layer(axum::middleware::map_response(secure_headers))
        .with_state(console)
}

/// Headers on every response: no caching of live state, no framing, no sniffing, and only
/// this console's own assets.
async fn secure_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    let set = |h: &mut HeaderMap, k: header::HeaderName, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(h, header::CACHE_CONTROL, "no-store");
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    // (same-origin, not no-referrer: under no-referrer a browser sends `Origin: null` with
    // its own forms, which the actions check.)
    set(h, header::REFERRER_POLICY, "same-origin");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    );
    r
}

/// Query parameters the pages take: an action's outcome to show, and the filters.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct PageQuery {
    said: Option<String>,
    failed: Option<String>,
    object: String,
    #[serde(rename = "type")]
    kind: String,
    q: String,
    #[serde(rename = "node-down")]
    node_down: String,
}

/// The whole page, or only what `<main>` holds when the page's script asks (to refresh).
fn render(
    headers: &HeaderMap,
    title: &str,
    current: &str,
    snap: &Snapshot,
    body: String,
) -> Response {
    if headers.contains_key("x-berth-fragment") {
        return Html(body).into_response();
    }
    Html(pages::layout(title, current, snap, &body)).into_response()
}

fn with_notice(snap: &Snapshot, q: &PageQuery, body: String) -> String {
    pages::notice(snap, q.said.as_deref(), q.failed.is_some()) + &body
}

async fn cluster_page(
    State(c): State<Shared>,
    Query(q): Query<PageQuery>,
    headers: HeaderMap,
) -> Response {
    let snap = c.shared.now();
    let body = with_notice(&snap, &q, pages::cluster(&snap, !c.tokens.is_empty()));
    render(&headers, "Cluster", "Cluster", &snap, body)
}

async fn bundle_page(
    State(c): State<Shared>,
    Path(name): Path<String>,
    Query(q): Query<PageQuery>,
    headers: HeaderMap,
) -> Response {
    let snap = c.shared.now();
    let history = super::rollout::history_rows(&c.store, &name)
        .await
        .unwrap_or_default();
    match bundle::page(&snap, &name, !c.tokens.is_empty(), &history) {
        Some(body) => {
            let body = with_notice(&snap, &q, body);
            render(&headers, &format!("Bundle {name}"), "", &snap, body)
        }
        None => {
            let body = format!("<h1>Not found</h1><p>No bundle {}.</p>", pages::esc(&name));
            let page = render(&headers, "Not found", "", &snap, body);
            (StatusCode::NOT_FOUND, page).into_response()
        }
    }
}

async fn events_page(
    State(c): State<Shared>,
    Query(q): Query<PageQuery>,
    headers: HeaderMap,
) -> Response {
    let snap = c.shared.now();
    let body = pages::events(&snap, &q.object, &q.kind, &q.q);
    render(&headers, "Events", "Events", &snap, body)
}

async fn charts_page(State(c): State<Shared>, headers: HeaderMap) -> Response {
    let snap = c.shared.now();
    let samples: Vec<_> = c
        .shared
        .samples
        .read()
        .map(|s| s.iter().copied().collect())
        .unwrap_or_default();
    render(&headers, "Charts", "Charts", &snap, pages::charts(&samples))
}

/// `/plan?node-down=NODE`: `berth plan --node-down NODE`, its own code.
async fn plan_page(
    State(c): State<Shared>,
    Query(q): Query<PageQuery>,
    headers: HeaderMap,
) -> Response {
    let snap = c.shared.now();
    let answer = if q.node_down.is_empty() {
        None
    } else {
        let mut out = Vec::new();
        let down = [q.node_down.clone()];
        Some(
            match super::cluster::plan(&c.store, &[], &down, &mut out).await {
                Ok(()) => String::from_utf8_lossy(&out).into_owned(),
                Err(e) => format!("error: {e:#}"),
            },
        )
    };
    let body = pages::plan(&snap, &q.node_down, answer.as_deref());
    render(&headers, "Plan", "Plan", &snap, body)
}

async fn login_page(State(c): State<Shared>, headers: HeaderMap) -> Response {
    let snap = c.shared.now();
    let body = pages::login(!c.tokens.is_empty());
    render(&headers, "Token", "Token", &snap, body)
}

/// The cookie that carries a browser's token.
const COOKIE: &str = "berth_console_token";

#[derive(serde::Deserialize)]
struct LoginForm {
    token: String,
}

/// `POST /login`: keeps a valid token in a cookie (HttpOnly, SameSite=Strict, Secure
/// over TLS); a wrong one is refused.
async fn login(State(c): State<Shared>, axum::Form(f): axum::Form<LoginForm>) -> Response {
    if c.user_of(&f.token).is_none() {
        return refused("that token is not in the console's token file");
    }
    let secure = if c.tls { "; Secure" } else { "" };
    let cookie = format!(
        "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict{secure}",
        pages::url(&f.token)
    );
    let mut r = Redirect::to("/?said=Token+accepted%3A+actions+are+enabled").into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

async fn logout() -> Response {
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("berth_console_token=; Path=/; Max-Age=0; SameSite=Strict"),
    );
    r
}

/// A 403 page saying why.
fn refused(why: &str) -> Response {
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Refused · berth</title>\
         <link rel=\"stylesheet\" href=\"/assets/console.css\"></head><body><main>\
         <h1>Refused</h1><p class=\"notice bad\" role=\"alert\">{}</p>\
         <p><a href=\"/login\">Give a token</a> · <a href=\"/\">Back to the cluster</a></p></main></body></html>",
        pages::esc(why)
    );
    (StatusCode::FORBIDDEN, Html(body)).into_response()
}

impl Console {
    /// The user a token belongs to (compared in constant time).
    fn user_of(&self, token: &str) -> Option<&str> {
        use subtle::ConstantTimeEq;
        self.tokens
            .iter()
            .find(|t| bool::from(t.secret.as_bytes().ct_eq(token.as_bytes())))
            .map(|t| t.user.as_str())
    }

    /// The token a request carries: `Authorization: Bearer`, or the cookie `/login` set.
    fn token_of(headers: &HeaderMap) -> Option<String> {
        if let Some(bearer) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        {
            return Some(bearer.trim().to_string());
        }
        let cookies: BTreeMap<&str, &str> = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().split_once('='))
            .collect();
        cookies.get(COOKIE).map(|v| percent_decode(v))
    }
}

/// `%XX` escapes decoded (what [`pages::url`] wrote into the cookie).
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// `/live`: an event `change` carrying the snapshot's revision, at once and on each change,
/// until the console stops.
async fn live(State(c): State<Shared>) -> impl IntoResponse {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use futures::StreamExt;
    let rx = c.shared.changed.subscribe();
    let changes = futures::stream::unfold((rx, true), |(mut rx, first)| async move {
        if !first && rx.changed().await.is_err() {
            return None;
        }
        let rev = *rx.borrow_and_update();
        let ev = Event::default().event("change").data(rev.to_string());
        Some((Ok::<_, std::convert::Infallible>(ev), (rx, false)))
    })
    .take_until(c.shutdown.clone().cancelled_owned());
    Sse::new(changes).keep_alive(KeepAlive::default())
}

async fn css() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("assets/console.css"),
    )
}

async fn js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("assets/console.js"),
    )
}

async fn not_found(State(c): State<Shared>, headers: HeaderMap) -> Response {
    let snap = c.shared.now();
    let page = render(
        &headers,
        "Not found",
        "",
        &snap,
        "<h1>Not found</h1><p><a href=\"/\">The cluster</a></p>".into(),
    );
    (StatusCode::NOT_FOUND, page).into_response()
}

/// The peer of a request, for the event an action records.
type Peer = ConnectInfo<SocketAddr>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_console_beyond_loopback_needs_tls_and_a_token() {
        let open: SocketAddr = "0.0.0.0:9463".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:9463".parse().unwrap();
        let none = ConsoleOptions::default();
        assert!(check_exposure(local, &none).is_ok());
        let e = check_exposure(open, &none).unwrap_err().to_string();
        assert!(e.contains("TLS") && e.contains("token"), "{e}");
        let token_only = ConsoleOptions {
            console_token_file: Some("/t".into()),
            ..Default::default()
        };
        let e = check_exposure(open, &token_only).unwrap_err().to_string();
        assert!(e.contains("TLS") && !e.contains("a token"), "{e}");
        let both = ConsoleOptions {
            console_tls_cert: Some("/c".into()),
            console_tls_key: Some("/k".into()),
            ..token_only
        };
        assert!(check_exposure(open, &both).is_ok());
    }

    #[test]
    fn token_files_name_their_users_and_refuse_short_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("tokens");
        std::fs::write(&f, "# who\nalice 0123456789abcdef0\n\nfedcba98765432100\n").unwrap();
        let t = read_tokens(&f).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(
            (t[0].user.as_str(), t[0].secret.as_str()),
            ("alice", "0123456789abcdef0")
        );
        assert_eq!(t[1].user, "console");
        std::fs::write(&f, "bob short\n").unwrap();
        let e = read_tokens(&f).unwrap_err().to_string();
        assert!(e.contains("shorter than 16") && e.contains("bob"), "{e}");
        std::fs::write(&f, "\n# nothing\n").unwrap();
        assert!(
            read_tokens(&f)
                .unwrap_err()
                .to_string()
                .contains("no token")
        );
    }

    #[test]
    fn cookies_carry_any_token_through_percent_escapes() {
        let token = "a b;c=d%e/ü";
        assert_eq!(percent_decode(&pages::url(token)), token);
        let mut h = HeaderMap::new();
        let cookie = format!("x=1; {COOKIE}={}", pages::url(token));
        h.insert(header::COOKIE, HeaderValue::from_str(&cookie).unwrap());
        assert_eq!(Console::token_of(&h).as_deref(), Some(token));
    }
}
