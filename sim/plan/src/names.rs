//! Kernel object names: namespaces, bridges, fabric ports and node-side interface names.
//!
//! Decisions (stable; the kernel backend, `topo gc` and users' scripts rely on them):
//! - Node namespace: `topo-<lab>.<node>`; fabric namespace (bridges): `topo-<lab>`. Lab and node
//!   names are DNS labels, so the dot cannot be part of either and the names never collide.
//! - Node-side interface names: the name given in the file, else `eth0`, `eth1`, ... handed out in
//!   attachment order (network attachments in file order, then links in link order), skipping
//!   names the user took on that node.
//! - Bridge (in the fabric namespace): `br-<network>` when that fits in 15 characters, else
//!   `br<network index>`. The two forms cannot collide (only the first has a dash).
//! - Fabric-side veth port: `p<node index>-<interface index>` (e.g. `p4999-0`), unique in the
//!   fabric namespace and short enough for any realistic lab (≤ 15 characters up to 10^12 nodes).
//!   A dash rather than a dot, so the name can be used in dotted sysctl keys unchanged.
//! - Hostname: the node name.

use std::collections::BTreeSet;

/// Linux limit for interface names (IFNAMSIZ - 1).
pub const IFNAME_MAX: usize = 15;

pub fn fabric_netns(lab: &str) -> String {
    format!("topo-{lab}")
}

pub fn node_netns(lab: &str, node: &str) -> String {
    format!("topo-{lab}.{node}")
}

pub fn bridge_ifname(network: &str, index: usize) -> String {
    let named = format!("br-{network}");
    if named.len() <= IFNAME_MAX {
        named
    } else {
        format!("br{index}")
    }
}

pub fn fabric_port(node_index: usize, iface_index: usize) -> String {
    format!("p{node_index}-{iface_index}")
}

/// Name a node's attachments: `given[i]` is the user's name for attachment `i` (or `None`).
/// Returns one name per attachment. Duplicated user names are returned as given; the caller
/// reports them.
pub fn interface_names(given: &[Option<&str>]) -> Vec<String> {
    let taken: BTreeSet<&str> = given.iter().flatten().copied().collect();
    let mut next = 0usize;
    given
        .iter()
        .map(|g| match g {
            Some(name) => (*name).to_string(),
            None => loop {
                let candidate = format!("eth{next}");
                next += 1;
                if !taken.contains(candidate.as_str()) {
                    break candidate;
                }
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_names_skip_user_names() {
        let names = interface_names(&[None, Some("eth1"), None, Some("mgmt"), None]);
        assert_eq!(names, ["eth0", "eth1", "eth2", "mgmt", "eth3"]);
    }

    #[test]
    fn auto_names_count_only_unnamed() {
        let names = interface_names(&[Some("wan"), None, None]);
        assert_eq!(names, ["wan", "eth0", "eth1"]);
    }

    #[test]
    fn bridge_names_fit() {
        assert_eq!(bridge_ifname("lan", 0), "br-lan");
        assert_eq!(bridge_ifname("abcdefghijkl", 3), "br-abcdefghijkl");
        assert_eq!(bridge_ifname("abcdefghijklm", 3), "br3");
        assert!(fabric_port(4999, 12).len() <= IFNAME_MAX);
    }
}
