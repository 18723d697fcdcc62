//! Ctrl-C during `up`: SIGINT/SIGTERM only set a flag, and `up` checks it between steps, then
//! rolls back what it built and returns [`crate::KernelError::Interrupted`].

use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

static REQUESTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    REQUESTED.store(true, Ordering::SeqCst);
}

/// Route SIGINT and SIGTERM to the flag (for the CLI; libraries and tests don't need it).
pub fn install() -> std::io::Result<()> {
    let action = SigAction::new(SigHandler::Handler(on_signal), SaFlags::SA_RESTART, SigSet::empty());
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { sigaction(sig, &action) }.map_err(|e| std::io::Error::from_raw_os_error(e as i32))?;
    }
    Ok(())
}

/// Has SIGINT/SIGTERM arrived since [`install`]?
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// Fail with `Interrupted` if a signal arrived.
pub(crate) fn check() -> Result<(), crate::KernelError> {
    if requested() {
        Err(crate::KernelError::Interrupted)
    } else {
        Ok(())
    }
}
