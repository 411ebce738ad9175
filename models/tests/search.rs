//! Exact top-k search: both paths of `VectorBlock` (the WGSL kernel on the wgpu device, software
//! Vulkan where there is no GPU, and the CPU path) against the single-threaded
//! `top_k_reference`, on fresh random unit vectors every run. The seed is printed; set
//! `SEARCH_SEED` to replay a failure.
//!
//! Sizes cross the kernel's 256-row tile (1, 255, 256, 257, a few thousand) at the model's 384
//! dims and at 37 (not a multiple of anything the kernel splits by). The WGSL path fills its
//! candidate buffer with NaN before every launch and refuses a slot the kernel left unwritten,
//! so every search here also checks that the kernel wrote all it should.

mod common;

use std::collections::HashSet;
use std::time::{SystemTime, UNIX_EPOCH};

use common::Rng;
use nexus_models::search::{Hit, MAX_K, SearchPath, VectorBlock, top_k_reference};
use nexus_models::{ComputeDevice, DeviceChoice, ModelError};

/// The kernel's tile: rows per workgroup pass.
const TILE: usize = 256;

/// Largest accepted score error, relative to `sum |query_i * vector_i|` (see [`tolerance`]).
const TOLERANCE: f64 = 1e-5;

fn wgpu() -> ComputeDevice {
    ComputeDevice::open(DeviceChoice::Wgpu).unwrap_or_else(|err| {
        panic!("no wgpu adapter ({err}); install mesa-vulkan-drivers for software Vulkan")
    })
}

fn cpu() -> ComputeDevice {
    ComputeDevice::open(DeviceChoice::Cpu).unwrap()
}

fn devices() -> [(ComputeDevice, SearchPath); 2] {
    [(cpu(), SearchPath::Cpu), (wgpu(), SearchPath::Wgsl)]
}

/// A generator seeded from the clock (or `SEARCH_SEED`), the seed printed with the test name.
fn rng(test: &str) -> Rng {
    let seed = std::env::var("SEARCH_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(|| {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
            now.as_nanos() as u64
        });
    println!("{test}: seed {seed} (replay with SEARCH_SEED={seed})");
    Rng::new(seed)
}

/// One random vector of unit length, as the model produces.
fn unit_vector(rng: &mut Rng, dims: usize) -> Vec<f32> {
    let mut vector = rng.uniform(dims, -1.0, 1.0);
    let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt();
    vector.iter_mut().for_each(|v| *v /= norm);
    vector
}

fn unit_vectors(rng: &mut Rng, rows: usize, dims: usize) -> Vec<f32> {
    (0..rows).flat_map(|_| unit_vector(rng, dims)).collect()
}

fn block(device: &ComputeDevice, dims: usize, vectors: &[f32]) -> VectorBlock {
    let mut block = VectorBlock::new(device, dims);
    for (row, vector) in vectors.chunks_exact(dims).enumerate() {
        assert_eq!(block.push(vector), row as u32);
    }
    block
}

/// The exact score of `row` (in f64) and the tolerance for it.
///
/// Why relative to `sum |q_i v_i|`: both paths add the same f32 products as the reference, in
/// other orders (16 partial sums on the CPU, 8 lanes then a tile sum in the kernel). Rounding
/// error of a sum scales with the magnitude of its terms, not of its result, and a dot product
/// of unit vectors near 0 is a large cancellation, where an error relative to the score would
/// be meaningless. An f32 sum of 384 terms drifts about sqrt(384) * 2^-24 = 1.2e-6 of the
/// magnitudes in any order (at worst 384 * 2^-24 = 2.3e-5, which needs every rounding to go the
/// same way); 1e-5 covers it with room, and stays far below the 1e-3 or so that separates
/// neighbouring random rows, so a wrong row still fails.
fn exact(vectors: &[f32], dims: usize, query: &[f32], row: u32) -> (f64, f64) {
    let vector = &vectors[row as usize * dims..(row as usize + 1) * dims];
    let products = query
        .iter()
        .zip(vector)
        .map(|(q, v)| f64::from(*q) * f64::from(*v));
    let score = products.clone().sum();
    let magnitude: f64 = products.map(f64::abs).sum();
    (score, tolerance(magnitude))
}

fn tolerance(magnitude: f64) -> f64 {
    TOLERANCE * magnitude.max(1e-6)
}

/// `actual` is a correct top-`k` of `vectors` for `query`: the reference's length, in result
/// order, every score within the tolerance of its row's exact score and of the reference's
/// score at the same position, and the same rows as the reference except where rows at the
/// cut-off score are within the tolerance of each other (either may then be in).
fn assert_matches_reference(
    context: &str,
    actual: &[Hit],
    vectors: &[f32],
    dims: usize,
    query: &[f32],
    k: usize,
) {
    let expected = top_k_reference(vectors, dims, query, k);
    assert_eq!(actual.len(), expected.len(), "{context}: number of hits");

    for pair in actual.windows(2) {
        let in_order = pair[0].score > pair[1].score
            || (pair[0].score == pair[1].score && pair[0].row < pair[1].row);
        assert!(in_order, "{context}: {:?} before {:?}", pair[0], pair[1]);
    }

    for (position, (hit, reference)) in actual.iter().zip(&expected).enumerate() {
        let (score, tolerance) = exact(vectors, dims, query, hit.row);
        let error = (f64::from(hit.score) - score).abs();
        assert!(
            error <= tolerance,
            "{context}: row {} scored {} against {score} exactly",
            hit.row,
            hit.score
        );
        let error = (f64::from(hit.score) - f64::from(reference.score)).abs();
        assert!(
            error <= 2.0 * tolerance,
            "{context}: position {position} holds {hit:?}, the reference {reference:?}"
        );
    }

    // Rows in one result and not the other must sit at the cut-off.
    if let Some(last) = expected.last() {
        let actual_rows: HashSet<u32> = actual.iter().map(|hit| hit.row).collect();
        let expected_rows: HashSet<u32> = expected.iter().map(|hit| hit.row).collect();
        assert_eq!(
            actual_rows.len(),
            actual.len(),
            "{context}: a row came twice"
        );
        let (cutoff, tolerance) = exact(vectors, dims, query, last.row);
        for row in actual_rows.symmetric_difference(&expected_rows) {
            let (score, _) = exact(vectors, dims, query, *row);
            assert!(
                (score - cutoff).abs() <= 2.0 * tolerance,
                "{context}: row {row} ({score}) differs from the reference away from the \
                 cut-off {cutoff}"
            );
        }
    }
}

/// Both paths give the reference's top-k over sizes that cross the tile, at 384 and 37 dims,
/// for k of 1, 10, MAX_K and more than the rows.
#[test]
fn both_paths_match_reference() {
    let mut rng = rng("both_paths_match_reference");
    for (device, path) in devices() {
        for dims in [384, 37] {
            for rows in [1, TILE - 1, TILE, TILE + 1, 3000, 4 * TILE + 3] {
                let vectors = unit_vectors(&mut rng, rows, dims);
                let block = block(&device, dims, &vectors);
                assert_eq!(block.path(), path);
                assert_eq!(block.len(), rows);

                for k in [1, 10, MAX_K, rows + 1] {
                    let k = k.min(MAX_K);
                    let query = unit_vector(&mut rng, dims);
                    let hits = block.top_k(&query, k).unwrap();
                    let context = format!("{path:?} rows {rows} dims {dims} k {k}");
                    assert_matches_reference(&context, &hits, &vectors, dims, &query, k);
                }
            }
        }
    }
}

/// A query far from unit length and vectors with large and tiny values: scores of either sign
/// and magnitude still come in the reference's order.
#[test]
fn both_paths_match_reference_on_unnormalised_vectors() {
    let mut rng = rng("both_paths_match_reference_on_unnormalised_vectors");
    let (rows, dims) = (2 * TILE + 17, 384);
    let vectors: Vec<f32> = (0..rows)
        .flat_map(|row| {
            let scale = if row % 3 == 0 { 1e3 } else { 1e-3 };
            rng.uniform(dims, -scale, scale)
        })
        .collect();
    let query = rng.uniform(dims, -5.0, 5.0);
    for (device, path) in devices() {
        let block = block(&device, dims, &vectors);
        let hits = block.top_k(&query, 50).unwrap();
        let context = format!("{path:?} unnormalised");
        assert_matches_reference(&context, &hits, &vectors, dims, &query, 50);
    }
}

/// Many rows on the WGSL path: more workgroups than one per tile could hold, and, on lavapipe
/// (128 MiB per buffer binding), more than one device segment (65,536 rows of 384 dims each).
#[test]
fn wgsl_matches_reference_on_many_rows() {
    let mut rng = rng("wgsl_matches_reference_on_many_rows");
    let (rows, dims) = (70_000, 384);
    let vectors = unit_vectors(&mut rng, rows, dims);
    let block = block(&wgpu(), dims, &vectors);
    for k in [1, 10, MAX_K] {
        let query = unit_vector(&mut rng, dims);
        let hits = block.top_k(&query, k).unwrap();
        assert_matches_reference(&format!("k {k}"), &hits, &vectors, dims, &query, k);
    }

    // The best row of all is found wherever it is, including the last row of the last segment.
    for row in [0, 65_535, 65_536, rows - 1] {
        let query = vectors[row * dims..(row + 1) * dims].to_vec();
        let hits = block.top_k(&query, 1).unwrap();
        assert_eq!(hits[0].row as usize, row, "the query's own row");
    }
}

/// Duplicated vectors tie exactly and come in row order, across tiles and workgroups.
#[test]
fn ties_come_in_row_order() {
    let mut rng = rng("ties_come_in_row_order");
    let (rows, dims) = (3 * TILE + 5, 384);
    let query = unit_vector(&mut rng, dims);

    // Five distinct vectors, scattered over the rows in a random pattern; their scores must be
    // far enough apart that only exact ties are ties.
    let distinct: Vec<Vec<f32>> = loop {
        let candidates: Vec<Vec<f32>> = (0..5).map(|_| unit_vector(&mut rng, dims)).collect();
        let mut scores: Vec<f32> = candidates
            .iter()
            .map(|v| v.iter().zip(&query).map(|(a, b)| a * b).sum())
            .collect();
        scores.sort_by(f32::total_cmp);
        if scores.windows(2).all(|pair| pair[1] - pair[0] > 1e-3) {
            break candidates;
        }
    };
    let vectors: Vec<f32> = (0..rows)
        .flat_map(|_| distinct[(rng.next_f32() * 5.0) as usize % 5].clone())
        .collect();

    for (device, path) in devices() {
        let block = block(&device, dims, &vectors);
        for k in [1, 7, MAX_K] {
            let hits = block.top_k(&query, k).unwrap();
            let expected = top_k_reference(&vectors, dims, &query, k);
            let hit_rows: Vec<u32> = hits.iter().map(|hit| hit.row).collect();
            let expected_rows: Vec<u32> = expected.iter().map(|hit| hit.row).collect();
            assert_eq!(
                hit_rows, expected_rows,
                "{path:?} k {k}: tied rows in row order"
            );

            // Equal vectors, bit-equal scores.
            for pair in hits.windows(2) {
                let (a, b) = (pair[0].row as usize, pair[1].row as usize);
                if vectors[a * dims..(a + 1) * dims] == vectors[b * dims..(b + 1) * dims] {
                    assert_eq!(pair[0].score.to_bits(), pair[1].score.to_bits());
                }
            }
        }
    }
}

/// k == 0 gives nothing, k over the rows gives every row, k over MAX_K is an error, and so is
/// a query of the wrong length or with a NaN; an empty block answers with nothing.
#[test]
fn limits_of_k_and_query() {
    let mut rng = rng("limits_of_k_and_query");
    let dims = 384;
    for (device, path) in devices() {
        let empty = VectorBlock::new(&device, dims);
        assert!(empty.is_empty());
        assert!(
            empty
                .top_k(&unit_vector(&mut rng, dims), 10)
                .unwrap()
                .is_empty()
        );

        let vectors = unit_vectors(&mut rng, 5, dims);
        let block = block(&device, dims, &vectors);
        let query = unit_vector(&mut rng, dims);

        assert!(block.top_k(&query, 0).unwrap().is_empty(), "{path:?} k 0");
        let all = block.top_k(&query, MAX_K).unwrap();
        assert_matches_reference("all", &all, &vectors, dims, &query, MAX_K);
        assert_eq!(all.len(), 5);

        let err = block.top_k(&query, MAX_K + 1).unwrap_err();
        assert!(
            matches!(err, ModelError::TooManyResults { requested, max }
                if requested == MAX_K + 1 && max == MAX_K),
            "{err}"
        );

        let err = block.top_k(&query[1..], 3).unwrap_err();
        assert!(matches!(err, ModelError::Input(_)), "{err}");
        let mut nan = query.clone();
        nan[7] = f32::NAN;
        let err = block.top_k(&nan, 3).unwrap_err();
        assert!(matches!(err, ModelError::Input(_)), "{err}");
    }
}

/// A stored vector of the wrong length is a bug upstream: push panics.
#[test]
#[should_panic(expected = "vector length")]
fn push_of_wrong_length_panics() {
    let mut block = VectorBlock::new(&cpu(), 4);
    block.push(&[1.0, 0.0, 0.0]);
}

/// Rows pushed, overwritten and removed in a random order, with searches in between (which
/// write the pending changes to the device, growing its buffers by doubling): each search
/// gives what the reference gives on the same data, and swap_remove reports the row it moved.
#[test]
fn edits_then_search_match_reference() {
    let mut rng = rng("edits_then_search_match_reference");
    for (device, path) in devices() {
        for dims in [384, 37] {
            let mut block = VectorBlock::new(&device, dims);
            let mut model: Vec<Vec<f32>> = Vec::new();

            for round in 0..12 {
                // Mostly growth early (past several doublings of the first 1,024 rows), then
                // churn that also shrinks.
                let pushes = if round < 6 { 700 } else { 50 };
                for _ in 0..pushes {
                    let vector = unit_vector(&mut rng, dims);
                    assert_eq!(block.push(&vector) as usize, model.len());
                    model.push(vector);
                }
                for _ in 0..40 {
                    let row = (rng.next_f32() * model.len() as f32) as usize % model.len();
                    let vector = unit_vector(&mut rng, dims);
                    block.set(row as u32, &vector);
                    model[row] = vector;
                }
                let removals = if round < 6 { 30 } else { 250 };
                for _ in 0..removals {
                    let row = (rng.next_f32() * model.len() as f32) as usize % model.len();
                    let last = model.len() - 1;
                    let moved = block.swap_remove(row as u32);
                    model.swap_remove(row);
                    assert_eq!(moved, (row != last).then_some(last as u32));
                }
                // Removing the last row and setting the new last one.
                let last = model.len() - 1;
                assert_eq!(block.swap_remove(last as u32), None);
                model.pop();
                let vector = unit_vector(&mut rng, dims);
                block.set((last - 1) as u32, &vector);
                model[last - 1] = vector;

                assert_eq!(block.len(), model.len());
                let vectors: Vec<f32> = model.concat();
                for k in [1, 10, MAX_K] {
                    let query = unit_vector(&mut rng, dims);
                    let hits = block.top_k(&query, k).unwrap();
                    let context = format!("{path:?} dims {dims} round {round} k {k}");
                    assert_matches_reference(&context, &hits, &vectors, dims, &query, k);
                }

                // A row's own vector finds that row first (scores of distinct random rows
                // are well below 1).
                let row = model.len() / 2;
                let hits = block.top_k(&model[row], 1).unwrap();
                assert_eq!(hits[0].row as usize, row, "{path:?} round {round}");
            }
        }
    }
}

/// Emptying a block entirely, then filling it again.
#[test]
fn empty_and_refill() {
    let mut rng = rng("empty_and_refill");
    let dims = 384;
    for (device, path) in devices() {
        let vectors = unit_vectors(&mut rng, 2 * TILE, dims);
        let mut block = block(&device, dims, &vectors);
        let query = unit_vector(&mut rng, dims);
        block.top_k(&query, 5).unwrap();

        while !block.is_empty() {
            block.swap_remove(0);
        }
        assert!(block.top_k(&query, 5).unwrap().is_empty(), "{path:?}");

        let vectors = unit_vectors(&mut rng, TILE + 1, dims);
        for vector in vectors.chunks_exact(dims) {
            block.push(vector);
        }
        let hits = block.top_k(&query, 20).unwrap();
        assert_matches_reference(&format!("{path:?}"), &hits, &vectors, dims, &query, 20);
    }
}
