//! Subcommand implementations. Each returns an exit code from [`crate::exit_code`].

mod schema;
mod validate;

use crate::args::{Cli, Command};

pub fn run(cli: Cli) -> i32 {
    match cli.command {
        Command::Validate { files, json } => validate::run(&files, json),
        Command::Schema => schema::run(),
    }
}
