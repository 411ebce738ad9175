//! The Nexus Canvas operator console: a terminal UI over the daemon's admin status document.
//!
//! `client` fetches and parses the document (`status`), `fetcher` does so on its own thread,
//! `app` holds what the console shows and what keys do, `ui` draws it, and `console` runs
//! the loop on the real terminal (`backend`, `input`). The library exists so that tests can
//! drive each part; the binary is `main.rs`.

pub mod app;
pub mod backend;
pub mod client;
pub mod console;
pub mod fetcher;
pub mod input;
pub mod settings;
pub mod status;
pub mod ui;
