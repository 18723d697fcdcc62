use std::path::Path;
use std::process::Command;

use topo_kernel::{SourceInfo, UpOpts};

#[test]
fn lan_up_status_down() {
    if !topo_lab::testkit::require_root("kernel::smoke") {
        return;
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../topologies/lan.yaml");
    let mut plan = topo_plan::plan_file(&path).unwrap();

    let _ = plan;
    plan = topo_plan::plan_file(&path).unwrap();
    let src = SourceInfo::from_file(&path).unwrap();
    let r = topo_kernel::up(&plan, &src, &UpOpts::default());
    eprintln!("{r:?}");
    let st = topo_kernel::status(&plan.lab);
    eprintln!("{st:#?}");
    let out = Command::new("ip")
        .args(["netns", "exec", &plan.nodes[0].netns, "ping", "-c1", "-W1", "10.0.0.10"])
        .output()
        .unwrap();
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
    if std::env::var("KEEP").is_ok() {
        return;
    }
    let d = topo_kernel::down(&plan.lab);
    eprintln!("{d:?}");
    r.unwrap();
}
