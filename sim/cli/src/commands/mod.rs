//! Subcommand implementations. Each returns an exit code from [`crate::exit_code`].

use crate::args::{Cli, Command};

pub fn run(cli: Cli) -> i32 {
    match cli.command {
        Command::Validate { files } => {
            let _ = files;
            crate::exit_code::OK
        }
    }
}
