//! `nexus-canvasd`: see `nexus-canvasd --help`.

fn main() -> std::process::ExitCode {
    nexus_canvasd::cli::run()
}
