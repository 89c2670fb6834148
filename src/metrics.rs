//! Prometheus metrics and health endpoints of the daemons (`berth controller`, `berth node`,
//! `berth up`), through the official Prometheus client crate (prometheus-client) and axum.
//!
//! One registry per process ([`get`]): the parts record into it where things happen; the
//! server ([`serve`]) encodes it on each scrape of `/metrics`. `/healthz` answers 200 while the
//! process serves; `/readyz` 200 once the daemon is ready (the controller: leading with its
//! cache synced, or standing by; the node agent: registered and through its first pass), 503
//! before.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

fn seconds() -> Histogram {
    // 1 ms to ~33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Every metric berth exports.
pub struct Metrics {
    /// Controller reconcile passes, and how long each took.
    pub reconciles: Counter,
    pub reconcile_seconds: Histogram,
    /// The same passes' total time in microseconds (not exported: the console's chart of
    /// reconcile time reads it beside `reconciles`).
    pub reconcile_micros: AtomicU64,
    /// The node agent's replicas by state (running, stopped, refused).
    pub replicas: Family<Labels, Gauge>,
    /// Containers the node agent started again after they died.
    pub restarts: Counter,
    /// Times this node fenced itself.
    pub fences: Counter,
    /// Events dropped because too many new ones waited to be written.
    pub events_dropped: Counter,
    /// When a lease (registration or leadership) was last renewed, Unix seconds.
    pub lease_renewed: Gauge<f64, AtomicU64>,
    /// Watches that dropped and resumed.
    pub watch_restarts: Counter,
    /// etcd requests, by operation, and their latency.
    pub etcd_seconds: Family<Labels, Histogram, fn() -> Histogram>,
    /// Container engine calls, by call, and their latency.
    pub engine_seconds: Family<Labels, Histogram, fn() -> Histogram>,
    registry: Registry,
}

/// The process's metrics.
pub fn get() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(|| {
        let mut registry = Registry::with_prefix("berth");
        let m = Metrics {
            reconciles: Counter::default(),
            reconcile_seconds: seconds(),
            reconcile_micros: AtomicU64::new(0),
            replicas: Family::default(),
            restarts: Counter::default(),
            fences: Counter::default(),
            events_dropped: Counter::default(),
            lease_renewed: Gauge::default(),
            watch_restarts: Counter::default(),
            etcd_seconds: Family::new_with_constructor(seconds as fn() -> Histogram),
            engine_seconds: Family::new_with_constructor(seconds as fn() -> Histogram),
            registry: Registry::default(),
        };
        registry.register(
            "reconciles",
            "Controller reconcile passes",
            m.reconciles.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "How long a controller reconcile pass took",
            m.reconcile_seconds.clone(),
        );
        registry.register(
            "replicas",
            "The node agent's replicas by state",
            m.replicas.clone(),
        );
        registry.register(
            "restarts",
            "Containers started again after they died",
            m.restarts.clone(),
        );
        registry.register("fences", "Times this node fenced itself", m.fences.clone());
        registry.register(
            "events_dropped",
            "Events dropped because too many new ones waited to be written",
            m.events_dropped.clone(),
        );
        registry.register(
            "lease_renewed_timestamp_seconds",
            "When a lease was last renewed (Unix time)",
            m.lease_renewed.clone(),
        );
        registry.register(
            "watch_restarts",
            "Watches that dropped and resumed",
            m.watch_restarts.clone(),
        );
        registry.register(
            "etcd_request_duration_seconds",
            "etcd requests by operation",
            m.etcd_seconds.clone(),
        );
        registry.register(
            "engine_call_duration_seconds",
            "Container engine calls by call",
            m.engine_seconds.clone(),
        );
        Metrics { registry, ..m }
    })
}

impl Metrics {
    /// Runs an etcd request, recording its latency under `op`.
    pub async fn etcd<T>(&self, op: &str, request: impl Future<Output = T>) -> T {
        timed(&self.etcd_seconds, "op", op, request).await
    }

    /// Runs an engine call, recording its latency under `call`.
    pub async fn engine<T>(&self, call: &str, request: impl Future<Output = T>) -> T {
        timed(&self.engine_seconds, "call", call, request).await
    }

    /// Sets the node's replica count in one state.
    pub fn set_replicas(&self, state: &str, n: usize) {
        self.replicas
            .get_or_create(&vec![("state".into(), state.into())])
            .set(n as i64);
    }

    /// Marks a lease renewal now.
    pub fn renewed(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        self.lease_renewed.set(now);
    }

    /// The registry in Prometheus' text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }
}

async fn timed<T>(
    family: &Family<Labels, Histogram, fn() -> Histogram>,
    label: &str,
    value: &str,
    f: impl Future<Output = T>,
) -> T {
    let started = std::time::Instant::now();
    let out = f.await;
    family
        .get_or_create(&vec![(label.into(), value.into())])
        .observe(started.elapsed().as_secs_f64());
    out
}

/// Whether the daemon is ready (for `/readyz`).
#[derive(Debug, Clone, Default)]
pub struct Ready(Arc<AtomicBool>);

impl Ready {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }

    pub fn get(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `addr` until the process ends. Binding
/// fails with the address and the reason.
pub async fn serve(addr: SocketAddr, ready: Ready) -> std::io::Result<()> {
    use axum::http::StatusCode;
    use axum::routing::get as route;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("metrics address {addr}: {e}")))?;
    let app = axum::Router::new()
        .route(
            "/metrics",
            route(|| async {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    get().encode(),
                )
            }),
        )
        .route("/healthz", route(|| async { "ok\n" }))
        .route(
            "/readyz",
            route(move || {
                let ready = ready.clone();
                async move {
                    if ready.get() {
                        (StatusCode::OK, "ready\n")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                    }
                }
            }),
        );
    tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    axum::serve(listener, app).await
}

/// Spawns [`serve`] when an address is given; a failure is logged (the daemon runs on).
pub fn spawn(addr: Option<SocketAddr>, ready: Ready) {
    if let Some(addr) = addr {
        tokio::spawn(async move {
            if let Err(e) = serve(addr, ready).await {
                tracing::error!("{e}");
            }
        });
    }
}
