//! The `topo` binary: argument parsing and the tracing subscriber; everything else is in the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = topo::args::Cli::parse();
    topo::observability::init(cli.verbose);
    let code = topo::commands::run(cli);
    ExitCode::from(code as u8)
}
