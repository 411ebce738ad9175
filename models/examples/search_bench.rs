//! Query latency of exact top-k search: the WGSL kernel (`VectorBlock` on the wgpu device),
//! the CPU path (`VectorBlock` on the CPU backend) and the single-threaded `top_k_reference`,
//! over random unit vectors, printed as a Markdown table with each path's speed against the
//! reference's. One JSON line per measurement goes to standard error as it completes.
//!
//! ```text
//! cargo run --example search_bench -- [--sizes 10000,100000,1000000] [--dims 384] [--k 10]
//!     [--runs 50] [--budget-s 20] [--paths wgsl,cpu,reference]
//! ```
//!
//! Each (path, size) gets one untimed query first (shader compilation, the upload of the
//! vectors to the device), then up to `--runs` queries, each with a fresh random query, or as
//! many as fit in `--budget-s` seconds (at least 5): p99 of few runs is close to their maximum,
//! and the table says how many there were. The CPU thread count is the machine's.

use std::time::Instant;

use nexus_models::search::{VectorBlock, top_k_reference};
use nexus_models::{ComputeDevice, DeviceChoice, ModelError};
use serde_json::json;

struct Options {
    sizes: Vec<usize>,
    dims: usize,
    k: usize,
    runs: usize,
    budget_s: f64,
    paths: Vec<String>,
}

impl Options {
    fn parse() -> Options {
        let mut options = Options {
            sizes: vec![10_000, 100_000, 1_000_000],
            dims: 384,
            k: 10,
            runs: 50,
            budget_s: 20.0,
            paths: ["wgsl", "cpu", "reference"].map(String::from).to_vec(),
        };
        let args: Vec<String> = std::env::args().skip(1).collect();
        for pair in args.chunks(2) {
            let [flag, value] = pair else { usage() };
            let number = || -> usize { value.parse().unwrap_or_else(|_| usage()) };
            match flag.as_str() {
                "--sizes" => {
                    options.sizes = value
                        .split(',')
                        .map(|size| size.parse().unwrap_or_else(|_| usage()))
                        .collect();
                }
                "--dims" => options.dims = number(),
                "--k" => options.k = number(),
                "--runs" => options.runs = number().max(1),
                "--budget-s" => options.budget_s = value.parse().unwrap_or_else(|_| usage()),
                "--paths" => options.paths = value.split(',').map(String::from).collect(),
                _ => usage(),
            }
        }
        options
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: search_bench [--sizes N,N,..] [--dims D] [--k K] [--runs N] [--budget-s S] \
         [--paths wgsl,cpu,reference]"
    );
    std::process::exit(2);
}

/// One measured (path, size).
struct Row {
    path: String,
    size: usize,
    p50_ms: f64,
    p99_ms: f64,
    runs: usize,
    first_ms: f64,
}

fn main() -> Result<(), ModelError> {
    let options = Options::parse();
    let wgpu = if options.paths.iter().any(|path| path == "wgsl") {
        let device = ComputeDevice::open(DeviceChoice::Wgpu)?;
        eprintln!("wgpu device: {}", device.info());
        Some(device)
    } else {
        None
    };
    let cpu = ComputeDevice::open(DeviceChoice::Cpu)?;

    let mut rows = Vec::new();
    let mut random = Random(0x9E37_79B9_7F4A_7C15);
    for &size in &options.sizes {
        let started = Instant::now();
        let vectors: Vec<f32> = (0..size)
            .flat_map(|_| random.unit_vector(options.dims))
            .collect();
        eprintln!(
            "{size} vectors of {} dims generated in {:.1} s",
            options.dims,
            started.elapsed().as_secs_f64()
        );

        for path in &options.paths {
            let row = match path.as_str() {
                "reference" => measure(path, size, &options, &mut random, |query| {
                    top_k_reference(&vectors, options.dims, query, options.k);
                    Ok(())
                })?,
                "cpu" | "wgsl" => {
                    let device = if path == "cpu" {
                        &cpu
                    } else {
                        wgpu.as_ref().unwrap()
                    };
                    let mut block = VectorBlock::new(device, options.dims);
                    for vector in vectors.chunks_exact(options.dims) {
                        block.push(vector);
                    }
                    eprintln!("{path}: block on the {:?} path", block.path());
                    measure(path, size, &options, &mut random, |query| {
                        block.top_k(query, options.k).map(drop)
                    })?
                }
                other => {
                    eprintln!("unknown path {other}");
                    usage()
                }
            };
            eprintln!(
                "{}",
                json!({ "path": row.path, "vectors": row.size, "dims": options.dims,
                        "k": options.k, "p50_ms": row.p50_ms, "p99_ms": row.p99_ms,
                        "runs": row.runs, "first_query_ms": row.first_ms })
            );
            rows.push(row);
        }
    }

    print_table(&rows, &options);
    Ok(())
}

/// Times `search` on fresh random queries, after one untimed query.
fn measure(
    path: &str,
    size: usize,
    options: &Options,
    random: &mut Random,
    mut search: impl FnMut(&[f32]) -> Result<(), ModelError>,
) -> Result<Row, ModelError> {
    let started = Instant::now();
    search(&random.unit_vector(options.dims))?;
    let first_ms = started.elapsed().as_secs_f64() * 1e3;

    let budget = Instant::now();
    let mut millis = Vec::new();
    while millis.len() < options.runs
        && (millis.len() < 5 || budget.elapsed().as_secs_f64() < options.budget_s)
    {
        let query = random.unit_vector(options.dims);
        let started = Instant::now();
        search(&query)?;
        millis.push(started.elapsed().as_secs_f64() * 1e3);
    }

    millis.sort_by(f64::total_cmp);
    let percentile = |p: f64| millis[((millis.len() - 1) as f64 * p).round() as usize];
    Ok(Row {
        path: path.to_string(),
        size,
        p50_ms: percentile(0.50),
        p99_ms: percentile(0.99),
        runs: millis.len(),
        first_ms,
    })
}

fn print_table(rows: &[Row], options: &Options) {
    println!(
        "Top-{} query latency, {} dims, ms (speed-up = reference p50 / p50)\n",
        options.k, options.dims
    );
    println!(
        "| path | vectors | p50 ms | p99 ms | runs | first query ms | speed-up vs reference |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        let reference = rows
            .iter()
            .find(|other| other.path == "reference" && other.size == row.size);
        let ratio = reference.map_or("–".to_string(), |reference| {
            format!("{:.2}x", reference.p50_ms / row.p50_ms)
        });
        println!(
            "| {} | {} | {:.3} | {:.3} | {} | {:.1} | {ratio} |",
            row.path, row.size, row.p50_ms, row.p99_ms, row.runs, row.first_ms
        );
    }
}

/// Small deterministic generator (xorshift64*): the same vectors on every run.
struct Random(u64);

impl Random {
    fn next_f32(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
        bits as f32 / (1u64 << 24) as f32
    }

    fn unit_vector(&mut self, dims: usize) -> Vec<f32> {
        let mut vector: Vec<f32> = (0..dims).map(|_| self.next_f32() * 2.0 - 1.0).collect();
        let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt();
        vector.iter_mut().for_each(|v| *v /= norm);
        vector
    }
}
