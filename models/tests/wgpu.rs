//! The encoder on burn's wgpu backend, with the WGSL kernels in the forward pass, against the
//! sentence-transformers reference. In CI the adapter is Mesa's lavapipe (software Vulkan):
//! `apt-get install mesa-vulkan-drivers libvulkan1`.

mod common;

use nexus_models::{BackendKind, DeviceChoice};

/// All 24 reference cases, embedded in one batch, match the reference embeddings.
#[test]
fn wgpu_embeddings_match_reference() {
    let agreement = common::agreement_with_reference(DeviceChoice::Wgpu);
    assert!(agreement.min_cosine >= 0.999_999_9, "{agreement:?}");
    assert!(agreement.max_abs_diff <= 5e-6, "{agreement:?}");
}

/// Padding a sequence into a batch does not change its embedding.
#[test]
fn wgpu_batched_matches_one_at_a_time() {
    let worst = common::batched_vs_single(DeviceChoice::Wgpu);
    assert!(worst <= 5e-6, "batched vs single differ by {worst}");
}

/// The embedder reports the wgpu backend and the adapter wgpu chose.
#[test]
fn wgpu_info_reports_adapter() {
    let embedder = common::embedder(DeviceChoice::Wgpu).lock().unwrap();
    let device = &embedder.info().device;
    assert_eq!(device.backend, BackendKind::Wgpu);
    let adapter = device
        .adapter
        .as_ref()
        .expect("a wgpu embedder reports its adapter");
    assert!(!adapter.name.is_empty());
    assert!(!adapter.backend.is_empty());
    println!("adapter: {device}");
}

/// The wgpu and CPU backends agree with each other as closely as with the reference.
#[test]
fn wgpu_agrees_with_cpu() {
    let texts = [
        "Dark mode variant of the wordmark",
        "",
        "Café crème résumé naïve façade",
    ];
    let gpu = common::embedder(DeviceChoice::Wgpu)
        .lock()
        .unwrap()
        .embed(&texts)
        .unwrap();
    let cpu = common::embedder(DeviceChoice::Cpu)
        .lock()
        .unwrap()
        .embed(&texts)
        .unwrap();
    for (gpu, cpu) in gpu.iter().zip(&cpu) {
        assert!(common::max_abs_diff(gpu, cpu) <= 5e-6);
    }
}
