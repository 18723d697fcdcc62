//! Faults as data, and the fault state both backends enforce.
//!
//! A backend receives a [`Fault`], updates its [`FaultState`] with [`FaultState::apply`]
//! (pure: validation and bookkeeping are shared), then makes the kernel (or the model)
//! match the new state.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use topo_plan::Plan;
use topo_spec::Impairment;

use crate::LabError;

/// A link of the plan named by its two end nodes (order-insensitive), or a LAN attachment.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum LinkRef {
    /// The point-to-point link between two nodes.
    P2p { a: String, b: String },
    /// One node's attachment to a network (LAN).
    Lan { node: String, network: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "fault", rename_all = "kebab-case")]
pub enum Fault {
    /// Blockade semantics: each group reaches itself; nodes in no group form one extra group.
    /// Groups may overlap (Jepsen's bridge). Replaces the previous partition and one-way drops.
    Partition {
        groups: Vec<Vec<String>>,
    },
    /// Directed drops (Jepsen's grudge): traffic sent by `from` to `to` is dropped; the reverse
    /// flows. Added to the current state.
    Drop {
        from: Vec<String>,
        to: Vec<String>,
    },
    /// Remove every partition and drop.
    Heal,
    /// Carrier loss on both ends (cable pulled).
    LinkDown {
        link: LinkRef,
    },
    LinkUp {
        link: LinkRef,
    },
    /// Silent loss with carrier up (broken switch): only timers notice.
    LinkCut {
        link: LinkRef,
    },
    LinkRestore {
        link: LinkRef,
    },
    /// SIGKILL every process in the node; links stay up.
    NodeKill {
        node: String,
    },
    NodePause {
        node: String,
    },
    NodeResume {
        node: String,
    },
    /// Take the node off the network (all its interfaces down); `NodeStart` restores it with the
    /// same addresses and MACs.
    NodeStop {
        node: String,
    },
    NodeStart {
        node: String,
    },
    /// Set the impairment of a p2p link in one direction (`from` → the other end) or both.
    Impair {
        a: String,
        b: String,
        from: Option<String>,
        impairment: Impairment,
    },
    /// Clear runtime impairments on one link, or on all when `link` is `None`.
    ImpairClear {
        link: Option<(String, String)>,
    },
}

/// What is currently broken in a lab. Pure data; serializable into the lab state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultState {
    /// The last partition's groups, complete with the implicit rest group, as given.
    pub partition: Option<Vec<Vec<String>>>,
    /// Directed node pairs `(from, to)` whose traffic is dropped: the union of the partition and
    /// one-way drops. This is what backends enforce.
    pub drops: BTreeSet<(String, String)>,
    pub links_down: BTreeSet<LinkRef>,
    pub links_cut: BTreeSet<LinkRef>,
    pub nodes_stopped: BTreeSet<String>,
    pub nodes_paused: BTreeSet<String>,
    /// Runtime impairments by (sender, receiver) of a p2p link.
    #[serde(with = "pair_keyed")]
    pub impairments: BTreeMap<(String, String), Impairment>,
}

/// JSON object keys must be strings, so the (sender, receiver)-keyed map is stored as a list of
/// `{"from", "to", "impairment"}` entries (an empty `{}` from older state files reads as empty).
mod pair_keyed {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use topo_spec::Impairment;

    #[derive(Serialize, Deserialize)]
    struct Entry {
        from: String,
        to: String,
        impairment: Impairment,
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Repr {
        List(Vec<Entry>),
        Map(BTreeMap<String, serde_json::Value>),
    }

    pub fn serialize<S: Serializer>(
        m: &BTreeMap<(String, String), Impairment>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(m.iter().map(|((from, to), i)| Entry {
            from: from.clone(),
            to: to.clone(),
            impairment: *i,
        }))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<(String, String), Impairment>, D::Error> {
        match Repr::deserialize(d)? {
            Repr::List(v) => Ok(v.into_iter().map(|e| ((e.from, e.to), e.impairment)).collect()),
            Repr::Map(m) if m.is_empty() => Ok(BTreeMap::new()),
            Repr::Map(_) => {
                Err(serde::de::Error::custom("impairments: expected a list of {from, to, impairment}"))
            }
        }
    }
}

impl FaultState {
    pub fn is_clear(&self) -> bool {
        *self == Self::default()
    }

    /// Is traffic sent by `from` and addressed to `to` dropped by a partition or grudge?
    pub fn dropped(&self, from: &str, to: &str) -> bool {
        self.drops.contains(&(from.to_owned(), to.to_owned()))
    }

    /// Validate `fault` against `plan` and update the state. Node names must already be
    /// resolved (see [`crate::select`]). Errors leave the state unchanged.
    pub fn apply(&mut self, plan: &Plan, fault: &Fault) -> Result<(), LabError> {
        let known = |n: &str| -> Result<(), LabError> {
            if plan.node(n).is_some() {
                Ok(())
            } else {
                Err(LabError::UnknownNode(n.to_owned()))
            }
        };
        match fault {
            Fault::Partition { groups } => {
                for n in groups.iter().flatten() {
                    known(n)?;
                }
                let groups = complete_groups(plan, groups);
                self.drops = partition_drops(plan, &groups);
                self.partition = Some(groups);
            }
            Fault::Drop { from, to } => {
                for n in from.iter().chain(to) {
                    known(n)?;
                }
                for f in from {
                    for t in to {
                        if f != t {
                            self.drops.insert((f.clone(), t.clone()));
                        }
                    }
                }
            }
            Fault::Heal => {
                self.partition = None;
                self.drops.clear();
            }
            Fault::LinkDown { link } => {
                check_link(plan, link)?;
                self.links_down.insert(link.normalized());
            }
            Fault::LinkUp { link } => {
                check_link(plan, link)?;
                self.links_down.remove(&link.normalized());
            }
            Fault::LinkCut { link } => {
                check_link(plan, link)?;
                self.links_cut.insert(link.normalized());
            }
            Fault::LinkRestore { link } => {
                check_link(plan, link)?;
                self.links_cut.remove(&link.normalized());
            }
            Fault::NodeKill { node } => known(node)?,
            Fault::NodePause { node } => {
                known(node)?;
                self.nodes_paused.insert(node.clone());
            }
            Fault::NodeResume { node } => {
                known(node)?;
                self.nodes_paused.remove(node);
            }
            Fault::NodeStop { node } => {
                known(node)?;
                self.nodes_stopped.insert(node.clone());
            }
            Fault::NodeStart { node } => {
                known(node)?;
                self.nodes_stopped.remove(node);
            }
            Fault::Impair { a, b, from, impairment } => {
                check_link(plan, &LinkRef::P2p { a: a.clone(), b: b.clone() })?;
                let dirs: Vec<(String, String)> = match from.as_deref() {
                    None => vec![(a.clone(), b.clone()), (b.clone(), a.clone())],
                    Some(f) if f == a => vec![(a.clone(), b.clone())],
                    Some(f) if f == b => vec![(b.clone(), a.clone())],
                    Some(f) => {
                        return Err(LabError::Invalid(format!(
                            "direction {f}-> names neither end of the link {a} {b}"
                        )))
                    }
                };
                for d in dirs {
                    if impairment.is_none() {
                        self.impairments.remove(&d);
                    } else {
                        self.impairments.insert(d, *impairment);
                    }
                }
            }
            Fault::ImpairClear { link } => match link {
                None => self.impairments.clear(),
                Some((a, b)) => {
                    self.impairments.remove(&(a.clone(), b.clone()));
                    self.impairments.remove(&(b.clone(), a.clone()));
                }
            },
        }
        Ok(())
    }
}

impl LinkRef {
    /// P2p links with their ends sorted, so `a b` and `b a` are one key.
    pub fn normalized(&self) -> Self {
        match self {
            LinkRef::P2p { a, b } if a > b => LinkRef::P2p { a: b.clone(), b: a.clone() },
            other => other.clone(),
        }
    }
}

/// Add the implicit group of every node that no group names (Blockade), if there is any.
pub fn complete_groups(plan: &Plan, groups: &[Vec<String>]) -> Vec<Vec<String>> {
    let named: BTreeSet<&str> = groups.iter().flatten().map(String::as_str).collect();
    let rest: Vec<String> =
        plan.nodes.iter().filter(|n| !named.contains(n.name.as_str())).map(|n| n.name.clone()).collect();
    let mut out: Vec<Vec<String>> = groups.to_vec();
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

/// Directed pairs that share no group drop each other's traffic.
pub fn partition_drops(plan: &Plan, groups: &[Vec<String>]) -> BTreeSet<(String, String)> {
    let mut member_of: BTreeMap<&str, BTreeSet<usize>> = BTreeMap::new();
    for (gi, g) in groups.iter().enumerate() {
        for n in g {
            member_of.entry(n.as_str()).or_default().insert(gi);
        }
    }
    let empty = BTreeSet::new();
    let mut drops = BTreeSet::new();
    for a in &plan.nodes {
        let ga = member_of.get(a.name.as_str()).unwrap_or(&empty);
        for b in &plan.nodes {
            if a.name == b.name {
                continue;
            }
            let gb = member_of.get(b.name.as_str()).unwrap_or(&empty);
            if ga.is_disjoint(gb) {
                drops.insert((a.name.clone(), b.name.clone()));
            }
        }
    }
    drops
}

fn check_link(plan: &Plan, link: &LinkRef) -> Result<(), LabError> {
    match link {
        LinkRef::P2p { a, b } => {
            let found = plan
                .links
                .iter()
                .any(|l| (l.a.node == *a && l.b.node == *b) || (l.a.node == *b && l.b.node == *a));
            if found {
                Ok(())
            } else {
                Err(LabError::Invalid(format!("there is no link between {a} and {b}")))
            }
        }
        LinkRef::Lan { node, network } => {
            let n = plan.node(node).ok_or_else(|| LabError::UnknownNode(node.clone()))?;
            let attached = n.interfaces.iter().any(|i| {
                matches!(&i.attachment, topo_plan::Attachment::Network { network: net, .. } if net == network)
            });
            if attached {
                Ok(())
            } else {
                Err(LabError::Invalid(format!("{node} is not attached to network {network}")))
            }
        }
    }
}
