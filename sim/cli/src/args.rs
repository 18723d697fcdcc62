//! Command-line arguments (clap derive). One variant per subcommand; each is implemented in
//! `commands/<name>.rs`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "topo", version, about = "Network-chaos and topology testbench on Linux network namespaces")]
pub struct Cli {
    /// More logging on stderr (-v info, -vv debug, -vvv trace). TOPO_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check topology files; exit 0 when all are valid, 3 otherwise (diagnostics on stderr).
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Print diagnostics as JSON on stdout (an array of objects with file, code, message, span, help).
        #[arg(long)]
        json: bool,
    },
    /// Print the JSON Schema of the topology format (for editor validation of topology files).
    Schema,
}
