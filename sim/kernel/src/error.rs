//! The kernel backend's error type. Messages say what failed and what to do about it.

use std::io;
use std::time::Duration;

use topo_netns::NetnsError;

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("lab {0:?} is not up (nothing under /run/topo/{0}); `topo ls` lists the labs that are")]
    NotUp(String),
    #[error("no lab is up; start one with `topo up FILE`")]
    NoLab,
    #[error("several labs are up ({}); name one with --lab NAME or a topology file", .0.join(", "))]
    Ambiguous(Vec<String>),
    #[error(
        "lab {lab:?} is locked by another topo process (waited {waited:?}); try again when it has finished"
    )]
    Locked { lab: String, waited: Duration },
    /// The topology file is invalid (diagnostics with spans).
    #[error("{0}")]
    Spec(Box<topo_spec::Diagnostics>),
    #[error("invalid input: {0}")]
    Invalid(String),
    #[error(
        "lab {lab:?} is already up from a different topology (recorded source hash {old:.12}, now {new:.12}); \
         run `topo down {lab}` first, then `topo up` again"
    )]
    Changed { lab: String, old: String, new: String },
    #[error("lab {lab:?} state is unusable: {msg}; `topo down {lab}` or `topo gc` removes it")]
    State { lab: String, msg: String },
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error("netlink in {ns}: {what}: {msg}")]
    Netlink { ns: String, what: String, msg: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("interrupted (SIGINT/SIGTERM)")]
    Interrupted,
    /// A component crate (chaos, probe, daemons) failed.
    #[error("{component}: {msg}")]
    Component { component: &'static str, msg: String },
    /// `up` failed and what it had built was rolled back; `rollback` lists what could not be undone.
    #[error("{original}{}", rollback_suffix(.rollback))]
    RolledBack { original: Box<KernelError>, rollback: Vec<String> },
    /// Teardown went on after errors; all of them are listed.
    #[error("teardown of lab {lab:?} finished with {} error(s):\n  {}", .errors.len(), .errors.join("\n  "))]
    Teardown { lab: String, errors: Vec<String> },
    #[error("{0}")]
    Backend(String),
}

fn rollback_suffix(errors: &[String]) -> String {
    if errors.is_empty() {
        "\n(everything built so far was rolled back)".to_owned()
    } else {
        format!(
            "\nrollback left {} problem(s) (run `topo gc` to retry):\n  {}",
            errors.len(),
            errors.join("\n  ")
        )
    }
}

impl KernelError {
    pub fn io(what: impl Into<String>, source: io::Error) -> Self {
        KernelError::Io { what: what.into(), source }
    }

    /// Was this (or the error that caused a rollback) a Ctrl-C?
    pub fn is_interrupted(&self) -> bool {
        match self {
            KernelError::Interrupted => true,
            KernelError::RolledBack { original, .. } => original.is_interrupted(),
            _ => false,
        }
    }

    /// Is this (or the error behind a rollback) a problem with the user's input?
    pub fn is_invalid_input(&self) -> bool {
        match self {
            KernelError::Spec(_) | KernelError::Invalid(_) => true,
            KernelError::RolledBack { original, .. } => original.is_invalid_input(),
            _ => false,
        }
    }

    pub fn is_locked(&self) -> bool {
        matches!(self, KernelError::Locked { .. })
    }
}

impl From<KernelError> for topo_lab::LabError {
    fn from(e: KernelError) -> Self {
        match e {
            KernelError::Invalid(m) => topo_lab::LabError::Invalid(m),
            other => topo_lab::LabError::Backend(other.to_string()),
        }
    }
}
