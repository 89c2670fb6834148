//! The node agent (`berth node`): converges one Docker host to the replicas assigned to it.
//!
//! - [`container`]: what a replica's container must be (pure), and the labels that mark it
//!   as berth's.
//! - [`plan`]: what must change on this host (pure): remove, create, start.
//! - [`engine`]: the container engine behind a trait; Docker (and podman's compatible
//!   socket) through bollard.
//! - [`sim`]: a simulated engine in memory, for the agent's unit tests and scale
//!   benchmarks (never for tests that claim Docker behaviour).
//! - [`files`]: paths a container can write, walked without following links.
//! - [`address`]: replica addresses on host interfaces, through netlink.
//! - [`agent`]: the loop that reads, plans, acts and writes status.

pub mod address;
pub mod agent;
pub mod container;
pub mod engine;
pub mod files;
pub mod plan;
pub mod sim;

pub use agent::{NodeConfig, NodeError, run};
