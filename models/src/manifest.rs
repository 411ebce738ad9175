//! The model manifest (`models/manifest.toml`): which files make up a model, where they come
//! from, and the size and sha256 each must have.
//!
//! `models/fetch.sh` reads the same file to download and check the model, so the manifest is the
//! single source of truth. This module only *verifies* a model directory; it never downloads.
//! The manifest is also compiled into the crate ([`Manifest::builtin`]) so that a deployed
//! daemon can verify its model without shipping the TOML next to it.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::ModelError;

/// The manifest of the default model, as compiled into this crate.
const BUILTIN: &str = include_str!("../manifest.toml");

/// A parsed model manifest.
#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    /// Identity of the model.
    pub model: ModelEntry,
    /// Where the files are downloaded from.
    pub source: SourceEntry,
    /// Every file the model directory must hold.
    pub files: Vec<FileEntry>,
}

/// The `[model]` table.
#[derive(Debug, Clone, Deserialize)]
pub struct ModelEntry {
    /// Short name, also the name of the model's directory (`all-MiniLM-L6-v2`).
    pub name: String,
    /// The upstream model the files are a copy of.
    pub upstream: String,
    /// Which release of the files this manifest describes.
    pub revision: String,
    /// Embedding dimensions.
    pub dims: usize,
    /// Longest input in tokens, special tokens included; longer inputs are truncated.
    pub max_seq_length: usize,
}

/// The `[source]` table: a wheel on the Python package index.
#[derive(Debug, Clone, Deserialize)]
pub struct SourceEntry {
    /// Kind of source; only `pypi` exists today.
    pub kind: String,
    /// Package name on the index.
    pub package: String,
    /// Exact package version.
    pub version: String,
    /// File name of the wheel.
    pub wheel: String,
    /// Hex sha256 of the wheel.
    pub wheel_sha256: String,
    /// Folder inside the wheel that holds the files.
    pub path: String,
}

/// One `[[files]]` entry.
#[derive(Debug, Clone, Deserialize)]
pub struct FileEntry {
    /// Path relative to the model directory, `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Lower-case hex sha256 of the content.
    pub sha256: String,
}

impl Manifest {
    /// Reads and parses a manifest file.
    ///
    /// # Errors
    ///
    /// [`ModelError::MissingFile`] / [`ModelError::Io`] when the file cannot be read,
    /// [`ModelError::Manifest`] when it is not a valid manifest.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ModelError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|err| ModelError::io(path, err))?;
        Self::parse(&text, path)
    }

    /// The manifest of the default model, compiled into the crate.
    ///
    /// # Errors
    ///
    /// [`ModelError::Manifest`] only if the compiled-in manifest is invalid, which the crate's
    /// own tests rule out.
    pub fn builtin() -> Result<Self, ModelError> {
        Self::parse(BUILTIN, Path::new("<built-in manifest.toml>"))
    }

    fn parse(text: &str, path: &Path) -> Result<Self, ModelError> {
        let manifest: Self = toml::from_str(text).map_err(|err| ModelError::Manifest {
            path: path.to_path_buf(),
            message: err.to_string(),
        })?;

        // Reject entries that would make `verify` check something other than what was meant:
        // an absolute or parent-relative path escapes the model directory, and a malformed
        // checksum can never match.
        for file in &manifest.files {
            let bad_path = file.path.is_empty()
                || file.path.starts_with('/')
                || file
                    .path
                    .split('/')
                    .any(|part| part == ".." || part.is_empty());
            if bad_path {
                return Err(ModelError::Manifest {
                    path: path.to_path_buf(),
                    message: format!("file path {:?} must be relative and plain", file.path),
                });
            }
            let hex = file.sha256.len() == 64
                && file
                    .sha256
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            if !hex {
                return Err(ModelError::Manifest {
                    path: path.to_path_buf(),
                    message: format!("sha256 of {} is not 64 lower-case hex digits", file.path),
                });
            }
        }
        Ok(manifest)
    }

    /// The directory of this model under a models root (`<root>/<model name>`).
    pub fn model_dir(&self, models_root: impl AsRef<Path>) -> PathBuf {
        models_root.as_ref().join(&self.model.name)
    }

    /// Checks that every listed file exists in `model_dir` with the recorded size and sha256.
    ///
    /// Sizes are checked for all files before any content is hashed, so a truncated download
    /// is reported without reading 90 MB first. Hashing the default model takes a few tenths
    /// of a second.
    ///
    /// # Errors
    ///
    /// The first problem found, naming the file: [`ModelError::MissingFile`],
    /// [`ModelError::SizeMismatch`], [`ModelError::ChecksumMismatch`] or [`ModelError::Io`].
    pub fn verify(&self, model_dir: impl AsRef<Path>) -> Result<(), ModelError> {
        let model_dir = model_dir.as_ref();

        // Cheap checks first: presence and size.
        for file in &self.files {
            let path = model_dir.join(&file.path);
            let metadata = std::fs::metadata(&path).map_err(|err| ModelError::io(&path, err))?;
            if !metadata.is_file() {
                return Err(ModelError::MissingFile { path });
            }
            if metadata.len() != file.size {
                return Err(ModelError::SizeMismatch {
                    path,
                    expected: file.size,
                    actual: metadata.len(),
                });
            }
        }

        // Then the content.
        for file in &self.files {
            let path = model_dir.join(&file.path);
            let actual = sha256_hex(&path)?;
            if actual != file.sha256 {
                return Err(ModelError::ChecksumMismatch {
                    path,
                    expected: file.sha256.clone(),
                    actual,
                });
            }
        }
        Ok(())
    }
}

/// Streams a file through sha256 and returns the lower-case hex digest.
fn sha256_hex(path: &Path) -> Result<String, ModelError> {
    let mut file = File::open(path).map_err(|err| ModelError::io(path, err))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(ModelError::io(path, err)),
        };
        hasher.update(&buffer[..read]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The compiled-in manifest parses and lists the files the encoder needs.
    #[test]
    fn builtin_manifest_is_valid() {
        let manifest = Manifest::builtin().unwrap();
        assert_eq!(manifest.model.name, "all-MiniLM-L6-v2");
        assert_eq!(manifest.model.max_seq_length, 256);
        for needed in ["model.safetensors", "config.json", "tokenizer.json"] {
            assert!(
                manifest.files.iter().any(|f| f.path == needed),
                "{needed} not listed"
            );
        }
    }

    /// Paths that would escape the model directory are refused at parse time.
    #[test]
    fn escaping_paths_are_rejected() {
        let text = BUILTIN.replace("path = \"vocab.txt\"", "path = \"../vocab.txt\"");
        let err = Manifest::parse(&text, Path::new("test.toml")).unwrap_err();
        assert!(err.to_string().contains("../vocab.txt"), "{err}");
    }

    /// The hasher agrees with a known sha256 test vector.
    #[test]
    fn sha256_matches_known_vector() {
        let path = std::env::temp_dir().join(format!("nexus-sha-{}", std::process::id()));
        std::fs::write(&path, b"abc").unwrap();
        let digest = sha256_hex(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            digest,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
