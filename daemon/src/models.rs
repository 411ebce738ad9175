//! Model files on disk: `models list`, `models verify` and `models pull`.
//!
//! The manifest compiled into the binary (`models/manifest.toml`) names every file of the
//! model with its size and sha256. `pull` copies the files from a mirror that has the same
//! layout as a models directory (`<mirror>/<model>/<file>`): a local folder, or an http(s)
//! URL such as a bucket's web endpoint. Each file is streamed to a temporary name, hashed on
//! the way, fsynced and only then renamed into place, so a failed pull never leaves a
//! half-written file under its final name.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nexus_models::Manifest;
use nexus_models::manifest::FileEntry;
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error(transparent)]
    Model(#[from] nexus_models::ModelError),
    #[error("no mirror to pull from: pass --from or set inference.mirror")]
    NoMirror,
    #[error("{file}: {source}")]
    Io { file: String, source: io::Error },
    #[error("{file}: {url} answered {status}")]
    Http {
        file: String,
        url: String,
        status: u16,
    },
    #[error("{file}: {message}")]
    Fetch { file: String, message: String },
    #[error(
        "{file}: the mirror's copy is {found_size} bytes with sha256 {found}, \
         expected {size} bytes with sha256 {expected}"
    )]
    Mismatch {
        file: String,
        found_size: u64,
        found: String,
        size: u64,
        expected: String,
    },
}

/// One line per manifest file: whether it is present with the right size (a cheap check;
/// `verify` hashes).
pub fn list(manifest: &Manifest, models_dir: &Path) -> Vec<String> {
    let model_dir = manifest.model_dir(models_dir);
    let mut lines = vec![format!(
        "{} (revision {}) in {}",
        manifest.model.name,
        manifest.model.revision,
        model_dir.display()
    )];
    for file in &manifest.files {
        let status = match std::fs::metadata(model_dir.join(&file.path)) {
            Ok(metadata) if metadata.len() == file.size => "present",
            Ok(_) => "wrong size",
            Err(_) => "missing",
        };
        lines.push(format!(
            "  {:<28} {:>11} bytes  {status}",
            file.path, file.size
        ));
    }
    lines
}

/// Fetches every file that is missing or wrong from `mirror`; returns how many were fetched.
pub fn pull(manifest: &Manifest, models_dir: &Path, mirror: &str) -> Result<usize, PullError> {
    if mirror.trim().is_empty() {
        return Err(PullError::NoMirror);
    }
    let model_dir = manifest.model_dir(models_dir);
    let mut fetched = 0;

    for file in &manifest.files {
        let target = model_dir.join(&file.path);
        if hash_file(&target).is_ok_and(|(size, sha)| size == file.size && sha == file.sha256) {
            continue;
        }
        let source = format!(
            "{}/{}/{}",
            mirror.trim_end_matches('/'),
            manifest.model.name,
            file.path
        );
        fetch_verified(&source, &target, file)?;
        fetched += 1;
    }

    // A final full check, so that `pull` succeeding means the daemon will load.
    manifest.verify(&model_dir)?;
    Ok(fetched)
}

fn fetch_verified(source: &str, target: &Path, file: &FileEntry) -> Result<(), PullError> {
    let io_error = |source| PullError::Io {
        file: file.path.clone(),
        source,
    };
    let parent = target
        .parent()
        .expect("model files live in the model directory");
    std::fs::create_dir_all(parent).map_err(io_error)?;
    let partial = partial_path(target);

    let (size, sha) = {
        let mut reader = open_source(source, file)?;
        let mut output = File::create(&partial).map_err(io_error)?;
        let copied = copy_hashing(&mut reader, &mut output).map_err(io_error)?;
        output.sync_all().map_err(io_error)?;
        copied
    };

    if size != file.size || sha != file.sha256 {
        let _ = std::fs::remove_file(&partial);
        return Err(PullError::Mismatch {
            file: file.path.clone(),
            found_size: size,
            found: sha,
            size: file.size,
            expected: file.sha256.clone(),
        });
    }
    std::fs::rename(&partial, target).map_err(io_error)?;
    // The rename is durable only once the directory entry is.
    File::open(parent)
        .and_then(|dir| dir.sync_all())
        .map_err(io_error)?;
    tracing::info!(file = %file.path, bytes = size, "model file fetched and verified");
    Ok(())
}

fn open_source(source: &str, file: &FileEntry) -> Result<Box<dyn Read>, PullError> {
    if source.starts_with("http://") || source.starts_with("https://") {
        let agent = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(10)))
            .http_status_as_error(false)
            .build()
            .new_agent();
        let response = agent.get(source).call().map_err(|error| PullError::Fetch {
            file: file.path.clone(),
            message: format!("{source}: {error}"),
        })?;
        if !response.status().is_success() {
            return Err(PullError::Http {
                file: file.path.clone(),
                url: source.to_string(),
                status: response.status().as_u16(),
            });
        }
        // Model weights are larger than ureq's default in-memory body limit.
        let body = response
            .into_body()
            .into_with_config()
            .limit(u64::MAX)
            .reader();
        return Ok(Box::new(body));
    }

    let path = source.strip_prefix("file://").unwrap_or(source);
    let opened = File::open(path).map_err(|error| PullError::Io {
        file: file.path.clone(),
        source: io::Error::new(error.kind(), format!("{path}: {error}")),
    })?;
    Ok(Box::new(opened))
}

fn copy_hashing(reader: &mut dyn Read, writer: &mut dyn Write) -> io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let read = reader.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        writer.write_all(&buffer[..read])?;
        size += read as u64;
    }
    Ok((size, hex(&hasher.finalize())))
}

fn hash_file(path: &Path) -> io::Result<(u64, String)> {
    copy_hashing(&mut File::open(path)?, &mut io::sink())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn partial_path(target: &Path) -> PathBuf {
    let mut name = target.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    target.with_file_name(name)
}
