//! Helpers for privileged tests: under `CI=true` a test that cannot run must fail, not skip;
//! elsewhere it skips with a message that says why.

/// Returns `true` when the calling test may use root-only features (network namespaces,
/// netlink, nftables). Otherwise prints why it skips and returns `false`; under `CI=true`
/// it panics instead, so CI never passes by skipping.
pub fn require_root(test: &str) -> bool {
    // SAFETY-free check: geteuid via /proc avoids a libc dependency here.
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(str::to_owned))
        })
        .and_then(|u| u.parse::<u32>().ok());
    if uid == Some(0) {
        return true;
    }
    let why = format!("{test}: needs root (network namespaces, netlink, nftables); effective uid is {uid:?}");
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{why} — CI=true, so this fails instead of skipping"
    );
    eprintln!("SKIP {why}");
    false
}

/// A lab name unique to this test process and call site, short enough for kernel names.
pub fn unique_lab(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}x{n}", std::process::id() % 100_000)
}
