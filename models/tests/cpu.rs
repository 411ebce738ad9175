//! The encoder on burn's ndarray CPU backend against the sentence-transformers reference.

mod common;

use nexus_models::{BackendKind, DeviceChoice};

/// All 24 reference cases, embedded in one batch, match the reference embeddings.
#[test]
fn cpu_embeddings_match_reference() {
    let agreement = common::agreement_with_reference(DeviceChoice::Cpu);
    assert!(agreement.min_cosine >= 0.999_999_9, "{agreement:?}");
    assert!(agreement.max_abs_diff <= 2e-6, "{agreement:?}");
}

/// Padding a sequence into a batch does not change its embedding.
#[test]
fn cpu_batched_matches_one_at_a_time() {
    let worst = common::batched_vs_single(DeviceChoice::Cpu);
    assert!(worst <= 2e-6, "batched vs single differ by {worst}");
}

/// The embedder reports the CPU backend, the model and its limits.
#[test]
fn cpu_info_describes_model_and_device() {
    let embedder = common::embedder(DeviceChoice::Cpu).lock().unwrap();
    let info = embedder.info();
    assert_eq!(info.model, "all-MiniLM-L6-v2");
    assert_eq!(info.dims, 384);
    assert_eq!(info.max_tokens, 256);
    assert_eq!(info.device.backend, BackendKind::Cpu);
    assert!(info.device.adapter.is_none());
}

/// Outputs are unit vectors, and an empty batch gives an empty result.
#[test]
fn cpu_outputs_are_normalised() {
    let embedder = common::embedder(DeviceChoice::Cpu).lock().unwrap();
    let vectors = embedder.embed(&["logo", "", "!!!"]).unwrap();
    for vector in &vectors {
        let norm: f32 = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
    }
    assert!(embedder.embed(&[]).unwrap().is_empty());
}

/// A batch too large for one pass is split internally without changing results.
#[test]
fn cpu_oversized_batch_is_split_transparently() {
    let embedder = common::embedder(DeviceChoice::Cpu).lock().unwrap();
    let long = "brand guidelines ".repeat(300);

    // 24 sequences of 256 tokens are 18.9 Mi attention scores, over the 16 Mi per pass.
    let texts: Vec<&str> = std::iter::repeat_n(long.as_str(), 23)
        .chain(["logo"])
        .collect();
    let vectors = embedder.embed(&texts).unwrap();
    let single = embedder.embed(&[long.as_str(), "logo"]).unwrap();

    assert_eq!(vectors.len(), 24);
    assert!(common::max_abs_diff(&vectors[0], &single[0]) <= 2e-6);
    assert!(common::max_abs_diff(&vectors[22], &single[0]) <= 2e-6);
    assert!(common::max_abs_diff(&vectors[23], &single[1]) <= 2e-6);
}

/// The embedder can move to a worker thread.
#[test]
fn embedder_is_send() {
    fn assert_send<T: Send>() {}
    assert_send::<nexus_models::Embedder>();
}
