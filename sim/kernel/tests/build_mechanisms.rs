//! How `up` builds a lab, checked through `topo_kernel::up`/`down` directly (root): the shared
//! `/etc/netns` directory, the UTS tmpfs, the plan's sysctls in every node (including values
//! skipped because a new namespace has them already), hostnames, and a netlink failure in the
//! middle of the per-node batches rolling everything back.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use topo_kernel::{down, up, KernelError, SourceInfo, UpOpts};
use topo_lab::testkit::{require_root, unique_lab};

/// Routers joined by a point-to-point link (configured after the links exist), each with a LAN
/// of hosts (configured as soon as their namespaces exist).
fn topology(lab: &str) -> String {
    format!(
        "name: {lab}
networks:
  a: {{subnet: 10.77.1.0/24}}
  b: {{subnet: 10.77.2.0/24}}
nodes:
  r1: {{kind: router, interfaces: [a], routes: [{{to: 10.77.2.0/24, via: 10.254.7.1}}]}}
  r2: {{kind: router, interfaces: [b], routes: [{{to: 10.77.1.0/24, via: 10.254.7.0}}]}}
  ha{{1..4}}: {{interfaces: [a]}}
  hb{{1..4}}: {{interfaces: [b]}}
links:
  - endpoints: [{{node: r1, address: 10.254.7.0}}, {{node: r2, address: 10.254.7.1}}]
    subnet: 10.254.7.0/31
"
    )
}

fn plan_of(lab: &str) -> (topo_plan::Plan, SourceInfo) {
    let text = topology(lab);
    let plan = topo_plan::plan_str(&format!("{lab}.yaml"), &text).expect("plan");
    (plan, SourceInfo { path: None, text })
}

/// Downs the lab even when the test fails.
struct Guard(String);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = down(&self.0);
        let _ = topo_kernel::gc_labs(Some(std::slice::from_ref(&self.0)));
    }
}

fn mounts_under(dir: &Path) -> Vec<String> {
    let needle = format!(" {}", dir.display());
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&needle))
        .map(str::to_owned)
        .collect()
}

fn etc_entries(lab: &str) -> Vec<PathBuf> {
    let fabric = format!("topo-{lab}");
    let nodes = format!("topo-{lab}.");
    std::fs::read_dir(topo_netns::ETC_NETNS_DIR)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    let n = p.file_name().unwrap_or_default().to_string_lossy();
                    n == fabric || n.starts_with(&nodes)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A value read inside a node's network namespace.
fn sysctl_in(netns: &str, key: &str) -> String {
    let ns = topo_netns::Netns::open(netns).expect("open namespace");
    ns.run(|| topo_netns::read_sysctl(key)).expect("enter").expect("read sysctl")
}

fn hostname_in(uts: &Path) -> String {
    let f = std::fs::File::open(uts).expect("UTS file");
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWUTS).expect("setns uts");
            nix::unistd::gethostname().expect("hostname").to_string_lossy().into_owned()
        })
        .join()
        .expect("thread")
    })
}

#[test]
fn up_builds_shared_files_uts_tmpfs_and_sysctls_and_down_removes_them() {
    if !require_root("topo-kernel::up_builds_shared_files_uts_tmpfs_and_sysctls") {
        return;
    }
    let lab = unique_lab("bm");
    let (plan, source) = plan_of(&lab);
    let _g = Guard(lab.clone());
    // Residue of an earlier run in /etc/netns (a directory as the old layout had it) is replaced.
    let etc = Path::new(topo_netns::ETC_NETNS_DIR);
    std::fs::create_dir_all(etc.join(format!("topo-{lab}.ha1"))).unwrap();
    std::fs::write(etc.join(format!("topo-{lab}.ha1/hosts")), "stale").unwrap();
    std::fs::create_dir_all(etc.join(format!("topo-{lab}"))).unwrap();
    up(&plan, &source, &UpOpts::default()).expect("up");
    let state = topo_kernel::state_dir(&lab);

    // One hosts file for the lab; every node's /etc/netns entry leads to it.
    let entries = etc_entries(&lab);
    assert_eq!(entries.len(), plan.nodes.len() + 1, "{entries:?}");
    let hosts = std::fs::read_to_string(state.join("etc/hosts")).expect("shared hosts");
    for n in &plan.nodes {
        assert!(hosts.contains(&format!("\t{} {}.{lab}", n.name, n.name)), "{} missing:\n{hosts}", n.name);
        let dir = Path::new(topo_netns::ETC_NETNS_DIR).join(&n.netns);
        assert!(dir.symlink_metadata().expect("entry").file_type().is_symlink());
        assert_eq!(std::fs::read_to_string(dir.join("hosts")).expect("hosts through the link"), hosts);
        assert!(std::fs::read_to_string(dir.join("resolv.conf")).expect("resolv").contains(&lab));
    }
    // The entries are hard links of one symbolic link when the filesystem allows it.
    let nlink = Path::new(topo_netns::ETC_NETNS_DIR)
        .join(&plan.fabric.netns)
        .symlink_metadata()
        .expect("anchor")
        .nlink();
    assert!(nlink == 1 || nlink as usize == plan.nodes.len() + 1, "nlink {nlink}");

    // UTS files live on the lab's own tmpfs; each node has its hostname.
    let uts = state.join("uts");
    let tmpfs = mounts_under(&uts);
    assert!(
        tmpfs.iter().any(|l| l.contains(&format!(" {} ", uts.display())) && l.contains(" tmpfs ")),
        "{tmpfs:?}"
    );
    for n in &plan.nodes {
        assert_eq!(hostname_in(&uts.join(&n.name)), n.hostname);
    }

    // Every sysctl of the plan holds in its node, written or already the namespace's value.
    for n in &plan.nodes {
        assert!(!n.sysctls.is_empty());
        for (k, v) in &n.sysctls {
            assert_eq!(&sysctl_in(&n.netns, k), v, "{}: {k}", n.name);
        }
    }
    assert_eq!(sysctl_in(&plan.nodes[plan.node_index("r1").unwrap()].netns, "net.ipv4.ip_forward"), "1");
    assert_eq!(sysctl_in(&plan.nodes[plan.node_index("ha1").unwrap()].netns, "net.ipv4.ip_forward"), "0");

    // With br_netfilter on the host, the fabric's bridges skip the IP netfilter hooks.
    if Path::new("/proc/sys/net/bridge/bridge-nf-call-iptables").exists() {
        for k in ["net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-arptables"] {
            assert_eq!(sysctl_in(&plan.fabric.netns, k), "0", "{k} in the fabric");
        }
    } else {
        eprintln!(
            "br_netfilter is not loaded on this host: the fabric's bridge-nf-call keys are not checked"
        );
    }

    let report = down(&lab).expect("down");
    assert_eq!(report.namespaces, plan.nodes.len() + 1);
    assert!(etc_entries(&lab).is_empty());
    assert!(mounts_under(&state).is_empty());
    assert!(!state.exists());
    let prefix = format!("topo-{lab}");
    assert!(topo_netns::list().unwrap().iter().all(|n| !n.starts_with(&prefix)));
}

#[test]
fn a_failed_request_in_a_batch_rolls_the_lab_back() {
    if !require_root("topo-kernel::a_failed_request_in_a_batch_rolls_the_lab_back") {
        return;
    }
    let lab = unique_lab("bf");
    let (mut plan, source) = plan_of(&lab);
    let _g = Guard(lab.clone());
    // A route through an address no interface of the node reaches: the kernel refuses it in
    // the middle of the node's batch (after its address, before nothing else).
    let h = plan.node_index("hb3").unwrap();
    let mut bad = plan.nodes[h].routes[0].clone();
    bad.to = "10.99.0.0/16".parse().unwrap();
    bad.via = "192.0.2.1".parse().unwrap();
    plan.nodes[h].routes.push(bad);
    let err = up(&plan, &source, &UpOpts::default()).expect_err("up must fail");
    let KernelError::RolledBack { original, rollback } = err else { panic!("not rolled back: {err}") };
    let msg = original.to_string();
    assert!(msg.contains("192.0.2.1") && msg.contains(&plan.nodes[h].netns), "{msg}");
    assert!(rollback.is_empty(), "{rollback:?}");
    let state = topo_kernel::state_dir(&lab);
    assert!(!state.exists());
    assert!(etc_entries(&lab).is_empty());
    assert!(mounts_under(&state).is_empty());
    let prefix = format!("topo-{lab}");
    assert!(topo_netns::list().unwrap().iter().all(|n| !n.starts_with(&prefix)));
}
