//! Routing daemon configuration rendering (FRR: zebra/ospfd/bfdd; BIRD later).
//! Owned by the routing work (issue 5); the plan compiler calls [`render_frr`].

use std::collections::BTreeMap;

use crate::{NodePlan, OspfPlan};

/// Render the FRR config files for one router, keyed by file name.
pub fn render_frr(node: &NodePlan, ospf: &OspfPlan) -> BTreeMap<String, String> {
    let _ = (node, ospf);
    BTreeMap::new()
}
