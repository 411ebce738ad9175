//! A missing or corrupt model file is reported by name, by the manifest check and by loading.

mod common;

use std::path::{Path, PathBuf};

use nexus_models::{DeviceChoice, Embedder, Manifest, ModelError};

/// A scratch copy of the model directory: every file a symlink to the real one, except those a
/// test replaces. Removed on drop.
struct ScratchModel {
    dir: PathBuf,
}

impl ScratchModel {
    fn new(name: &str) -> Self {
        let source = common::model_dir();
        let dir = std::env::temp_dir()
            .join(format!("nexus-models-{}-{name}", std::process::id()))
            .join("all-MiniLM-L6-v2");
        let _ = std::fs::remove_dir_all(&dir);
        for file in Manifest::builtin().unwrap().files {
            let target = dir.join(&file.path);
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            std::os::unix::fs::symlink(source.join(&file.path), &target).unwrap();
        }
        Self { dir }
    }

    /// Replaces `file` with a real copy whose bytes `edit` may change.
    fn rewrite(&self, file: &str, edit: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
        let path = self.dir.join(file);
        let mut bytes = std::fs::read(&path).unwrap();
        edit(&mut bytes);
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn remove(&self, file: &str) -> PathBuf {
        let path = self.dir.join(file);
        std::fs::remove_file(&path).unwrap();
        path
    }
}

impl Drop for ScratchModel {
    fn drop(&mut self) {
        if let Some(parent) = self.dir.parent() {
            let _ = std::fs::remove_dir_all(parent);
        }
    }
}

fn assert_names(err: &ModelError, path: &Path) {
    assert_eq!(err.path(), Some(path), "{err}");
    let file = path.file_name().unwrap().to_string_lossy();
    assert!(
        err.to_string().contains(&*file),
        "message does not name {file}: {err}"
    );
}

/// The fetched model passes verification, and the manifest file on disk is the built-in one.
#[test]
fn fetched_model_verifies() {
    let builtin = Manifest::builtin().unwrap();
    builtin.verify(common::model_dir()).unwrap();

    let on_disk = Manifest::load(concat!(env!("CARGO_MANIFEST_DIR"), "/manifest.toml")).unwrap();
    let names = |m: &Manifest| m.files.iter().map(|f| f.path.clone()).collect::<Vec<_>>();
    assert_eq!(names(&on_disk), names(&builtin));
}

/// One flipped byte (same size) is a checksum mismatch naming the file.
#[test]
fn corrupt_file_is_named() {
    let scratch = ScratchModel::new("corrupt");
    let path = scratch.rewrite("vocab.txt", |bytes| bytes[1000] ^= 0x01);

    let err = Manifest::builtin()
        .unwrap()
        .verify(&scratch.dir)
        .unwrap_err();
    assert!(matches!(err, ModelError::ChecksumMismatch { .. }), "{err}");
    assert_names(&err, &path);
}

/// A truncated file is a size mismatch naming the file.
#[test]
fn truncated_file_is_named() {
    let scratch = ScratchModel::new("truncated");
    let path = scratch.rewrite("1_Pooling/config.json", |bytes| bytes.truncate(10));

    let err = Manifest::builtin()
        .unwrap()
        .verify(&scratch.dir)
        .unwrap_err();
    assert!(
        matches!(err, ModelError::SizeMismatch { actual: 10, .. }),
        "{err}"
    );
    assert_names(&err, &path);
}

/// A missing file is named by the manifest check and by loading.
#[test]
fn missing_files_are_named() {
    for file in [
        "tokenizer.json",
        "model.safetensors",
        "config.json",
        "1_Pooling/config.json",
    ] {
        let scratch = ScratchModel::new(&format!("missing-{}", file.replace('/', "-")));
        let path = scratch.remove(file);

        let err = Manifest::builtin()
            .unwrap()
            .verify(&scratch.dir)
            .unwrap_err();
        assert!(matches!(err, ModelError::MissingFile { .. }), "{err}");
        assert_names(&err, &path);

        let err = Embedder::load(&scratch.dir, DeviceChoice::Cpu)
            .err()
            .unwrap();
        assert!(matches!(err, ModelError::MissingFile { .. }), "{err}");
        assert_names(&err, &path);
    }
}

/// Malformed JSON in the config is a configuration error naming the file.
#[test]
fn malformed_config_is_named() {
    let scratch = ScratchModel::new("bad-config");
    let path = scratch.rewrite("config.json", |bytes| bytes.truncate(bytes.len() / 2));

    let err = Embedder::load(&scratch.dir, DeviceChoice::Cpu)
        .err()
        .unwrap();
    assert!(matches!(err, ModelError::Config { .. }), "{err}");
    assert_names(&err, &path);
}

/// A weights file lacking one encoder tensor fails to load, naming the tensor.
#[test]
fn missing_tensor_is_named() {
    let scratch = ScratchModel::new("missing-tensor");
    let missing = "encoder.layer.3.output.dense.bias";

    // Rename the tensor in the safetensors header; the data section stays as it is.
    let path = scratch.rewrite("model.safetensors", |bytes| {
        let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let mut header: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
        let entry = header
            .remove(missing)
            .expect("tensor present in the real file");
        header.insert(format!("{missing}_renamed"), entry);

        let mut new_header = serde_json::to_vec(&header).unwrap();
        new_header.resize(new_header.len().next_multiple_of(8), b' ');
        let data = bytes.split_off(8 + header_len);
        bytes.clear();
        bytes.extend_from_slice(&(new_header.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&new_header);
        bytes.extend_from_slice(&data);
    });

    let err = Embedder::load(&scratch.dir, DeviceChoice::Cpu)
        .err()
        .unwrap();
    assert!(matches!(err, ModelError::Weights { .. }), "{err}");
    assert_names(&err, &path);
    assert!(err.to_string().contains(missing), "tensor not named: {err}");
}
