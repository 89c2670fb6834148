//! The remote agent (`berth remote`): PID 1 of every container of a bundle with a primitive.
//!
//! - [`reaper`]: reaps every child (PID 1's duty), delivering the statuses of berth's own;
//! - [`ocf`]: one action of an OCF resource agent, to the published API;
//! - [`classes`]: ocf, lsb and berth's command class behind one `run(action)`;
//! - [`ops`]: the primitive's operations, read once into typed timings and on-fail;
//! - [`supervisor`]: start, recurring monitors, on-fail (every rule in its pure `decide`),
//!   clean stop, exit codes;
//! - [`state`]: the primitive's state shared by the supervisor, the channel and a file;
//! - [`channel`]: the authenticated control channel the node agent reads;
//! - [`attrs`]: `crm_attribute`, `crm_master` and `crm_node` for agents, which report their
//!   promotion scores with them;
//! - [`cib`]: `cibadmin -Q [--xpath]`: the CIB a replica may see, and the XPath agents use;
//! - [`crm_mon`]: `crm_mon`'s XML and text from the members the node agent sends;
//! - [`attrd`]: the attribute daemon: the tools' writes on their way to etcd through the
//!   node agent, and a mirror of what the replica may read;
//! - [`layout`]: the contract with the node agent: paths inside the container and the
//!   per-replica host directory's parts.

pub mod attrd;
pub mod attrs;
pub mod channel;
pub mod cib;
pub mod classes;
pub mod crm_mon;
pub mod ocf;
pub mod ops;
pub mod reaper;
pub mod state;
pub mod supervisor;
