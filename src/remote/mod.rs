//! The remote agent (`berth remote`, issue 5), in progress: what exists is the OCF executor
//! ([`ocf`]), which runs a resource agent's action as the OCF resource agent API specifies.
//! Still to build: PID 1 duties, recurring monitors with on-fail, the lsb and command
//! classes, the control channel, and the node agent's use of it.

pub mod channel;
pub mod classes;
pub mod ocf;
pub mod reaper;
pub mod supervisor;
