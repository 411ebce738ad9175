//! Shared helpers for the integration tests: locating the real model, reading the reference
//! fixture, comparing vectors, and deterministic pseudo-random inputs.
//!
//! The tests run against the real weights. When they are absent the tests fail (never skip)
//! with a message saying how to fetch them.

#![allow(dead_code)] // Each test binary uses a different subset of these helpers.

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use nexus_models::{DeviceChoice, Embedder, Manifest};
use serde::Deserialize;

/// One case of `tests/fixtures/minilm-reference.json` (sentence-transformers on CPU, f32).
#[derive(Debug, Deserialize)]
pub struct Case {
    pub text: String,
    pub token_ids: Vec<u32>,
    pub embedding: Vec<f32>,
}

#[derive(Debug, Deserialize)]
struct Fixture {
    max_seq_length: usize,
    embedding_dim: usize,
    cases: Vec<Case>,
}

/// The 24 reference cases.
pub fn cases() -> &'static [Case] {
    static CASES: OnceLock<Vec<Case>> = OnceLock::new();
    CASES.get_or_init(|| {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/minilm-reference.json"
        );
        let text = std::fs::read_to_string(path).expect("reading the reference fixture");
        let fixture: Fixture = serde_json::from_str(&text).expect("parsing the reference fixture");
        assert_eq!(fixture.max_seq_length, 256);
        assert_eq!(fixture.embedding_dim, 384);
        assert_eq!(fixture.cases.len(), 24, "the fixture should hold 24 cases");
        fixture.cases
    })
}

/// `$NEXUS_MODELS_DIR/<model>`, default `<repo root>/var/models/<model>`. Panics, telling the
/// reader to run `models/fetch.sh`, when the model is not there.
pub fn model_dir() -> PathBuf {
    let root = std::env::var_os("NEXUS_MODELS_DIR").map_or_else(
        || PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../var/models")),
        PathBuf::from,
    );
    let manifest = Manifest::builtin().expect("built-in manifest");
    let dir = manifest.model_dir(&root);
    let complete = manifest
        .files
        .iter()
        .all(|file| dir.join(&file.path).is_file());
    assert!(
        complete,
        "model files not found in {}: run models/fetch.sh (or set NEXUS_MODELS_DIR to the \
         directory that holds {}/)",
        dir.display(),
        manifest.model.name
    );
    dir
}

/// One embedder per device per test binary: loading takes a while, and wgpu can be set up
/// only once per process anyway.
pub fn embedder(choice: DeviceChoice) -> &'static Mutex<Embedder> {
    static CPU: OnceLock<Mutex<Embedder>> = OnceLock::new();
    static WGPU: OnceLock<Mutex<Embedder>> = OnceLock::new();
    let cell = match choice {
        DeviceChoice::Cpu => &CPU,
        DeviceChoice::Wgpu => &WGPU,
        DeviceChoice::Auto => panic!("tests pick an explicit device"),
    };
    cell.get_or_init(|| {
        let embedder = Embedder::load(&model_dir(), choice)
            .unwrap_or_else(|err| panic!("loading the model on {choice:?} failed: {err}"));
        Mutex::new(embedder)
    })
}

/// Cosine similarity, computed in f64.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

/// Largest element-wise absolute difference.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Small deterministic generator (xorshift64*), so failures reproduce exactly.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Uniform in [0, 1).
    pub fn next_f32(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
        bits as f32 / (1u64 << 24) as f32
    }

    /// `count` values uniform in [low, high).
    pub fn uniform(&mut self, count: usize, low: f32, high: f32) -> Vec<f32> {
        (0..count)
            .map(|_| low + (high - low) * self.next_f32())
            .collect()
    }
}

/// Agreement of one backend with the reference fixture.
#[derive(Debug)]
pub struct Agreement {
    pub max_abs_diff: f32,
    pub min_cosine: f64,
    pub worst_case: usize,
}

/// The reference cases grouped as a batching queue might group them: every case shorter than
/// the limit in one batch (padded to its longest, 18 tokens), and each case at the limit (the
/// 256-token text) with the two shortest cases, which are then padded to 256. Every case is in
/// at least one batch. Keeping the 256-token case out of the big batch keeps the software
/// Vulkan run to about a minute.
pub fn batches(tokens: &[nexus_models::Tokens]) -> Vec<Vec<usize>> {
    let mut by_length: Vec<usize> = (0..tokens.len()).collect();
    by_length.sort_by_key(|&i| tokens[i].len());
    let (short, long): (Vec<usize>, Vec<usize>) =
        by_length.iter().partition(|&&i| tokens[i].len() < 256);
    assert!(
        !long.is_empty(),
        "the fixture should hold a text at the 256-token limit"
    );

    let mut batches = vec![short.clone()];
    for i in long {
        batches.push(vec![i, short[0], short[1]]);
    }
    batches
}

/// Embeds the reference cases in [`batches`] on `choice` and compares every output with the
/// fixture. Also checks the token ids, so that an embedding mismatch is never a tokenizer one.
pub fn agreement_with_reference(choice: DeviceChoice) -> Agreement {
    let embedder = embedder(choice).lock().expect("embedder lock");
    let texts: Vec<&str> = cases().iter().map(|case| case.text.as_str()).collect();
    let tokens = embedder.tokenize(&texts).expect("tokenize");
    for (case, tokens) in cases().iter().zip(&tokens) {
        assert_eq!(
            tokens.ids(),
            case.token_ids.as_slice(),
            "token ids of {:?}",
            case.text
        );
    }

    let mut agreement = Agreement {
        max_abs_diff: 0.0,
        min_cosine: 1.0,
        worst_case: 0,
    };
    let mut seen = vec![false; cases().len()];
    for batch in batches(&tokens) {
        let batch_tokens: Vec<_> = batch.iter().map(|&i| tokens[i].clone()).collect();
        let vectors = embedder.embed_tokens(&batch_tokens).expect("embed");
        assert_eq!(vectors.len(), batch.len());

        for (&i, vector) in batch.iter().zip(&vectors) {
            let reference = &cases()[i].embedding;
            assert_eq!(vector.len(), reference.len(), "dims of case {i}");
            let diff = max_abs_diff(vector, reference);
            if diff > agreement.max_abs_diff {
                agreement.max_abs_diff = diff;
                agreement.worst_case = i;
            }
            agreement.min_cosine = agreement.min_cosine.min(cosine(vector, reference));
            seen[i] = true;
        }
    }
    assert!(seen.iter().all(|&s| s), "every case is embedded");

    println!(
        "{choice:?} vs reference, {} cases: max abs diff {:.3e} (case {}: {:?}), \
         min cosine 1 - {:.3e}",
        cases().len(),
        agreement.max_abs_diff,
        agreement.worst_case,
        cases()[agreement.worst_case]
            .text
            .chars()
            .take(30)
            .collect::<String>(),
        1.0 - agreement.min_cosine,
    );
    agreement
}

/// Largest difference between embedding the reference cases in [`batches`] and one at a time.
pub fn batched_vs_single(choice: DeviceChoice) -> f32 {
    let embedder = embedder(choice).lock().expect("embedder lock");
    let texts: Vec<&str> = cases().iter().map(|case| case.text.as_str()).collect();
    let tokens = embedder.tokenize(&texts).expect("tokenize");

    let single: Vec<Vec<f32>> = tokens
        .iter()
        .map(|t| {
            embedder
                .embed_tokens(std::slice::from_ref(t))
                .expect("single embed")
                .remove(0)
        })
        .collect();

    let mut worst = 0.0f32;
    for batch in batches(&tokens) {
        let batch_tokens: Vec<_> = batch.iter().map(|&i| tokens[i].clone()).collect();
        let vectors = embedder.embed_tokens(&batch_tokens).expect("batched embed");
        for (&i, vector) in batch.iter().zip(&vectors) {
            worst = worst.max(max_abs_diff(vector, &single[i]));
        }
    }
    println!("{choice:?} batched vs one at a time: max abs diff {worst:.3e}");
    worst
}
