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
//! - [`address`]: replica addresses on host interfaces, through netlink; [`arp`]: their
//!   gratuitous ARP announcements.
//! - [`assigned`]: this node's assignments, decoded once per change (pure).
//! - [`core`]: the agent's per-replica memory and every decision it takes from it (pure):
//!   failures and backoff, event interpretation, statuses to write, roles to ask for.
//! - [`local`]: the agent's files on its host (replica directories, recorded addresses)
//!   and the host policy as it resolves there.
//! - [`link`]: the control-channel tasks, one pair per replica with a primitive.
//! - [`fence`]: fencing without the engine: the node's containers in one cgroup scope,
//!   frozen, thawed and killed through the cgroup filesystem; addresses dropped.
//! - [`fencer`]: the agent's fence task (fires on time from its own task).
//! - [`gate`]: the fence gate: nothing is created, started or given an address while the
//!   node is fenced, not even by an engine call that was in flight when the fence fired.
//! - [`watchdog`]: the process beside the agent that fences when the agent stops vouching.
//! - [`agent`]: the shell: the loop that feeds the core and executes what it decides.

pub mod address;
pub mod agent;
pub mod arp;
pub mod assigned;
pub mod config;
pub mod core;
pub mod engine;
pub mod fence;
pub mod fencer;
pub mod files;
pub mod gate;
pub mod host;
pub mod link;
pub mod local;
pub mod plan;
pub mod sim;
pub mod watchdog;

pub use agent::{run, run_on};
pub use config::{NodeConfig, NodeError};
