//! ECMP marking: pairs whose outcome depends on the kernel's per-flow hash over equal-cost
//! OSPF next hops (fixture `ecmp-hash-decides` of the differential check).

use std::collections::BTreeSet;
use std::path::Path;

use topo_lab::fault_text::parse_fault;
use topo_lab::{Lab, Proto};
use topo_model::{all_pairs, ModelLab};

/// The fixture's topology with its first `n` faults applied.
fn fixture(n: usize) -> ModelLab {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/differential/ecmp-hash-decides.yaml");
    let text = std::fs::read_to_string(&p).expect("fixture");
    // The fixture's `name:` is a placeholder the differential check replaces.
    let text = text.replacen("name: LAB", "name: ecmp", 1);
    let plan = topo_plan::plan_str("ecmp-hash-decides.yaml", &text).unwrap_or_else(|d| panic!("{d}"));
    let mut lab = ModelLab::new(plan);
    for f in text.lines().filter_map(|l| l.strip_prefix("# fault: ")).take(n) {
        let fault = parse_fault(lab.plan(), f).unwrap_or_else(|e| panic!("{f}: {e}"));
        lab.apply(&fault).unwrap_or_else(|e| panic!("{f}: {e}"));
    }
    lab
}

fn marked(lab: &ModelLab, proto: Proto) -> BTreeSet<(String, String)> {
    lab.model().ecmp_dependent(&all_pairs(lab.plan(), proto)).expect("ecmp_dependent")
}

fn pairs(list: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    list.iter().map(|&(a, b)| (a.to_owned(), b.to_owned())).collect()
}

#[test]
fn no_ecmp_dependence_while_both_branches_work() {
    let lab = fixture(0);
    assert!(marked(&lab, Proto::Icmp).is_empty());
    assert!(marked(&lab, Proto::Udp(7)).is_empty());
}

#[test]
fn pairs_across_the_cut_branch_are_marked_and_no_others() {
    // After `link cut r2 lan1`, r3's route to lan1 has two equal-cost next hops (r1, r2) and
    // the r2 branch is a black hole for lan1 addresses.
    let mut lab = fixture(1);
    let requests = pairs(&[("r3", "h1"), ("r3", "r1"), ("r3", "r2")]);
    // ICMP: h1 -> r3 too, through its reply, which r3 routes back over the multipath route.
    // UDP probes are one-way (no reply leg), so h1 -> r3 does not depend on the hash.
    let mut with_reply = requests.clone();
    with_reply.insert(("h1".to_owned(), "r3".to_owned()));
    for (proto, expected) in [(Proto::Icmp, with_reply), (Proto::Udp(7), requests)] {
        let m = marked(&lab, proto);
        assert_eq!(m, expected, "{proto}");
        // The primary answer is unchanged: the lowest next hop (r1) is still the one walked.
        let matrix = lab.reach(&all_pairs(lab.plan(), proto)).expect("reach");
        let reached = |a: &str, b: &str| matrix.get(a, b).is_some_and(|p| p.reached);
        assert!(reached("r3", "h1") && reached("r3", "r1") && !reached("r3", "r2"), "{proto}");
        // Pairs that never cross r3's multipath route, and pairs toward r3 whose replies leave
        // it over a connected route, are not marked.
        for (a, b) in [("h2", "h1"), ("r1", "h1"), ("h1", "r1"), ("r1", "r3"), ("h2", "r3"), ("r3", "h2")] {
            assert!(!m.contains(&(a.to_owned(), b.to_owned())), "{proto} {a} -> {b} marked: {m:?}");
        }
    }
}

#[test]
fn marking_follows_the_faults() {
    // With r3's adjacency to r1 partitioned away it has a single path: nothing to mark.
    assert!(marked(&fixture(3), Proto::Icmp).is_empty());
}
