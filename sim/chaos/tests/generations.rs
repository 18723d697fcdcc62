//! Partition generations (see src/gens.rs): many partition/replace/heal cycles keep exactly one
//! generation in force, no more than the bounded number of stale ones, and a record that matches
//! the kernel; `clear` (down) leaves no table; a missing, corrupt or outdated record is repaired.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;

use support::{lan_yaml, TestLab};
use topo_chaos::gens::{self, Gens, KEEP_STALE};
use topo_lab::Fault;

fn g(groups: &[&[&str]]) -> Fault {
    Fault::Partition { groups: groups.iter().map(|g| g.iter().map(|s| (*s).to_owned()).collect()).collect() }
}

const NODES: [&str; 3] = ["h1", "h2", "h3"];

/// The tables of a node as (name, dormant), from `nft list ruleset` run inside it (inspection
/// only: topo itself never runs nft; the text form, as nft 1.0.6's JSON garbles table flags).
fn tables(lab: &TestLab, node: &str) -> Vec<(String, bool)> {
    let out = lab.sh(node, "nft list ruleset");
    let mut t: Vec<(String, bool)> = Vec::new();
    for line in out.lines() {
        if let Some(rest) = line.strip_prefix("table ") {
            let name = rest.split_whitespace().nth(1).unwrap_or_default().to_owned();
            t.push((name, false));
        } else if line.trim() == "flags dormant" {
            if let Some(last) = t.last_mut() {
                last.1 = true;
            }
        }
    }
    t
}

/// Check one node: generation tables in the kernel = the record's; exactly the active one
/// awake; no more than KEEP_STALE stale ones.
fn check_node(lab: &TestLab, node: &str, partitioned: bool) {
    let ns = lab.node(node).netns.clone();
    let kernel: Vec<(u64, bool)> =
        tables(lab, node).iter().filter_map(|(n, d)| Some((gens::parse_name(n)?, *d))).collect();
    let awake: Vec<u64> = kernel.iter().filter(|(_, d)| !d).map(|(g, _)| *g).collect();
    let rec = Gens::load(&lab.state_dir).expect("a generation record");
    let mine = rec.ns.get(&ns).cloned().unwrap_or_default();
    assert_eq!(awake, mine.active.into_iter().collect::<Vec<_>>(), "{node}: awake generations {kernel:?}");
    assert_eq!(awake.len(), usize::from(partitioned), "{node}: {kernel:?}");
    let in_kernel: BTreeSet<u64> = kernel.iter().map(|(g, _)| *g).collect();
    let recorded: BTreeSet<u64> = mine.active.into_iter().chain(mine.stale.iter().copied()).collect();
    assert_eq!(in_kernel, recorded, "{node}: kernel tables vs record");
    assert!(mine.stale.len() <= KEEP_STALE, "{node}: {} stale generations", mine.stale.len());
}

#[test]
fn many_cycles_stay_bounded_and_exact() {
    if !topo_lab::testkit::require_root("chaos::generations_cycles") {
        return;
    }
    let mut lab = TestLab::up("cgc", &lan_yaml(3));
    let a = g(&[&["h1"], &["h2", "h3"]]);
    let b = g(&[&["h1", "h2"], &["h3"]]);
    // 3 * 12 = 36 changes per namespace: several collection rounds.
    for cycle in 0..12 {
        lab.apply(&a);
        for n in NODES {
            check_node(&lab, n, true);
        }
        lab.apply(&b);
        // Every node is cut from someone in both a and b, so each holds one awake generation.
        for n in NODES {
            check_node(&lab, n, true);
        }
        if cycle == 11 {
            let blocked = [("h1", "h3"), ("h3", "h1"), ("h2", "h3"), ("h3", "h2")];
            assert_eq!(lab.reach_matrix(&NODES), TestLab::all_pairs_except(&NODES, &blocked));
        }
        lab.apply(&Fault::Heal);
        for n in NODES {
            check_node(&lab, n, false);
        }
    }
    assert_eq!(lab.reach_matrix(&NODES), TestLab::all_pairs_except(&NODES, &[]));
    // A one-way drop after all that: only the receiver gets a generation.
    lab.apply(&Fault::Drop { from: vec!["h1".into()], to: vec!["h2".into()] });
    check_node(&lab, "h2", true);
    check_node(&lab, "h1", false);
    assert_eq!(lab.reach_matrix(&NODES), TestLab::all_pairs_except(&NODES, &[("h1", "h2")]));

    // Down: clear leaves no chaos table behind.
    topo_chaos::clear(&lab.plan, &lab.state_dir).unwrap();
    for n in NODES {
        let left: Vec<(String, bool)> =
            tables(&lab, n).into_iter().filter(|(name, _)| name.starts_with("topo")).collect();
        assert!(left.is_empty(), "{n}: {left:?}");
    }
}

#[test]
fn missing_corrupt_or_outdated_record_is_repaired() {
    if !topo_lab::testkit::require_root("chaos::generations_record") {
        return;
    }
    let mut lab = TestLab::up("cgr", &lan_yaml(3));
    let record = lab.state_dir.join("chaos").join("partition.json");
    let a = g(&[&["h1"], &["h2", "h3"]]);
    let b = g(&[&["h1", "h2"], &["h3"]]);
    let blocked_b = [("h1", "h3"), ("h3", "h1"), ("h2", "h3"), ("h3", "h2")];

    // Lost record while a partition is in force: the replacement rebuilds from the kernel.
    lab.apply(&a);
    std::fs::remove_file(&record).unwrap();
    lab.apply(&b);
    assert_eq!(lab.reach_matrix(&NODES), TestLab::all_pairs_except(&NODES, &blocked_b));
    for n in NODES {
        check_node(&lab, n, true);
    }

    // Corrupt record: same.
    std::fs::write(&record, b"{not json").unwrap();
    lab.apply(&a);
    let blocked_a = [("h1", "h2"), ("h1", "h3"), ("h2", "h1"), ("h3", "h1")];
    assert_eq!(lab.reach_matrix(&NODES), TestLab::all_pairs_except(&NODES, &blocked_a));
    for n in NODES {
        check_node(&lab, n, true);
    }

    // Outdated record (as after a crash between recording and committing): it names
    // generations that are not the kernel's; the transaction fails and is rebuilt.
    let old = std::fs::read(&record).unwrap();
    lab.apply(&b);
    std::fs::write(&record, old).unwrap();
    lab.apply(&Fault::Heal);
    assert_eq!(lab.reach_matrix(&NODES), TestLab::all_pairs_except(&NODES, &[]));
    for n in NODES {
        check_node(&lab, n, false);
    }
}

#[test]
fn collection_tolerates_tables_deleted_behind_its_back() {
    if !topo_lab::testkit::require_root("chaos::generations_gc") {
        return;
    }
    let mut lab = TestLab::up("cgg", &lan_yaml(3));
    let a = g(&[&["h1"], &["h2", "h3"]]);
    // Each partition + heal retires one generation per namespace.
    for _ in 0..KEEP_STALE {
        lab.apply(&a);
        lab.apply(&Fault::Heal);
    }
    let ns = lab.node("h1").netns.clone();
    let rec = Gens::load(&lab.state_dir).unwrap();
    let stale = rec.ns[&ns].stale.clone();
    assert_eq!(stale.len(), KEEP_STALE, "{rec:?}");
    // Someone deletes one of h1's stale tables; the next collection round must still succeed
    // and leave kernel and record in agreement.
    lab.sh("h1", &format!("nft delete table inet {}{}", gens::PREFIX, stale[0]));
    lab.apply(&a);
    lab.apply(&Fault::Heal);
    for n in NODES {
        check_node(&lab, n, false);
    }
    assert!(Gens::load(&lab.state_dir).unwrap().ns[&ns].stale.is_empty());
}
