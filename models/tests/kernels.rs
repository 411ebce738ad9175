//! Each WGSL kernel against burn's own composition of the same operation, on the same wgpu
//! device (software Vulkan where there is no GPU), on fresh random inputs and odd shapes:
//! sequences of 1, 7 and 256 tokens, batches of 1, 3 and 64, widths off the workgroup size,
//! and more rows than one dispatch can cover. Every output starts as NaN, so an element that a
//! kernel fails to write fails the comparison.

mod common;

use burn::tensor::{Device, Tensor, TensorData};
use common::Rng;
use nexus_models::kernels::{self, reference};
use nexus_models::{ComputeDevice, DeviceChoice, ModelError};

/// Largest accepted error, relative to the magnitude of the expected value (see [`error`]).
const TOLERANCE: f32 = 1e-4;

/// The model's attention geometry: 12 heads of 32.
const HEADS: usize = 12;
const HEAD_DIM: usize = 32;

fn wgpu() -> Device {
    let device = ComputeDevice::open(DeviceChoice::Wgpu).unwrap_or_else(|err| {
        panic!("no wgpu adapter ({err}); install mesa-vulkan-drivers for software Vulkan")
    });
    device.device().clone()
}

fn tensor<const D: usize>(values: Vec<f32>, shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// A fresh output tensor full of NaN.
fn poisoned<const D: usize>(shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::full(shape, f32::NAN, device)
}

fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor.into_data().try_into_vec::<f32>().expect("f32 data")
}

/// Largest `|actual - expected| / max(1, |expected|)`: relative for values of magnitude one
/// and more, absolute below (where a relative error says little). Infinite when an actual
/// value is not finite, which is how an unwritten (NaN) element shows.
fn error(actual: &[f32], expected: &[f32]) -> f32 {
    assert_eq!(actual.len(), expected.len());
    actual
        .iter()
        .zip(expected)
        .map(|(a, e)| {
            if a.is_finite() {
                (a - e).abs() / e.abs().max(1.0)
            } else {
                f32::INFINITY
            }
        })
        .fold(0.0, f32::max)
}

fn assert_close(name: &str, shape: &[usize], actual: &[f32], expected: &[f32]) {
    let error = error(actual, expected);
    println!("{name} {shape:?}: max error {error:.3e}");
    assert!(
        error < TOLERANCE,
        "{name} {shape:?}: error {error} over {TOLERANCE}"
    );
}

/// A padding mask, `[batch, seq]`: the first token of every sequence real (as `[CLS]` is),
/// each other one real with probability 0.7, so padding sits anywhere, not only at the end.
fn random_mask(rng: &mut Rng, batch: usize, seq: usize) -> Vec<f32> {
    (0..batch * seq)
        .map(|i| {
            if i % seq == 0 || rng.next_f32() < 0.7 {
                1.0
            } else {
                0.0
            }
        })
        .collect()
}

/// Fused bias + GELU equals burn's `gelu(x + bias)`.
#[test]
fn bias_gelu_matches_burn() {
    let device = wgpu();
    let mut rng = Rng::new(1);

    // Tokens of batch x seq = 1 x 1, 3 x 7, 64 x 7 and 1 x 256 at the model's feed-forward
    // width; a width off the workgroup size; more than 65,535 * 256 elements, which needs the
    // grid-stride loop.
    for [rows, cols] in [
        [1, 1536],
        [21, 1536],
        [448, 1536],
        [256, 1536],
        [5, 1000],
        [66_000, 256],
    ] {
        let x = tensor(rng.uniform(rows * cols, -8.0, 8.0), [rows, cols], &device);
        let bias = tensor(rng.uniform(cols, -1.0, 1.0), [cols], &device);

        let output = poisoned([rows, cols], &device);
        let fused = kernels::bias_gelu_into(x.clone(), bias.clone(), output).unwrap();
        let expected = reference::bias_gelu(x, bias);
        assert_close(
            "bias_gelu",
            &[rows, cols],
            &values(fused),
            &values(expected),
        );
    }
}

/// Fused attention equals burn's split heads, `softmax(QKᵀ / sqrt(d) + mask) V`, merge heads,
/// and gives padded keys no weight.
#[test]
fn attention_matches_burn() {
    let device = wgpu();
    let mut rng = Rng::new(2);

    // [batch, seq, heads, head_dim]: the model's heads at the required batches and sequence
    // lengths; more (token, head) rows than one dispatch covers (narrow heads keep it quick
    // on software Vulkan); a head width that does not divide the workgroup; a head as wide
    // as the workgroup.
    for [batch, seq, heads, head_dim] in [
        [1, 1, HEADS, HEAD_DIM],
        [3, 7, HEADS, HEAD_DIM],
        [64, 7, HEADS, HEAD_DIM],
        [1, 256, HEADS, HEAD_DIM],
        [3, 256, HEADS, HEAD_DIM],
        [700, 50, 2, 8],
        [2, 13, 3, 20],
        [2, 9, 1, 128],
    ] {
        let tokens = batch * seq;
        let width = heads * head_dim;
        let mut projection = || {
            tensor(
                rng.uniform(tokens * width, -2.0, 2.0),
                [tokens, width],
                &device,
            )
        };
        let (query, key, value) = (projection(), projection(), projection());
        let mask = tensor(random_mask(&mut rng, batch, seq), [batch, seq], &device);

        let output = poisoned([tokens, width], &device);
        let fused = kernels::attention_into(
            query.clone(),
            key.clone(),
            value.clone(),
            mask.clone(),
            heads,
            output,
        )
        .unwrap();
        let expected = reference::attention(query, key, value, mask, heads);
        let shape = [batch, seq, heads, head_dim];
        assert_close("attention", &shape, &values(fused), &values(expected));
    }
}

/// A padded key changes nothing, whatever its key and value hold.
#[test]
fn attention_ignores_padded_keys() {
    let device = wgpu();
    let mut rng = Rng::new(3);
    let (seq, width) = (5, HEADS * HEAD_DIM);
    let mask = tensor(vec![1.0, 1.0, 1.0, 0.0, 0.0], [1, seq], &device);
    let query = rng.uniform(seq * width, -2.0, 2.0);
    let key = rng.uniform(seq * width, -2.0, 2.0);
    let value = rng.uniform(seq * width, -2.0, 2.0);

    // The same inputs with the padded rows of keys and values replaced by large values.
    let mut loud_key = key.clone();
    let mut loud_value = value.clone();
    loud_key[3 * width..].fill(1e4);
    loud_value[3 * width..].fill(-1e4);

    let run = |key: Vec<f32>, value: Vec<f32>| {
        let fused = kernels::attention(
            tensor(query.clone(), [seq, width], &device),
            tensor(key, [seq, width], &device),
            tensor(value, [seq, width], &device),
            mask.clone(),
            HEADS,
        );
        values(fused.unwrap())
    };
    let quiet = run(key, value);
    let loud = run(loud_key, loud_value);
    assert_eq!(quiet, loud);
}

/// Fused residual add + layer norm equals burn's `layer_norm(x + residual)`.
#[test]
fn add_layer_norm_matches_burn() {
    let device = wgpu();
    let mut rng = Rng::new(4);
    let eps = 1e-12;

    // Tokens of batch x seq = 1 x 1, 3 x 7, 64 x 7 and 3 x 256 at the model's width; one
    // column (zero variance); a width off the workgroup; more than 65,535 rows.
    for [rows, cols] in [
        [1, 384],
        [21, 384],
        [448, 384],
        [768, 384],
        [2, 1],
        [33, 1000],
        [70_000, 7],
    ] {
        // An offset mean, to catch a variance computed as E[x^2] - E[x]^2.
        let x = tensor(rng.uniform(rows * cols, 1.0, 7.0), [rows, cols], &device);
        let residual = tensor(rng.uniform(rows * cols, -3.0, 3.0), [rows, cols], &device);
        let gamma = tensor(rng.uniform(cols, 0.5, 1.5), [cols], &device);
        let beta = tensor(rng.uniform(cols, -0.5, 0.5), [cols], &device);

        let output = poisoned([rows, cols], &device);
        let fused = kernels::add_layer_norm_into(
            x.clone(),
            residual.clone(),
            gamma.clone(),
            beta.clone(),
            eps,
            output,
        )
        .unwrap();
        let expected = reference::add_layer_norm(x, residual, gamma, beta, eps);
        assert_close(
            "add_layer_norm",
            &[rows, cols],
            &values(fused),
            &values(expected),
        );
    }
}

/// Fused mean pooling + L2 normalisation equals burn's masked mean and normalise, and gives
/// unit vectors.
#[test]
fn mean_pool_normalize_matches_burn() {
    let device = wgpu();
    let mut rng = Rng::new(5);

    // [batch, seq, width]: the required batches and sequence lengths at the model's width; a
    // width off the workgroup; more sequences than one dispatch covers.
    for [batch, seq, width] in [
        [1, 1, 384],
        [3, 7, 384],
        [64, 7, 384],
        [3, 256, 384],
        [64, 256, 384],
        [2, 5, 1000],
        [70_000, 2, 3],
    ] {
        let hidden = rng.uniform(batch * seq * width, -3.0, 3.0);
        let hidden = tensor(hidden, [batch, seq, width], &device);
        let mask = tensor(random_mask(&mut rng, batch, seq), [batch, seq], &device);

        let output = poisoned([batch, width], &device);
        let fused = kernels::mean_pool_normalize_into(hidden.clone(), mask.clone(), output);
        let fused = values(fused.unwrap());
        let expected = values(reference::mean_pool_normalize(hidden, mask));
        assert_close(
            "mean_pool_normalize",
            &[batch, seq, width],
            &fused,
            &expected,
        );

        for (sequence, vector) in fused.chunks_exact(width).enumerate().take(100) {
            let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt();
            assert!(
                (norm - 1.0).abs() < 1e-5,
                "sequence {sequence} has norm {norm}"
            );
        }
    }
}

/// The kernels refuse tensors that are not on wgpu instead of panicking.
#[test]
fn kernels_reject_cpu_tensors() {
    let cpu = ComputeDevice::open(DeviceChoice::Cpu).unwrap();
    let x = tensor(vec![0.5; 6], [2, 3], cpu.device());
    let bias = tensor(vec![0.0; 3], [3], cpu.device());

    let err = kernels::bias_gelu(x, bias).unwrap_err();
    assert!(matches!(err, ModelError::Inference(_)), "{err}");
}

/// Mismatched shapes, sequences past the kernel's limit and unusable outputs are reported,
/// not launched.
#[test]
fn kernels_reject_what_they_cannot_compute() {
    let device = wgpu();

    let x = tensor(vec![0.5; 6], [2, 3], &device);
    let err = kernels::bias_gelu(x.clone(), tensor(vec![0.0; 4], [4], &device)).unwrap_err();
    assert!(err.to_string().contains("bias of 4 for 3 columns"), "{err}");

    let seq = kernels::ATTENTION_MAX_SEQ + 1;
    let projection = || tensor(vec![0.0; seq * 4], [seq, 4], &device);
    let mask = tensor(vec![1.0; seq], [1, seq], &device);
    let err = kernels::attention(projection(), projection(), projection(), mask, 2).unwrap_err();
    assert!(
        err.to_string().contains("exceed the kernel's limits"),
        "{err}"
    );

    // An output that shares its buffer with another tensor would be overwritten under it.
    let bias = tensor(vec![0.0; 3], [3], &device);
    let shared = poisoned([2, 3], &device);
    let _other_owner = shared.clone();
    let err = kernels::bias_gelu_into(x, bias, shared).unwrap_err();
    assert!(err.to_string().contains("not shared"), "{err}");
}
