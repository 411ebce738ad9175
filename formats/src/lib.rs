//! The parsers of untrusted input that nexus-canvasd uses, kept free of the daemon's heavy
//! dependencies (burn, Rocket, tokio) so that the fuzz targets in `fuzz/` build them quickly
//! under the nightly toolchain and sanitizers.
//!
//! Every function here is pure: bytes or text in, a value or a refusal out. A parser must
//! never panic, whatever it is given; the daemon maps refusals to its own errors.

pub mod cursor;
pub mod http;
pub mod names;
pub mod segment;
pub mod sniff;
