//! Source NAT from the topology file: a node's `masquerade: [attachment...]` (resolved by the
//! plan into `NodePlan::masquerade`, node-side interface names) becomes, inside that node's
//! namespace, the table `ip topo-nat` with one base chain `postrouting` (type nat, hook
//! postrouting, priority srcnat = 100) holding one rule per interface:
//! `oifname "<iface>" masquerade`. IPv4 only, like the model's NAT.
//!
//! Installed once at `up`, in one nftables transaction per namespace, before any daemon or
//! probe sends traffic (conntrack only translates connections that start after the rule).
//! Registering a nat chain is what turns connection tracking on in a namespace, so nothing
//! else is needed there. The table is separate from the chaos tables (`inet topo`, `netdev
//! topo`): fault changes and [`crate::clear`] never touch it; it dies with the namespace at
//! `down` and `gc`.

use std::collections::BTreeSet;
use std::io;

use nftnl::{
    nft_expr, Batch, Chain, ChainType, FinalizedBatch, Hook, MsgType, Policy, ProtoFamily, Rule, Table,
};
use topo_plan::Plan;

use crate::ChaosError;

/// Name of the NAT table (family `ip`) in a masquerading node's namespace.
pub const TABLE: &std::ffi::CStr = c"topo-nat";

/// Priority `srcnat` of the postrouting nat chain.
const SRCNAT: i32 = 100;

/// The masquerade rules of a lab: (namespace, interfaces) for every node that masquerades, in
/// plan order, interfaces deduplicated.
pub fn rules(plan: &Plan) -> Vec<(String, Vec<String>)> {
    plan.nodes
        .iter()
        .filter(|n| !n.masquerade.is_empty())
        .map(|n| {
            let ifaces: BTreeSet<&String> = n.masquerade.iter().collect();
            (n.netns.clone(), ifaces.into_iter().cloned().collect())
        })
        .collect()
}

/// The transaction for one namespace: the table and chain are added (a no-op when they exist),
/// the chain flushed and its rules added, so running it again yields the same rule set.
pub fn batch(ifaces: &[String]) -> io::Result<FinalizedBatch> {
    let mut batch = Batch::new();
    let table = Table::new(TABLE, ProtoFamily::Ipv4);
    batch.add(&table, MsgType::Add);
    let mut chain = Chain::new(c"postrouting", &table);
    chain.set_type(ChainType::Nat);
    chain.set_hook(Hook::PostRouting, SRCNAT);
    chain.set_policy(Policy::Accept);
    batch.add(&chain, MsgType::Add);
    batch.add(&Rule::new(&chain), MsgType::Del);
    for dev in ifaces {
        let name = std::ffi::CString::new(dev.as_str())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("NUL in interface {dev:?}")))?;
        let mut r = Rule::new(&chain);
        r.add_expr(&nft_expr!(meta oifname));
        r.add_expr(&nft_expr!(cmp == nftnl::expr::InterfaceName::Exact(name)));
        r.add_expr(&nft_expr!(counter));
        r.add_expr(&nft_expr!(masquerade));
        batch.add(&r, MsgType::Add);
    }
    Ok(batch.finalize())
}

/// Install the plan's masquerade rules (at `up`): one nftables transaction in each namespace of
/// a masquerading node. Labs without `masquerade` cost nothing. Collects every namespace's error.
pub fn apply(plan: &Plan) -> Result<(), ChaosError> {
    let work = rules(plan);
    if work.is_empty() {
        return Ok(());
    }
    let errors = crate::parallel(&work, crate::workers_for(work.len(), true), |ns, ifaces: &Vec<String>| {
        let what = || format!("install masquerade on {}", ifaces.join(", "));
        let b = batch(ifaces).map_err(|e| ChaosError::kernel(ns, what(), e))?;
        crate::nft::send(&b).map_err(|e| ChaosError::kernel(ns, what(), e))
    });
    tracing::debug!(namespaces = work.len(), failed = errors.len(), "masquerade rules installed");
    crate::into_result(errors)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rules_name_the_node_side_interfaces() {
        let yaml = "name: natu
networks:
  inside: {subnet: 10.20.0.0/24}
  outside: {subnet: 192.168.50.0/24, gateway: none}
nodes:
  gw:
    kind: router
    interfaces: [inside, {network: outside, address: 192.168.50.1}]
    masquerade: [outside]
  client: {interfaces: [inside]}
  server: {interfaces: [{network: outside, address: 192.168.50.10}]}
";
        let plan = topo_plan::plan_str("natu.yaml", yaml).expect("valid topology");
        let r = rules(&plan);
        let gw = plan.node("gw").unwrap();
        assert_eq!(r.len(), 1, "only gw masquerades: {r:?}");
        assert_eq!(r[0].0, gw.netns);
        let outside = gw
            .interfaces
            .iter()
            .find(|i| matches!(&i.attachment, topo_plan::Attachment::Network { network, .. } if network == "outside"))
            .unwrap();
        assert_eq!(r[0].1, vec![outside.name.clone()]);
        assert!(batch(&r[0].1).is_ok());
        assert!(batch(&["bad\0name".to_owned()]).is_err());
    }
}
