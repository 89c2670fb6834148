//! What the node agent changes on its host besides the engine: the replicas' addresses
//! (netlink, gratuitous ARP), the files it keeps under the state directory, and the fence
//! (the node's cgroup scope frozen, thawed or killed, the addresses dropped).
//!
//! [`LocalHost`] does it on this host (root, netlink, cgroups, no link followed below the
//! state directory); [`MemoryHost`] keeps it in memory, so that the whole agent, its fence
//! task included, runs in a test on the simulated engine without root. (The watchdog, a
//! process of its own that fences when the agent itself dies, works on the host directly.)

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::address::{self, Added, AddressError};
use super::fence::{FenceError, Scope};
use crate::model::cluster::PrimitiveState;
use crate::model::container::{Address, DesiredContainer};

/// The host, as the node agent changes it.
pub trait Host: Clone + Send + Sync + 'static {
    /// Adds a replica's address unless it is there ([`address::ensure`]: an address already
    /// there is the agent's only when `ours`). `record` runs just before it is added; when
    /// it fails, the address is not added.
    fn ensure_address(
        &self,
        a: &Address,
        ours: bool,
        record: impl FnOnce() -> std::io::Result<()> + Send,
    ) -> impl Future<Output = Result<Option<Added>, AddressError>> + Send;
    /// Announces an added address on the LAN, once its replica's container runs.
    fn announce(&self, added: Added) -> impl Future<Output = ()> + Send;
    /// Removes an address from whatever interface holds it.
    fn remove_address(&self, ip: Ipv4Addr)
    -> impl Future<Output = Result<(), AddressError>> + Send;
    /// Creates what a replica's container needs before it starts (see
    /// [`super::local::prepare_files`]); the error is why it cannot run safely.
    fn prepare_files(&self, d: &DesiredContainer, node: &str) -> std::io::Result<()>;
    /// What a replica's remote agent left in its state file.
    fn left_state(&self, bundle: &str, index: u32) -> Option<PrimitiveState>;
    /// The addresses an earlier run of the agent added.
    fn load_addresses(&self) -> BTreeSet<Ipv4Addr>;
    /// Records the addresses the agent added (a restarted agent adopts them, a fence drops
    /// them).
    fn save_addresses(&self, added: &BTreeSet<Ipv4Addr>) -> std::io::Result<()>;
    /// Removes every recorded address (a fence; they stay recorded).
    fn drop_addresses(&self) -> impl Future<Output = ()> + Send;
    /// The fence: freezes every replica (the node's cgroup `scope`, retried for at most
    /// `within`), then drops the recorded addresses whatever the freeze did.
    fn freeze(&self, scope: Option<&Scope>, within: Duration) -> impl Future<Output = ()> + Send;
    /// Thaws the scope (the same lease was renewed after a fence).
    fn thaw(&self, scope: &Scope) -> Result<(), FenceError>;
    /// Kills every process in the scope and drops the recorded addresses.
    fn kill(&self, scope: Option<&Scope>) -> impl Future<Output = ()> + Send;
}

/// This host: netlink and ARP for addresses, files under the state directory.
#[derive(Debug, Clone)]
pub struct LocalHost {
    state_dir: PathBuf,
}

impl LocalHost {
    pub fn new(state_dir: &Path) -> Self {
        LocalHost {
            state_dir: state_dir.to_path_buf(),
        }
    }
}

impl Host for LocalHost {
    async fn ensure_address(
        &self,
        a: &Address,
        ours: bool,
        record: impl FnOnce() -> std::io::Result<()> + Send,
    ) -> Result<Option<Added>, AddressError> {
        address::ensure(a, ours, record).await
    }

    async fn announce(&self, added: Added) {
        added.announce().await
    }

    async fn remove_address(&self, ip: Ipv4Addr) -> Result<(), AddressError> {
        address::remove(ip).await
    }

    fn prepare_files(&self, d: &DesiredContainer, node: &str) -> std::io::Result<()> {
        super::local::prepare_files(&self.state_dir, d, node)
    }

    fn left_state(&self, bundle: &str, index: u32) -> Option<PrimitiveState> {
        super::local::left_state(&self.state_dir, bundle, index)
    }

    fn load_addresses(&self) -> BTreeSet<Ipv4Addr> {
        super::local::load_addresses(&self.state_dir)
    }

    fn save_addresses(&self, added: &BTreeSet<Ipv4Addr>) -> std::io::Result<()> {
        super::local::save_addresses(&self.state_dir, added)
    }

    async fn drop_addresses(&self) {
        super::fence::drop_addresses(&self.state_dir).await
    }

    async fn freeze(&self, scope: Option<&Scope>, within: Duration) {
        super::fence::freeze_node(scope, &self.state_dir, within).await
    }

    fn thaw(&self, scope: &Scope) -> Result<(), FenceError> {
        scope.thaw()
    }

    async fn kill(&self, scope: Option<&Scope>) {
        super::fence::kill_node(scope, &self.state_dir).await
    }
}

/// A host in memory, for tests: addresses are a set (the host's own ones refused, as on a
/// real interface), files are the containers prepared, and what remote agents "left" is
/// set by the test.
#[derive(Debug, Clone, Default)]
pub struct MemoryHost(Arc<Mutex<Memory>>);

/// What a [`MemoryHost`] holds.
#[derive(Debug, Default)]
pub struct Memory {
    /// Addresses on the host's interfaces, and which of them the host had itself.
    pub addresses: BTreeSet<Ipv4Addr>,
    pub host_owned: BTreeSet<Ipv4Addr>,
    /// The agent's record of the addresses it added.
    pub recorded: BTreeSet<Ipv4Addr>,
    /// Addresses announced, in order.
    pub announced: Vec<Ipv4Addr>,
    /// The containers whose files were prepared, by name.
    pub prepared: BTreeSet<String>,
    /// What each replica's remote agent left, by (bundle, index).
    pub left: BTreeMap<(String, u32), PrimitiveState>,
    /// The fence: how many times it froze and killed the replicas.
    pub freezes: u32,
    pub kills: u32,
}

impl MemoryHost {
    /// A host that has `own` addresses on its interfaces.
    pub fn with_addresses(own: impl IntoIterator<Item = Ipv4Addr>) -> Self {
        let own: BTreeSet<Ipv4Addr> = own.into_iter().collect();
        MemoryHost(Arc::new(Mutex::new(Memory {
            addresses: own.clone(),
            host_owned: own,
            ..Memory::default()
        })))
    }

    /// Reads what the host holds.
    pub fn read<T>(&self, f: impl FnOnce(&Memory) -> T) -> T {
        f(&self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Memory> {
        // (A test that panicked while holding it leaves nothing half-written.)
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Host for MemoryHost {
    async fn ensure_address(
        &self,
        a: &Address,
        ours: bool,
        record: impl FnOnce() -> std::io::Result<()> + Send,
    ) -> Result<Option<Added>, AddressError> {
        if self.lock().addresses.contains(&a.ip) {
            return if ours {
                Ok(None)
            } else {
                Err(AddressError::HostOwned { ip: a.ip })
            };
        }
        record().map_err(|reason| AddressError::NotRecorded { ip: a.ip, reason })?;
        self.lock().addresses.insert(a.ip);
        Ok(Some(Added::new(0, a.ip)))
    }

    async fn announce(&self, added: Added) {
        self.lock().announced.push(added.ip);
    }

    async fn remove_address(&self, ip: Ipv4Addr) -> Result<(), AddressError> {
        let mut m = self.lock();
        if !m.host_owned.contains(&ip) {
            m.addresses.remove(&ip);
        }
        Ok(())
    }

    fn prepare_files(&self, d: &DesiredContainer, _node: &str) -> std::io::Result<()> {
        self.lock().prepared.insert(d.name.clone());
        Ok(())
    }

    fn left_state(&self, bundle: &str, index: u32) -> Option<PrimitiveState> {
        self.lock().left.get(&(bundle.to_string(), index)).cloned()
    }

    fn load_addresses(&self) -> BTreeSet<Ipv4Addr> {
        self.lock().recorded.clone()
    }

    fn save_addresses(&self, added: &BTreeSet<Ipv4Addr>) -> std::io::Result<()> {
        self.lock().recorded = added.clone();
        Ok(())
    }

    async fn drop_addresses(&self) {
        let mut m = self.lock();
        let recorded = m.recorded.clone();
        for ip in recorded {
            m.addresses.remove(&ip);
        }
    }

    async fn freeze(&self, _scope: Option<&Scope>, _within: Duration) {
        self.lock().freezes += 1;
        self.drop_addresses().await;
    }

    /// Nothing to thaw: the freeze froze nothing here (a scope needs a real cgroup).
    fn thaw(&self, _scope: &Scope) -> Result<(), FenceError> {
        Ok(())
    }

    async fn kill(&self, _scope: Option<&Scope>) {
        self.lock().kills += 1;
        self.drop_addresses().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(ip: Ipv4Addr) -> Address {
        Address {
            ip,
            netmask: 24,
            interface: None,
        }
    }

    #[tokio::test]
    async fn a_memory_host_refuses_its_own_addresses_and_adopts_ours() {
        let ip = |last| Ipv4Addr::new(127, 0, 99, last);
        let host = MemoryHost::with_addresses([ip(1)]);
        let own = host.ensure_address(&addr(ip(1)), false, || Ok(())).await;
        assert!(matches!(own, Err(AddressError::HostOwned { .. })));
        let added = host.ensure_address(&addr(ip(9)), false, || Ok(())).await;
        host.announce(added.unwrap().expect("added")).await;
        let again = host.ensure_address(&addr(ip(9)), true, || Ok(())).await;
        assert_eq!(again.unwrap(), None, "ours: adopted, not added twice");
        let full = || Err(std::io::Error::other("disk full"));
        let unrecorded = host.ensure_address(&addr(ip(10)), false, full).await;
        assert!(matches!(unrecorded, Err(AddressError::NotRecorded { .. })));
        host.remove_address(ip(1)).await.unwrap();
        host.remove_address(ip(9)).await.unwrap();
        host.read(|m| {
            let only_own = BTreeSet::from([ip(1)]);
            assert_eq!(m.addresses, only_own, "the host's own address stays");
            assert_eq!(m.announced, vec![ip(9)]);
        });
    }
}
