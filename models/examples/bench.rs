//! Inference benchmarks of the model crate, printed as one JSON object per line so that
//! `bench/embeddings.sh` can put them beside the peers (PyTorch, ONNX Runtime) and the daemon.
//!
//! ```text
//! cargo run -p nexus-models --example bench -- embed [cpu|wgpu|all] [SENTENCES] [LATENCY_RUNS]
//! cargo run -p nexus-models --example bench -- kernels [ITERATIONS]
//! ```
//!
//! `embed`: sentences per second at batch 1, 8 and 32 over SENTENCES (default 1,024) sentences
//! of 12 words (about 17 tokens), and p50/p99 latency of one short sentence. Each configuration
//! gets an untimed warm-up batch, which pays for shader compilation and autotuning on wgpu.
//!
//! `kernels`: each WGSL kernel against burn's composition of the same operation on the wgpu
//! device, at the shapes of a batch of 32 sentences of 17 tokens, in microseconds per call.
//!
//! The model comes from `$NEXUS_MODELS_DIR` (default `var/models`); run `models/fetch.sh`
//! first. The CPU thread count is the machine's unless `RAYON_NUM_THREADS` says otherwise.

use std::path::PathBuf;
use std::time::Instant;

use burn::tensor::{Device, Tensor, TensorData};
use nexus_models::kernels::{self, reference};
use nexus_models::{ComputeDevice, DeviceChoice, Embedder, Manifest, ModelError};
use serde_json::json;

/// The short sentence whose latency is measured (the peers measure the same one).
const SHORT_SENTENCE: &str = "Primary logo on a white background";

const WORDS: &[&str] = &[
    "brand",
    "logo",
    "primary",
    "palette",
    "teal",
    "banner",
    "icon",
    "mobile",
    "typography",
    "bold",
    "headline",
    "vector",
    "illustration",
    "mountain",
    "template",
    "letterhead",
    "dark",
    "mode",
    "wordmark",
    "guidelines",
    "spacing",
    "colour",
    "asset",
    "library",
    "campaign",
    "social",
    "media",
    "print",
    "poster",
    "gradient",
    "white",
    "background",
];

/// `count` deterministic sentences of 12 words each.
fn sentences(count: usize) -> Vec<String> {
    let mut state = 0x2545_F491u32;
    (0..count)
        .map(|_| {
            let words: Vec<&str> = (0..12)
                .map(|_| {
                    state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    WORDS[(state >> 16) as usize % WORDS.len()]
                })
                .collect();
            words.join(" ")
        })
        .collect()
}

fn main() -> Result<(), ModelError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |index: usize| args.get(index).map(String::as_str);
    let number =
        |index: usize, default: usize| arg(index).and_then(|n| n.parse().ok()).unwrap_or(default);

    match arg(0) {
        Some("embed") => {
            let devices = match arg(1).unwrap_or("all") {
                "cpu" => vec![DeviceChoice::Cpu],
                "wgpu" => vec![DeviceChoice::Wgpu],
                _ => vec![DeviceChoice::Cpu, DeviceChoice::Wgpu],
            };
            for device in devices {
                embed(device, number(2, 1024), number(3, 200))?;
            }
            Ok(())
        }
        Some("kernels") => bench_kernels(number(1, 100)),
        _ => {
            eprintln!("usage: bench embed [cpu|wgpu|all] [SENTENCES] [LATENCY_RUNS] | kernels [N]");
            std::process::exit(2);
        }
    }
}

fn embed(device: DeviceChoice, count: usize, latency_runs: usize) -> Result<(), ModelError> {
    let root = std::env::var_os("NEXUS_MODELS_DIR").map_or_else(
        || PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../var/models")),
        PathBuf::from,
    );
    let embedder = Embedder::load(&Manifest::builtin()?.model_dir(root), device)?;
    let name = format!("nexus-models ({})", embedder.info().device);

    // Throughput: the sentences in consecutive batches, tokenization included.
    let texts = sentences(count);
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    for batch in [1, 8, 32] {
        embedder.embed(&texts[..batch.min(count)])?;

        let started = Instant::now();
        for chunk in texts.chunks(batch) {
            embedder.embed(chunk)?;
        }
        let per_second = count as f64 / started.elapsed().as_secs_f64();
        println!(
            "{}",
            json!({ "impl": name, "batch": batch, "sentences": count,
                    "sentences_per_s": per_second })
        );
    }

    // Latency of one short sentence, one call at a time.
    embedder.embed(&[SHORT_SENTENCE])?;
    let mut millis: Vec<f64> = (0..latency_runs.max(1))
        .map(|_| {
            let started = Instant::now();
            embedder
                .embed(&[SHORT_SENTENCE])
                .map(|_| started.elapsed().as_secs_f64() * 1e3)
        })
        .collect::<Result<_, _>>()?;
    millis.sort_by(f64::total_cmp);
    let percentile = |p: f64| millis[((millis.len() - 1) as f64 * p).round() as usize];
    let (p50, p99, runs) = (percentile(0.50), percentile(0.99), millis.len());
    println!(
        "{}",
        json!({ "impl": name, "latency_p50_ms": p50, "latency_p99_ms": p99, "runs": runs })
    );
    Ok(())
}

/// Times each WGSL kernel and its burn composition at one batch's shapes.
fn bench_kernels(iterations: usize) -> Result<(), ModelError> {
    let device = ComputeDevice::open(DeviceChoice::Wgpu)?;
    let device = device.device();
    let (batch, seq, heads, hidden, ffn) = (32, 17, 12, 384, 1536);
    let tokens = batch * seq;
    let random = |shape: &[usize]| random_tensor(shape, device);

    let x = random(&[tokens, ffn]);
    let bias = random(&[ffn]).reshape([ffn]);
    compare(
        "bias_gelu",
        iterations,
        || kernels::bias_gelu(x.clone(), bias.clone()),
        || reference::bias_gelu(x.clone(), bias.clone()),
    )?;

    let query = random(&[tokens, hidden]);
    let key = random(&[tokens, hidden]);
    let value = random(&[tokens, hidden]);
    let mask = Tensor::<2>::ones([batch, seq], device);
    compare(
        "attention",
        iterations,
        || {
            kernels::attention(
                query.clone(),
                key.clone(),
                value.clone(),
                mask.clone(),
                heads,
            )
        },
        || {
            reference::attention(
                query.clone(),
                key.clone(),
                value.clone(),
                mask.clone(),
                heads,
            )
        },
    )?;

    let residual = random(&[tokens, hidden]);
    let gamma = random(&[hidden]).reshape([hidden]);
    let beta = random(&[hidden]).reshape([hidden]);
    compare(
        "add_layer_norm",
        iterations,
        || {
            let (x, r) = (query.clone(), residual.clone());
            kernels::add_layer_norm(x, r, gamma.clone(), beta.clone(), 1e-12)
        },
        || {
            let (x, r) = (query.clone(), residual.clone());
            reference::add_layer_norm(x, r, gamma.clone(), beta.clone(), 1e-12)
        },
    )?;

    let states: Tensor<3> = query.clone().reshape([batch, seq, hidden]);
    compare(
        "mean_pool_normalize",
        iterations,
        || kernels::mean_pool_normalize(states.clone(), mask.clone()),
        || reference::mean_pool_normalize(states.clone(), mask.clone()),
    )
}

/// Runs the WGSL kernel and burn's composition `iterations` times each and prints the
/// microseconds per call of both. Launches are queued lazily, so each side ends by reading its
/// last output back, which waits for every launch queued before it.
fn compare<const D: usize>(
    name: &str,
    iterations: usize,
    wgsl: impl Fn() -> Result<Tensor<D>, ModelError>,
    burn: impl Fn() -> Tensor<D>,
) -> Result<(), ModelError> {
    let time = |run: &dyn Fn() -> Result<Tensor<D>, ModelError>| -> Result<f64, ModelError> {
        run()?.into_data(); // warm-up: compilation and autotuning
        let started = Instant::now();
        let mut last = run()?;
        for _ in 1..iterations {
            last = run()?;
        }
        last.into_data();
        Ok(started.elapsed().as_secs_f64() * 1e6 / iterations as f64)
    };
    let wgsl_us = time(&wgsl)?;
    let burn_us = time(&|| Ok(burn()))?;
    let speedup = burn_us / wgsl_us;
    println!(
        "{}",
        json!({ "kernel": name, "wgsl_us": wgsl_us, "burn_us": burn_us, "speedup": speedup })
    );
    Ok(())
}

fn random_tensor(shape: &[usize], device: &Device) -> Tensor<2> {
    let len: usize = shape.iter().product();
    let mut state = 0x9E37_79B9u32;
    let values: Vec<f32> = (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state as f32 / u32::MAX as f32) * 4.0 - 2.0
        })
        .collect();
    let shape = if shape.len() == 1 {
        [1, shape[0]]
    } else {
        [shape[0], shape[1]]
    };
    Tensor::from_data(TensorData::new(values, shape), device)
}
