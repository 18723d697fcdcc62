//! Source NAT on the kernel backend (root): `a - r - b` over two point-to-point links, with and
//! without `masquerade: [b]` on r. The NAT check must catch the translation (b sees r's address)
//! and only in the direction that leaves through the masquerading interface; the model must
//! give the same answer; the rule is exactly one `ip topo-nat` table in r, and `down` leaves
//! nothing behind.

use std::net::Ipv4Addr;
use std::process::Command;

use topo_kernel::{KernelLab, SourceInfo, UpOpts};
use topo_lab::testkit::{require_root, unique_lab};
use topo_lab::{Lab, NatResult};
use topo_model::ModelLab;
use topo_plan::Plan;

fn topology(lab: &str, masquerade: bool) -> String {
    let masq = if masquerade { ", masquerade: [b]" } else { "" };
    format!(
        "name: {lab}
nodes:
  a: {{routes: [{{to: default, via: 10.1.0.1}}]}}
  r: {{kind: router{masq}}}
  b: {{routes: [{{to: default, via: 10.2.0.1}}]}}
links:
  - {{endpoints: [{{node: a, address: 10.1.0.2}}, {{node: r, address: 10.1.0.1}}], subnet: 10.1.0.0/24}}
  - {{endpoints: [{{node: r, address: 10.2.0.1}}, {{node: b, address: 10.2.0.2}}], subnet: 10.2.0.0/24}}
"
    )
}

/// Tears the lab down even when the test fails.
struct Down(String);
impl Drop for Down {
    fn drop(&mut self) {
        if let Err(e) = topo_kernel::down(&self.0) {
            eprintln!("down {}: {e}", self.0);
        }
    }
}

fn nft_ruleset(plan: &Plan, node: &str) -> String {
    let ns = &plan.node(node).expect("node").netns;
    let out =
        Command::new("ip").args(["netns", "exec", ns, "nft", "list", "ruleset"]).output().expect("run nft");
    assert!(out.status.success(), "nft list ruleset in {ns}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn nft_available() -> bool {
    Command::new("nft").arg("--version").output().is_ok_and(|o| o.status.success())
}

/// The parts of a NAT result both backends define (the model has no port numbers).
fn addrs(r: &NatResult) -> (Ipv4Addr, Option<Ipv4Addr>, bool) {
    (r.sent_src, r.observed_src, r.nat_free())
}

fn run(masquerade: bool) {
    let lab = unique_lab(if masquerade { "nm" } else { "nn" });
    let text = topology(&lab, masquerade);
    let plan = topo_plan::plan_str("nat.yaml", &text).unwrap_or_else(|d| panic!("{d:?}"));
    let guard = Down(lab.clone());
    topo_kernel::up(&plan, &SourceInfo { path: None, text }, &UpOpts::default()).expect("up");
    let mut kernel = KernelLab::open_lab(&lab).expect("open");
    let mut model = ModelLab::new(plan.clone());

    let r_out = Ipv4Addr::new(10, 2, 0, 1);
    let a_addr = Ipv4Addr::new(10, 1, 0, 2);
    let b_addr = Ipv4Addr::new(10, 2, 0, 2);

    let ab = kernel.nat("a", "b").expect("kernel nat a b");
    let ba = kernel.nat("b", "a").expect("kernel nat b a");
    assert_eq!(ab.sent_src, a_addr, "{ab:?}");
    if masquerade {
        assert!(!ab.nat_free(), "masquerade must be caught: {ab:?}");
        assert_eq!(ab.observed_src, Some(r_out), "b sees r's outgoing address: {ab:?}");
        // The port survives (masquerade keeps it unless it clashes).
        assert_eq!(ab.observed_port, ab.sent_port, "{ab:?}");
    } else {
        assert!(ab.nat_free(), "no masquerade, no NAT: {ab:?}");
        assert_eq!(ab.observed_src, Some(a_addr), "{ab:?}");
    }
    // Traffic leaving r through the other interface is never translated.
    assert!(ba.nat_free(), "b -> a leaves r towards a, which does not masquerade: {ba:?}");
    assert_eq!(ba.observed_src, Some(b_addr), "{ba:?}");

    // The model gives the same verdicts and addresses.
    for (k, (from, to)) in [(&ab, ("a", "b")), (&ba, ("b", "a"))] {
        let m = model.nat(from, to).expect("model nat");
        assert_eq!(addrs(&m), addrs(k), "{from} -> {to}: model {m:?} vs kernel {k:?}");
    }

    // The rule: one table in r only, one masquerade rule on the interface towards b.
    if nft_available() {
        let r_rules = nft_ruleset(&plan, "r");
        let towards_b = &plan.links[1].a.iface;
        assert_eq!(plan.links[1].a.node, "r");
        if masquerade {
            assert!(r_rules.contains("table ip topo-nat"), "{r_rules}");
            assert!(r_rules.contains("type nat hook postrouting priority srcnat"), "{r_rules}");
            assert!(r_rules.contains(&format!("oifname \"{towards_b}\"")), "{r_rules}");
            assert_eq!(r_rules.matches("masquerade").count(), 1, "{r_rules}");
            // Installing again (idempotent) keeps one rule.
            topo_chaos::nat::apply(&plan).expect("apply again");
            assert_eq!(nft_ruleset(&plan, "r").matches("masquerade").count(), 1);
        } else {
            assert!(!r_rules.contains("topo-nat"), "{r_rules}");
        }
        for n in ["a", "b"] {
            assert!(!nft_ruleset(&plan, n).contains("topo-nat"), "{n} has no NAT table");
        }
    }

    // down removes the lab's namespaces (and with them the table and conntrack state).
    drop(kernel);
    drop(guard);
    let left: Vec<String> = topo_netns::list()
        .expect("list namespaces")
        .into_iter()
        .filter(|n| n == &format!("topo-{lab}") || n.starts_with(&format!("topo-{lab}.")))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn masquerading_router_is_caught_by_the_nat_check_on_both_backends() {
    if !require_root("nat_masquerade") {
        return;
    }
    run(true);
}

#[test]
fn without_masquerade_the_path_is_nat_free_on_both_backends() {
    if !require_root("nat_masquerade") {
        return;
    }
    run(false);
}
