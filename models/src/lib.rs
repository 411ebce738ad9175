//! Inference core of Nexus Canvas: sentence embeddings with a BERT encoder on burn.
//!
//! The daemon uses four things from this crate:
//!
//! - [`Manifest`]: which files make up the model, with sizes and sha256 sums
//!   (`models/manifest.toml`, also read by `models/fetch.sh`), and [`Manifest::verify`] to check
//!   a model directory before loading it.
//! - [`Embedder`]: the model loaded on a device. [`Embedder::tokenize`] gives token ids (so a
//!   batching queue can count tokens), [`Embedder::embed_tokens`] embeds one batch,
//!   [`Embedder::embed`] does both.
//! - [`DeviceChoice`]: `Auto`, `Wgpu` or `Cpu`, decided at run time.
//! - [`ModelError`]: every failure, naming the file concerned where there is one.
//!
//! Modules:
//!
//! | module | owns |
//! |---|---|
//! | [`manifest`] | the manifest and file verification |
//! | [`config`] | `config.json`, `sentence_bert_config.json`, pooling config |
//! | [`tokenize`] | the word-piece tokenizer, set up as sentence-transformers runs it |
//! | [`bert`] | the encoder as burn modules, weight loading, mean pooling |
//! | [`kernels`] | hand-written WGSL kernels (`shaders/*.wgsl`) and their burn references |
//! | [`device`] | device selection and adapter reporting |
//! | [`embedder`] | batching, padding and masks around the encoder |
//! | [`search`] | exact top-k vector similarity: WGSL kernel on device-held vectors, CPU path |
//! | [`error`] | [`ModelError`] |
//!
//! ```no_run
//! use nexus_models::{DeviceChoice, Embedder, Manifest};
//! # fn main() -> Result<(), nexus_models::ModelError> {
//! let manifest = Manifest::builtin()?;
//! let model_dir = manifest.model_dir("var/models");
//! manifest.verify(&model_dir)?;
//!
//! let embedder = Embedder::load(&model_dir, DeviceChoice::Auto)?;
//! let tokens = embedder.tokenize(&["Primary logo on a white background"])?;
//! let vectors = embedder.embed_tokens(&tokens)?;
//! assert_eq!(vectors[0].len(), embedder.info().dims);
//! # Ok(())
//! # }
//! ```

pub mod bert;
pub mod config;
pub mod device;
pub mod embedder;
pub mod error;
pub mod kernels;
pub mod manifest;
pub mod search;
pub mod tokenize;

pub use device::{AdapterInfo, BackendKind, ComputeDevice, DeviceChoice, DeviceInfo, DeviceMemory};
pub use embedder::{Embedder, EmbedderInfo};
pub use error::ModelError;
pub use manifest::Manifest;
pub use tokenize::Tokens;
