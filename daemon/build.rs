//! Records the git revision and build profile for `/api/v1/info` and `--version`.

use std::process::Command;

fn main() {
    let revision = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .map(|revision| revision.trim().to_string())
        .filter(|revision| !revision.is_empty())
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=NEXUS_GIT_REVISION={revision}");

    let profile = std::env::var("PROFILE").unwrap_or_else(|_| "unknown".to_string());
    println!("cargo:rustc-env=NEXUS_BUILD_PROFILE={profile}");

    // Rebuild when the checked-out commit changes.
    for path in ["../.git/HEAD", "../.git/refs/heads"] {
        println!("cargo:rerun-if-changed={path}");
    }
}
