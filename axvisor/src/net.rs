//! The virtual switches that link VMs' virtio-net devices (docs/vswitch.md): one per name a
//! config's `switch` gives, created with the defaults (64 ports, 256 frames a port, 1514-byte
//! frames, 256 addresses) the first time a VM names it, and kept while the hypervisor runs
//! (a switch whose VMs are all gone has every port free again).

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::Arc;
use axvirtio_net::{NetSwitch, SwitchConfig, MAX_PORTS};
use spin::Mutex;

/// The switches by name.
static SWITCHES: Mutex<BTreeMap<String, Arc<NetSwitch>>> = Mutex::new(BTreeMap::new());

/// The switch named `name`, created on first use ([`axvm::VmPlatform::switches`]).
pub fn switch(name: &str) -> Option<Arc<NetSwitch>> {
    let mut switches = SWITCHES.lock();
    if let Some(s) = switches.get(name) {
        return Some(s.clone());
    }
    let switch = NetSwitch::new(name, SwitchConfig::with_ports(MAX_PORTS))
        .inspect_err(|e| log::warn!("switch {name}: cannot be made: {e}"))
        .ok()?;
    switches.insert(String::from(name), switch.clone());
    Some(switch)
}
