//! The `topo` binary: argument parsing and the tracing subscriber; everything else is in the library.

use std::panic;
use std::process::ExitCode;

use clap::Parser;

/// Whether a panic comes from `print!`/`println!` writing to a closed stdout.
fn is_broken_stdout(payload: &(dyn std::any::Any + Send)) -> bool {
    let text = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("");
    text.starts_with("failed printing to stdout") && text.contains("Broken pipe")
}

fn main() -> ExitCode {
    // Rust ignores SIGPIPE, so `println!` panics when the reader of a pipe goes away. Restoring
    // SIGPIPE's default would also kill topo's own socket writers, so the panic is caught instead:
    // quietly, and after unwinding, so rollback guards of a command still run.
    let default_hook = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        if !is_broken_stdout(info.payload()) {
            default_hook(info);
        }
    }));
    let cli = topo::args::Cli::parse();
    // Helpers topo starts (the userspace delayer) run this same executable, whatever its name.
    if let Ok(me) = std::env::current_exe() {
        topo_chaos::impair::set_topo_bin(me);
    }
    topo::observability::init(cli.verbose);
    match panic::catch_unwind(|| topo::commands::run(cli)) {
        Ok(code) => ExitCode::from(code as u8),
        Err(payload) if is_broken_stdout(payload.as_ref()) => {
            ExitCode::from(topo::exit_code::BROKEN_PIPE as u8)
        }
        Err(payload) => panic::resume_unwind(payload),
    }
}
