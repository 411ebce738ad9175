//! Exact top-k vector similarity for semantic search: [`VectorBlock`] holds a growing set of
//! vectors of one length and answers "which `k` rows have the largest dot product with this
//! query" (for the model's L2-normalised embeddings, the largest cosine similarity).
//!
//! Two paths, chosen by the device the block is made on ([`SearchPath`]):
//!
//! - [`SearchPath::Wgsl`]: the vectors live on the wgpu device and `shaders/top_k.wgsl` scores
//!   them and keeps each workgroup's best `k`; the host merges those candidates.
//! - [`SearchPath::Cpu`]: scores on host threads (an unrolled dot product the compiler
//!   vectorises, rows split between threads), each thread keeping its best `k` in a bounded
//!   heap, then a merge.
//!
//! [`top_k_reference`] is the plain single-threaded loop both are tested and benchmarked
//! against.
//!
//! # Ordering contract
//!
//! Hits come sorted by score descending, ties by row ascending; `k` larger than the block gives
//! every row; `k == 0` gives none; `k > MAX_K` is [`ModelError::TooManyResults`]. A score of
//! `-0.0` is reported as `0.0`, so that equal scores always tie.
//!
//! # Errors and panics
//!
//! A query of the wrong length, or with a value that is not finite, is an error
//! ([`ModelError::Input`]): queries come from outside. A stored vector of the wrong length or
//! with a non-finite value panics in [`VectorBlock::push`] / [`VectorBlock::set`]: vectors come
//! from the model, and such a vector is a bug upstream that must not be stored silently.
//!
//! # Device storage (WGSL path)
//!
//! The block keeps a host copy of every vector (the CPU path searches it; the WGSL path
//! re-uploads from it) and, on the device, the same rows in *segments*: buffers of up to
//! `segment_rows` rows, a power of two chosen so that a segment fits one storage-buffer binding
//! (128 MiB on lavapipe, 65,536 rows of 384 dims) and at most 1 GiB. The last segment starts at
//! 1,024 rows and doubles when full; a full segment is followed by a new one. So a block of
//! any size is searched with one launch per segment, and growing re-uploads only the segment
//! that grew (amortised O(1) per row, as for a `Vec`).
//!
//! `push`, `set` and `swap_remove` change the host copy and note the changed rows; the next
//! `top_k` writes them to the device first, coalescing neighbouring rows into one write each.
//! One `set` costs one row's upload, a bulk load of pushes a few large writes. Because `top_k`
//! takes `&self`, the device side sits behind a mutex: concurrent searches of one block are
//! serialised (they would queue on the one device anyway).

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::Mutex;
use std::thread;

use burn::backend::Wgpu;
use burn::backend::wgpu::{KernelSource, SourceKernel, SourceTemplate};
use burn::tensor::Tensor;
use cubecl::bytes::Bytes;
use cubecl::client::Client;
use cubecl::prelude::KernelId;
use cubecl::server::{Handle, KernelArguments};
use cubecl::{CubeCount, CubeDim};

use crate::device::{BackendKind, ComputeDevice};
use crate::error::ModelError;

/// Largest `k` a search accepts: the kernel's tile size, the most pairs a workgroup keeps.
pub const MAX_K: usize = 256;

/// One search result: a row of the block and its score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    /// The row, as [`VectorBlock::push`] returned it (or where a swap_remove moved it).
    pub row: u32,
    /// `dot(query, row vector)`: the cosine similarity for unit vectors.
    pub score: f32,
}

/// How a block answers queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchPath {
    /// `shaders/top_k.wgsl` on burn's wgpu device, vectors held on the device.
    Wgsl,
    /// Threads on the host.
    Cpu,
}

/// The result order: higher score first, ties by lower row. Scores never hold `-0.0` (see the
/// module docs), so `total_cmp` agrees with `==` on them.
fn rank(a: &Hit, b: &Hit) -> Ordering {
    b.score.total_cmp(&a.score).then(a.row.cmp(&b.row))
}

/// The best `k` of `hits`, in result order.
fn best(mut hits: Vec<Hit>, k: usize) -> Vec<Hit> {
    let k = k.min(hits.len());
    if k == 0 {
        return Vec::new();
    }
    if k < hits.len() {
        hits.select_nth_unstable_by(k - 1, rank);
        hits.truncate(k);
    }
    hits.sort_unstable_by(rank);
    hits
}

/// The baseline: a plain single-threaded loop. Same ordering contract as
/// [`VectorBlock::top_k`]: sorted by score descending, ties by row ascending, at most `k` hits
/// (any `k`: the reference has no [`MAX_K`]).
///
/// # Panics
///
/// If `dims` is 0, `vectors.len()` is not a multiple of `dims` or `query.len() != dims`.
pub fn top_k_reference(vectors: &[f32], dims: usize, query: &[f32], k: usize) -> Vec<Hit> {
    assert!(
        dims > 0 && vectors.len() % dims == 0,
        "vectors are not rows of {dims}"
    );
    assert_eq!(query.len(), dims, "query length");

    let hits = vectors
        .chunks_exact(dims)
        .enumerate()
        .map(|(row, vector)| {
            let mut score = 0.0f32;
            for (q, v) in query.iter().zip(vector) {
                score += q * v;
            }
            Hit {
                row: row as u32,
                score: score + 0.0,
            }
        })
        .collect();
    best(hits, k)
}

/// A set of vectors of one length, searched exactly. `Send` and `Sync`.
pub struct VectorBlock {
    dims: usize,
    /// Every row, row-major: the CPU path's data, the WGSL path's source for uploads.
    vectors: Vec<f32>,
    /// The device copy, on the WGSL path.
    device: Option<Mutex<DeviceVectors>>,
}

impl VectorBlock {
    /// An empty block of `dims`-long vectors on `device`: the WGSL path on a wgpu device, the
    /// CPU path on the CPU backend. A wgpu device that cannot hold even one row in a buffer
    /// binding (dims over 32 million on lavapipe) gets the CPU path, with a warning logged.
    ///
    /// # Panics
    ///
    /// If `dims` is 0.
    pub fn new(device: &ComputeDevice, dims: usize) -> VectorBlock {
        assert!(dims > 0, "a vector block needs dims > 0");
        let device = match device.backend() {
            BackendKind::Cpu => None,
            BackendKind::Wgpu => match DeviceVectors::new(device, dims) {
                Ok(vectors) => Some(Mutex::new(vectors)),
                Err(err) => {
                    tracing::warn!(%err, dims, "vector search falls back to the CPU");
                    None
                }
            },
        };
        VectorBlock {
            dims,
            vectors: Vec::new(),
            device,
        }
    }

    /// Which implementation answers [`top_k`](Self::top_k).
    pub fn path(&self) -> SearchPath {
        if self.device.is_some() {
            SearchPath::Wgsl
        } else {
            SearchPath::Cpu
        }
    }

    /// Length of every vector.
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.vectors.len() / self.dims
    }

    /// Whether the block has no rows.
    pub fn is_empty(&self) -> bool {
        self.vectors.is_empty()
    }

    /// Appends `vector` and returns its row.
    ///
    /// # Panics
    ///
    /// If `vector.len() != dims()`, a value is not finite, or the block already holds
    /// `u32::MAX` rows.
    pub fn push(&mut self, vector: &[f32]) -> u32 {
        self.check_vector(vector);
        let row = u32::try_from(self.len())
            .ok()
            .filter(|&row| row != u32::MAX)
            .expect("a vector block holds fewer than u32::MAX rows");

        self.vectors.extend_from_slice(vector);
        self.note_changed(row);
        row
    }

    /// Replaces row `row` with `vector`.
    ///
    /// # Panics
    ///
    /// As [`push`](Self::push), and if `row` is out of range.
    pub fn set(&mut self, row: u32, vector: &[f32]) {
        self.check_vector(vector);
        let start = self.row_start(row);

        self.vectors[start..start + self.dims].copy_from_slice(vector);
        self.note_changed(row);
    }

    /// Removes `row` by moving the last row into it; returns the old index of the row that
    /// moved (None when `row` was the last one).
    ///
    /// # Panics
    ///
    /// If `row` is out of range.
    pub fn swap_remove(&mut self, row: u32) -> Option<u32> {
        let start = self.row_start(row);
        let last = self.len() - 1;

        let moved = (row as usize != last).then(|| {
            let last_start = last * self.dims;
            self.vectors
                .copy_within(last_start..last_start + self.dims, start);
            self.note_changed(row);
            last as u32
        });

        // Rows past the end are never searched, so nothing needs writing for the old last row.
        self.vectors.truncate(last * self.dims);
        moved
    }

    /// The `k` rows with the largest `dot(query, vector)`, best first, ties by row ascending;
    /// every row when `k >= len()`, none when `k == 0`.
    ///
    /// # Errors
    ///
    /// [`ModelError::TooManyResults`] if `k > MAX_K`; [`ModelError::Input`] if the query's
    /// length is not `dims()` or it holds a value that is not finite; on the WGSL path,
    /// [`ModelError::Inference`] if the device fails or the kernel's output is inconsistent.
    pub fn top_k(&self, query: &[f32], k: usize) -> Result<Vec<Hit>, ModelError> {
        if k > MAX_K {
            return Err(ModelError::TooManyResults {
                requested: k,
                max: MAX_K,
            });
        }
        if query.len() != self.dims {
            return Err(ModelError::Input(format!(
                "query of {} values for vectors of {}",
                query.len(),
                self.dims
            )));
        }
        if !query.iter().all(|value| value.is_finite()) {
            return Err(ModelError::Input(
                "query holds a value that is not finite".to_string(),
            ));
        }
        if k == 0 || self.is_empty() {
            return Ok(Vec::new());
        }

        match &self.device {
            None => Ok(top_k_cpu(&self.vectors, self.dims, query, k)),
            Some(device) => {
                let mut device = device
                    .lock()
                    .map_err(|_| ModelError::Inference("vector block lock poisoned".into()))?;
                device.flush(&self.vectors)?;
                device.top_k(self.len(), query, k)
            }
        }
    }

    fn check_vector(&self, vector: &[f32]) {
        assert_eq!(
            vector.len(),
            self.dims,
            "vector length for a block of {} dims",
            self.dims
        );
        assert!(
            vector.iter().all(|value| value.is_finite()),
            "vector holds a value that is not finite"
        );
    }

    fn row_start(&self, row: u32) -> usize {
        let len = self.len();
        assert!(
            (row as usize) < len,
            "row {row} out of range for {len} rows"
        );
        row as usize * self.dims
    }

    fn note_changed(&mut self, row: u32) {
        if let Some(device) = &mut self.device {
            // A poisoned lock means a search panicked mid-flush; the pending list is still a
            // list of rows to write, so keep using it.
            let device = device.get_mut().unwrap_or_else(|err| err.into_inner());
            device.changed.push(row);
        }
    }
}

// The daemon keeps blocks behind a Mutex / RwLock shared between tasks.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<VectorBlock>();
};

// ---------------------------------------------------------------------------------------------
// CPU path

/// Below this many multiply-adds (about 0.1 ms of work), one thread beats spawning more.
const PARALLEL_MIN_VALUES: usize = 1 << 18;

/// The CPU path: rows split into one contiguous chunk per core, each chunk's best `k` kept in
/// a bounded heap, then merged.
fn top_k_cpu(vectors: &[f32], dims: usize, query: &[f32], k: usize) -> Vec<Hit> {
    let rows = vectors.len() / dims;
    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    let threads = if vectors.len() < PARALLEL_MIN_VALUES {
        1
    } else {
        cores.min(vectors.len() / PARALLEL_MIN_VALUES).max(1)
    };
    if threads == 1 {
        return select_rows(vectors, dims, 0, query, k);
    }

    let chunk_rows = rows.div_ceil(threads);
    let candidates = thread::scope(|scope| {
        let workers: Vec<_> = vectors
            .chunks(chunk_rows * dims)
            .enumerate()
            .map(|(chunk, slice)| {
                let first_row = chunk * chunk_rows;
                scope.spawn(move || select_rows(slice, dims, first_row, query, k))
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().expect("search thread panicked"))
            .collect()
    });
    best(candidates, k)
}

/// A hit ordered so that a max-heap keeps the worst one on top.
#[derive(PartialEq)]
struct Ranked(Hit);

impl Eq for Ranked {}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> Ordering {
        rank(&self.0, &other.0)
    }
}

/// The best `k` of `vectors` (whose first row is `first_row`), in result order.
fn select_rows(
    vectors: &[f32],
    dims: usize,
    first_row: usize,
    query: &[f32],
    k: usize,
) -> Vec<Hit> {
    let mut heap = BinaryHeap::with_capacity(k + 1);
    for (offset, vector) in vectors.chunks_exact(dims).enumerate() {
        let hit = Hit {
            row: (first_row + offset) as u32,
            score: dot(query, vector) + 0.0,
        };
        if heap.len() < k {
            heap.push(Ranked(hit));
        } else if let Some(mut worst) = heap.peek_mut()
            && rank(&hit, &worst.0) == Ordering::Less
        {
            *worst = Ranked(hit);
        }
    }
    let mut hits: Vec<Hit> = heap.into_iter().map(|ranked| ranked.0).collect();
    hits.sort_unstable_by(rank);
    hits
}

/// `dot(a, b)` with 16 independent partial sums, which the compiler turns into SIMD
/// multiply-adds (a single running sum cannot be vectorised without reordering it).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    const WIDTH: usize = 16;
    let (a_chunks, a_rest) = a.as_chunks::<WIDTH>();
    let (b_chunks, b_rest) = b.as_chunks::<WIDTH>();

    let mut sums = [0.0f32; WIDTH];
    for (a, b) in a_chunks.iter().zip(b_chunks) {
        for lane in 0..WIDTH {
            sums[lane] += a[lane] * b[lane];
        }
    }
    let mut total: f32 = a_rest.iter().zip(b_rest).map(|(a, b)| a * b).sum();

    // Pairwise, which also keeps the rounding error low.
    let mut width = WIDTH;
    while width > 1 {
        width /= 2;
        for lane in 0..width {
            sums[lane] += sums[lane + width];
        }
    }
    total += sums[0];
    total
}

// ---------------------------------------------------------------------------------------------
// WGSL path

/// Rows per tile = threads per workgroup = the most pairs a workgroup keeps (so [`MAX_K`]).
const BLOCK: u32 = MAX_K as u32;

/// Threads that share one row's dot product (see the shader's header).
const LANES: u32 = 8;

/// Workgroups per search, over all segments. Each writes `k` candidates that the host reads
/// back and merges, so more workgroups cost read-back; a thousand keep a large GPU busy (each
/// workgroup then covers a few tiles) while `k = 10` reads back 80 KB.
const MAX_GROUPS: usize = 1024;

/// Largest `k` of the small-k entry point: each thread keeps its best `k` in private memory.
const SMALL_K: u32 = 16;

/// Threads per workgroup of the small-k entry point. Their lists meet in the general entry's
/// key arrays (2 * BLOCK pairs), hence SMALL_GROUP * SMALL_K <= 2 * BLOCK.
const SMALL_GROUP: u32 = 32;
const _: () = assert!(SMALL_GROUP * SMALL_K <= 2 * BLOCK && SMALL_GROUP.is_power_of_two());

/// Fewest rows a workgroup scores, per path. A workgroup's fixed cost (its final merge, and on
/// the general path the sorts until its best pairs settle) is paid once per workgroup, so
/// fewer, longer workgroups are cheaper where the device runs few at once (lavapipe: one per
/// CPU thread); MAX_GROUPS still keeps a large GPU busy at a million rows.
const SMALL_MIN_ROWS: usize = SMALL_GROUP as usize * 16;
const GENERAL_MIN_ROWS: usize = BLOCK as usize * 8;

/// First capacity of a segment, in rows.
const INITIAL_ROWS: usize = 1024;

/// Largest segment: bounds one allocation and keeps `rows * dims` far below the shader's
/// `u32` indexing limit (2^28 values).
const MAX_SEGMENT_BYTES: u64 = 1 << 30;

/// Row value the kernel writes in a slot for which it had no row (with a score of `-inf`).
const NO_ROW: u32 = u32::MAX;

/// Row value the host fills the candidate buffer with before a launch (with a NaN score), so
/// that a slot the kernel fails to write is caught instead of read as a result.
const POISON_ROW: u32 = u32::MAX - 1;

const TOP_K_WGSL: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shaders/top_k.wgsl"
));

/// `shaders/top_k.wgsl` with its template holes filled in; `small` makes the small-k entry
/// point the module's `main` (the other one is renamed, and unused).
struct TopKKernel {
    small: bool,
    /// Vec4 loads in the small-k entry point: dims is a multiple of 4.
    vec4: bool,
}

impl KernelSource for TopKKernel {
    fn source(&self) -> SourceTemplate {
        let (general, small) = if self.small {
            ("general_unused", "main")
        } else {
            ("main", "small_unused")
        };
        SourceTemplate::new(TOP_K_WGSL)
            .register("block", BLOCK.to_string())
            .register("lanes", LANES.to_string())
            .register("small_group", SMALL_GROUP.to_string())
            .register("small_k", SMALL_K.to_string())
            .register("general_entry", general)
            .register("small_entry", small)
            .register("small_dot", if self.vec4 { "dot4" } else { "dot1" })
    }

    fn id(&self) -> KernelId {
        let holes = (BLOCK, LANES, SMALL_GROUP, SMALL_K);
        KernelId::new::<Self>().info((holes, self.small, self.vec4))
    }

    fn lang(&self) -> &'static str {
        "wgsl"
    }
}

/// One device buffer of up to `segment_rows` rows.
struct Segment {
    handle: Handle,
    /// Rows the buffer holds room for.
    capacity: usize,
}

/// The device copy of a block's rows, and the rows changed since it was last written.
struct DeviceVectors {
    client: Client,
    dims: usize,
    /// Rows of a full segment, a power of two.
    segment_rows: usize,
    segments: Vec<Segment>,
    /// Rows changed on the host and not yet written; unsorted, may repeat or be past the end.
    changed: Vec<u32>,
}

impl DeviceVectors {
    fn new(device: &ComputeDevice, dims: usize) -> Result<Self, ModelError> {
        // burn exposes its compute client only through a tensor's primitive, so take it from a
        // one-value tensor on the device.
        let probe = Tensor::<1>::zeros([1], device.device());
        let primitive = probe.try_into_primitive::<Wgpu>().map_err(|err| {
            ModelError::Device(format!("vector search needs a wgpu device: {err:?}"))
        })?;
        let client = primitive.client.clone();

        let max_bytes = client
            .properties()
            .memory
            .max_page_size
            .min(MAX_SEGMENT_BYTES);
        let row_bytes = (dims * size_of::<f32>()) as u64;
        let fitting_rows = max_bytes / row_bytes;
        if fitting_rows == 0 {
            return Err(ModelError::Device(format!(
                "a row of {dims} values exceeds the device's {max_bytes}-byte buffer binding"
            )));
        }
        let segment_rows = 1usize << fitting_rows.ilog2();
        Ok(Self {
            client,
            dims,
            segment_rows,
            segments: Vec::new(),
            changed: Vec::new(),
        })
    }

    /// Brings the device copy up to date with `host` (all rows, row-major): sizes the
    /// segments, re-uploads any segment that had to grow, and writes the changed rows, one
    /// write per run of neighbouring rows.
    fn flush(&mut self, host: &[f32]) -> Result<(), ModelError> {
        let dims = self.dims;
        let rows = host.len() / dims;
        let segment_count = rows.div_ceil(self.segment_rows);

        // Segments no row reaches any more (after removals) are given back.
        self.segments.truncate(segment_count);

        // Grow or create segments; a new buffer gets all its rows uploaded at once.
        let mut uploaded_whole = vec![false; segment_count];
        for (index, whole) in uploaded_whole.iter_mut().enumerate() {
            let first = index * self.segment_rows;
            let needed = (rows - first).min(self.segment_rows);
            let capacity = match self.segments.get(index) {
                Some(segment) if segment.capacity >= needed => continue,
                Some(segment) => segment.capacity * 2,
                None => INITIAL_ROWS,
            };
            let capacity = capacity
                .max(needed.next_power_of_two())
                .min(self.segment_rows);
            let handle = self.client.empty(capacity * dims * size_of::<f32>());
            let segment = Segment { handle, capacity };
            if index < self.segments.len() {
                self.segments[index] = segment;
            } else {
                self.segments.push(segment);
            }
            self.write_rows(index, 0, &host[first * dims..(first + needed) * dims])?;
            *whole = true;
        }

        // Changed rows, coalesced into runs within one segment.
        let mut changed = std::mem::take(&mut self.changed);
        changed.sort_unstable();
        changed.dedup();
        let mut pending = changed
            .into_iter()
            .map(|row| row as usize)
            .filter(|&row| row < rows && !uploaded_whole[row / self.segment_rows])
            .peekable();
        while let Some(start) = pending.next() {
            let mut end = start + 1;
            while let Some(&next) = pending.peek() {
                if next != end || next % self.segment_rows == 0 {
                    break;
                }
                end = next + 1;
                pending.next();
            }
            let segment = start / self.segment_rows;
            let local = start % self.segment_rows;
            self.write_rows(segment, local, &host[start * dims..end * dims])?;
        }
        Ok(())
    }

    /// Writes `values` (whole rows) into segment `segment` from its row `first_row` on.
    fn write_rows(
        &self,
        segment: usize,
        first_row: usize,
        values: &[f32],
    ) -> Result<(), ModelError> {
        let handle = &self.segments[segment].handle;
        let start = (first_row * self.dims * size_of::<f32>()) as u64;
        let len = size_of_val(values) as u64;

        // The write must cover exactly the handle's range: wgpu copies a range's full size
        // from the staging buffer, so a shorter source would clobber what follows.
        let tail = handle
            .size_in_used()
            .checked_sub(start + len)
            .ok_or_else(|| {
                ModelError::Inference(format!(
                    "row write of {len} bytes at {start} past a {}-byte segment",
                    handle.size_in_used()
                ))
            })?;
        let range = handle.clone().offset_start(start).offset_end(tail);
        self.client
            .write(&range, Bytes::from_elems(values.to_vec()));
        Ok(())
    }

    /// Searches the first `rows` rows (up to date, see [`flush`](Self::flush)).
    fn top_k(&self, rows: usize, query: &[f32], k: usize) -> Result<Vec<Hit>, ModelError> {
        let to_u32 = |value: usize| {
            u32::try_from(value)
                .map_err(|_| ModelError::Inference(format!("{value} exceeds u32 indexing")))
        };

        // Workgroups per segment: the budget (MAX_GROUPS, fewer when the rows are too few to
        // give each workgroup its minimum) shared in proportion to the rows, at least one per
        // segment.
        let small = k <= SMALL_K as usize;
        let (threads, min_rows) = if small {
            (SMALL_GROUP, SMALL_MIN_ROWS)
        } else {
            (BLOCK, GENERAL_MIN_ROWS)
        };
        let budget = rows.div_ceil(min_rows).min(MAX_GROUPS);
        let launches: Vec<(usize, usize, usize)> = (0..self.segments.len())
            .map(|index| {
                let first = index * self.segment_rows;
                let segment_rows = (rows - first).min(self.segment_rows);
                let groups = (segment_rows * budget).div_ceil(rows).max(1);
                (index, segment_rows, groups)
            })
            .collect();
        let slots: usize = launches.iter().map(|&(_, _, groups)| groups * k).sum();

        // Every slot poisoned, so one the kernel does not write is caught in the merge.
        let poison: Vec<u32> = (0..slots)
            .flat_map(|_| [f32::NAN.to_bits(), POISON_ROW])
            .collect();
        let candidates = self
            .client
            .create_from_slice(&to_bytes(&poison, u32::to_ne_bytes));
        let query = self
            .client
            .create_from_slice(&to_bytes(query, f32::to_ne_bytes));

        let mut slot_base = 0;
        for &(index, segment_rows, groups) in &launches {
            let info = [
                to_u32(segment_rows)?,
                to_u32(self.dims)?,
                to_u32(k)?,
                to_u32(index * self.segment_rows)?,
                to_u32(slot_base)?,
            ];
            let info = self
                .client
                .create_from_slice(&to_bytes(&info, u32::to_ne_bytes));
            let bindings = vec![
                self.segments[index].handle.clone().binding(),
                query.clone().binding(),
                candidates.clone().binding(),
                info.binding(),
            ];
            self.client.launch(
                Box::new(SourceKernel::new(
                    TopKKernel {
                        small,
                        vec4: self.dims % 4 == 0,
                    },
                    CubeDim::new_1d(threads),
                )),
                CubeCount::Static(to_u32(groups)?, 1, 1),
                KernelArguments::new().with_buffers(bindings),
            );
            slot_base += groups * k;
        }

        // The final merge runs here rather than in a second pass: the result has to come back
        // to the host anyway, the candidates are few (workgroups * k pairs, 80 KB for k = 10),
        // and a merge pass on the device would run in one workgroup, serially, while the host
        // selects among them in tens of microseconds.
        let bytes = self
            .client
            .read_one(candidates)
            .map_err(|err| ModelError::Inference(format!("reading search candidates: {err:?}")))?;
        merge_candidates(&bytes, slots, rows, k)
    }
}

/// The best `k` of the kernel's `slots` candidates in `bytes`, checking that every slot was
/// written with a row below `rows` or the no-row marker.
fn merge_candidates(
    bytes: &[u8],
    slots: usize,
    rows: usize,
    k: usize,
) -> Result<Vec<Hit>, ModelError> {
    if bytes.len() < slots * 8 {
        return Err(ModelError::Inference(format!(
            "search read back {} bytes for {slots} candidates",
            bytes.len()
        )));
    }

    let mut hits = Vec::with_capacity(slots);
    for (slot, pair) in bytes[..slots * 8].chunks_exact(8).enumerate() {
        let score = f32::from_ne_bytes(pair[..4].try_into().expect("4 bytes"));
        let row = u32::from_ne_bytes(pair[4..].try_into().expect("4 bytes"));
        if row == NO_ROW && score == f32::NEG_INFINITY {
            continue;
        }
        if score.is_nan() || row as usize >= rows {
            return Err(ModelError::Inference(format!(
                "search kernel left candidate {slot} invalid (row {row:#x}, score {score})"
            )));
        }
        hits.push(Hit {
            row,
            score: score + 0.0,
        });
    }
    Ok(best(hits, k))
}

/// The native-endian bytes of `values`, as the device buffers hold them.
fn to_bytes<T: Copy, const N: usize>(values: &[T], bytes: impl Fn(T) -> [u8; N]) -> Vec<u8> {
    values.iter().flat_map(|&value| bytes(value)).collect()
}
