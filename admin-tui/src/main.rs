//! `nexus-canvas-console`: reads the command line and runs the console; errors end it with a
//! message on standard error and exit status 1 (2 for a bad command line, from clap).

use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use nexus_canvas_console::console;
use nexus_canvas_console::settings::{Cli, DAEMON_CONFIG, Settings};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let admin_key = std::env::var("NEXUS_ADMIN_KEY").ok();
    let result = Settings::resolve(cli, admin_key, Path::new(DAEMON_CONFIG))
        .map_err(|error| error.to_string())
        .and_then(|settings| console::run(settings).map_err(|error| error.to_string()));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("nexus-canvas-console: {message}");
            ExitCode::FAILURE
        }
    }
}
