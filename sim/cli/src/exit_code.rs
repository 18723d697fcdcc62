//! Documented exit codes (see docs/cli.md). Stable: scripts depend on them.

/// Success.
pub const OK: i32 = 0;
/// An assertion failed (reachability mismatch, failed scenario step, snapshot differs).
pub const ASSERTION_FAILED: i32 = 1;
/// The command line was wrong (clap uses 2 as well).
pub const USAGE: i32 = 2;
/// A topology or scenario file is invalid; diagnostics are on stderr.
pub const INVALID_INPUT: i32 = 3;
/// The lab could not be built or changed (kernel, daemon or state error); nothing was left behind.
pub const LAB_ERROR: i32 = 4;
/// Another topo process holds the lab's lock.
pub const LOCKED: i32 = 5;
/// The command needs root (CAP_NET_ADMIN / CAP_SYS_ADMIN).
pub const NEED_ROOT: i32 = 6;
/// Interrupted (Ctrl-C); the lab was rolled back or torn down.
pub const INTERRUPTED: i32 = 130;
/// stdout was closed before topo finished writing (e.g. piped into `head`), reported as a shell reports SIGPIPE.
pub const BROKEN_PIPE: i32 = 141;
