//! The one error type of this crate, [`ModelError`].
//!
//! Every variant that concerns a file carries its path, so that a message like "model file
//! .../vocab.txt: sha256 mismatch" tells an operator exactly what to fix (usually: run
//! `models/fetch.sh` again). Errors from burn, wgpu and `tokenizers` are turned into strings at
//! this boundary so that callers do not depend on those crates' error types.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while locating, verifying, loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file the model needs is not there.
    #[error("model file {} is missing (run models/fetch.sh to download the model)", path.display())]
    MissingFile {
        /// The full path that was looked for.
        path: PathBuf,
    },

    /// A file exists but does not have the size the manifest records.
    #[error(
        "model file {} has {actual} bytes, the manifest expects {expected} \
         (run models/fetch.sh to repair it)",
        path.display()
    )]
    SizeMismatch {
        /// The offending file.
        path: PathBuf,
        /// Size recorded in the manifest, in bytes.
        expected: u64,
        /// Size found on disk, in bytes.
        actual: u64,
    },

    /// A file exists with the right size but its content hashes to something else.
    #[error(
        "model file {}: sha256 mismatch, expected {expected}, found {actual} \
         (run models/fetch.sh to repair it)",
        path.display()
    )]
    ChecksumMismatch {
        /// The offending file.
        path: PathBuf,
        /// Hex sha256 recorded in the manifest.
        expected: String,
        /// Hex sha256 of the file on disk.
        actual: String,
    },

    /// Reading a file failed for a reason other than its absence.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file being read.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },

    /// The manifest is not valid TOML or lacks a required field.
    #[error("invalid model manifest {}: {message}", path.display())]
    Manifest {
        /// The manifest file (or `<built-in>` for the one compiled into the crate).
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },

    /// A model configuration file is malformed or describes a model this crate cannot run.
    #[error("invalid model configuration {}: {message}", path.display())]
    Config {
        /// The configuration file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },

    /// The weights file could not be read or does not fit the encoder.
    #[error("cannot load weights from {}: {message}", path.display())]
    Weights {
        /// The safetensors file.
        path: PathBuf,
        /// What went wrong, naming the tensors concerned where known.
        message: String,
    },

    /// The tokenizer could not be loaded or failed on an input.
    #[error("tokenizer error: {0}")]
    Tokenizer(String),

    /// The requested compute device is unavailable or failed to initialise.
    #[error("device error: {0}")]
    Device(String),

    /// An input is outside what the model accepts (for example, too many tokens).
    #[error("invalid input: {0}")]
    Input(String),

    /// Running the model failed on the device (a kernel launch or a read-back).
    #[error("inference failed: {0}")]
    Inference(String),

    /// A vector search asked for more results than [`crate::search::MAX_K`].
    #[error("top-k search for {requested} results exceeds the limit of {max}")]
    TooManyResults {
        /// The `k` that was asked for.
        requested: usize,
        /// The largest `k` a search accepts.
        max: usize,
    },
}

impl ModelError {
    /// Wraps an I/O error on `path`, turning "not found" into [`ModelError::MissingFile`].
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        let path = path.into();
        if source.kind() == io::ErrorKind::NotFound {
            Self::MissingFile { path }
        } else {
            Self::Io { path, source }
        }
    }

    /// The file this error is about, where there is one.
    pub fn path(&self) -> Option<&std::path::Path> {
        match self {
            Self::MissingFile { path }
            | Self::SizeMismatch { path, .. }
            | Self::ChecksumMismatch { path, .. }
            | Self::Io { path, .. }
            | Self::Manifest { path, .. }
            | Self::Config { path, .. }
            | Self::Weights { path, .. } => Some(path),
            Self::Tokenizer(_)
            | Self::Device(_)
            | Self::Input(_)
            | Self::Inference(_)
            | Self::TooManyResults { .. } => None,
        }
    }
}
