// Exact top-k by dot product, first pass: a matrix-vector product over stored vectors fused
// with a per-workgroup top-k.
//   score[r] = sum_d vectors[r * dims + d] * query[d]          for every row r < rows
//   each workgroup writes the k best (score, row) pairs among the rows it scored, best first:
//   higher score first, ties by lower row.
// The final merge of the workgroups' candidates (groups * k pairs) runs on the host, in
// models/src/search.rs, which explains why.
//
// Buffers (row-major, contiguous):
//   0 vectors     f32 [capacity * dims]   one segment of the block; rows >= rows are ignored
//   1 query       f32 [dims]
//   2 candidates  Candidate [total slots]  this launch writes slots
//                   candidate_base + workgroup * k + i, for i < k
//   3 info        u32 [5]  rows, dims, k, row_base, candidate_base
// A candidate's row is row_base + the row within the segment (the block's global row). A
// workgroup that scored fewer than k rows fills the remaining slots with NO_ROW and -inf.
// Every binding is read_write: burn may place several tensors in one wgpu buffer, and wgpu
// refuses read-only and writable views of the same buffer in one dispatch. Bindings 0 and 1
// are also declared as vec4 arrays (vectors4, query4), used only by dot4 when dims % 4 == 0;
// an entry point uses one view of each, which is what WGSL requires.
//
// Two entry points; search.rs names the one it launches `main` through the template holes
// general_entry and small_entry (the other gets an unused name):
// - the small-k entry (k <= SMALL_K, the common case), at the end of the file: one thread per
//   row and a private sorted list per thread, no barrier until one final merge. A sort per
//   tile made the general entry ~35x slower than a plain CPU loop on lavapipe, where each
//   barrier switches every invocation's coroutine; here a row costs its dot product and one
//   compare with the thread's current k-th best.
// - the general entry (any k <= MAX_K), described below.
// Template holes (filled in by search.rs): block (rows per tile = threads per workgroup of the
// general entry, a power of two, which is also MAX_K), lanes (threads that share one row's
// dot product there, a power of two dividing block), small_group and small_k (threads per
// workgroup and largest k of the small-k entry; small_group * small_k <= 2 * block, since the
// final merge reuses the key arrays) and small_dot (dot4 or dot1, the small entry's loads).
// Dispatch: a 1-D grid; in the general entry workgroup w scores tiles w, w + grid,
// w + 2 grid, ... of block rows each, so the rows it sees only increase (which the pruning
// below relies on for ties).
//
// General entry, per tile: `lanes` neighbouring threads split one row's dot product
// (neighbouring threads read neighbouring values, which a GPU coalesces), each thread
// covering block / (block / lanes) rows, partial sums go to workgroup memory, then thread t
// adds up row t's partials in lane order. The workgroup keeps its best `block` pairs sorted in
// keys[0, block). A tile row that does not beat the current k-th best pair is dropped; when no
// row of a tile survives (the common case once the best pairs are found), the tile costs no
// sorting at all. Otherwise the tile is bitonic-sorted worst-first into keys[block, 2 block),
// which makes keys[0, 2 block) bitonic; one compare-exchange of i with i + block leaves the
// best `block` in the lower half, and a bitonic merge sorts them again.
//
// Limits: k <= block (MAX_K in search.rs); rows * dims < 2^32 within one segment (search.rs
// caps a segment at 1 GiB); dims is otherwise unlimited. Scores of non-finite vectors are not
// ordered (search.rs refuses them). Each score sums dims in a fixed order that depends only on
// d, never on the row, so equal vectors get bit-identical scores and tie exactly.

@group(0) @binding(0) var<storage, read_write> vectors: array<f32>;
@group(0) @binding(1) var<storage, read_write> query: array<f32>;
@group(0) @binding(2) var<storage, read_write> candidates: array<Candidate>;
@group(0) @binding(3) var<storage, read_write> info: array<u32>;
@group(0) @binding(0) var<storage, read_write> vectors4: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> query4: array<vec4<f32>>;

struct Candidate {
    score: f32,
    row: u32,
}

const BLOCK: u32 = {{ block }}u;
const LANES: u32 = {{ lanes }}u;
const SMALL_GROUP: u32 = {{ small_group }}u;
const SMALL_K: u32 = {{ small_k }}u;
const ROWS_PER_PASS: u32 = BLOCK / LANES;
const NO_ROW: u32 = 0xffffffffu;

// The best pairs in [0, BLOCK), the tile being merged in [BLOCK, 2 BLOCK).
var<workgroup> key_score: array<f32, 2 * BLOCK>;
var<workgroup> key_row: array<u32, 2 * BLOCK>;
// Partial dot products: row r's lane l at r * LANES + l.
var<workgroup> partial: array<f32, BLOCK * LANES>;
var<workgroup> survivors: atomic<u32>;
var<workgroup> any_survivor: u32;
var<workgroup> shared_tiles: u32;
var<workgroup> shared_k: u32;

// Whether pair a comes before pair b in the result: higher score, then lower row.
fn better(a_score: f32, a_row: u32, b_score: f32, b_row: u32) -> bool {
    return a_score > b_score || (a_score == b_score && a_row < b_row);
}

// Swaps keys i and j when key j should come first.
fn order_pair(i: u32, j: u32) {
    if better(key_score[j], key_row[j], key_score[i], key_row[i]) {
        let score = key_score[i];
        let row = key_row[i];
        key_score[i] = key_score[j];
        key_row[i] = key_row[j];
        key_score[j] = score;
        key_row[j] = row;
    }
}

@compute @workgroup_size(BLOCK)
fn {{ general_entry }}(
    @builtin(local_invocation_index) local: u32,
    @builtin(workgroup_id) workgroup_id: vec3<u32>,
    @builtin(num_workgroups) num_workgroups: vec3<u32>,
) {
    // Loop bounds around barriers must be provably uniform, hence the uniform loads.
    let rows = info[0];
    let dims = info[1];
    let row_base = info[3];
    let candidate_base = info[4];
    if local == 0u {
        shared_tiles = (rows + BLOCK - 1u) / BLOCK;
        shared_k = info[2];
    }
    let tiles = workgroupUniformLoad(&shared_tiles);
    let k = workgroupUniformLoad(&shared_k);
    let negative_infinity = bitcast<f32>(0xff800000u);

    key_score[local] = negative_infinity;
    key_row[local] = NO_ROW;

    let lane = local % LANES;
    let first_row = local / LANES;
    for (var tile = workgroup_id.x; tile < tiles; tile += num_workgroups.x) {
        let tile_start = tile * BLOCK;

        // Partial dot products: this thread's lane of rows first_row, + ROWS_PER_PASS, ...
        for (var r = first_row; r < BLOCK; r += ROWS_PER_PASS) {
            var sum = 0.0;
            let row = tile_start + r;
            if row < rows {
                let base = row * dims;
                for (var d = lane; d < dims; d += LANES) {
                    sum += vectors[base + d] * query[d];
                }
            }
            partial[r * LANES + lane] = sum;
        }
        if local == 0u {
            atomicStore(&survivors, 0u);
        }
        workgroupBarrier();

        // Row `local` of the tile: its score, kept only if it beats the current k-th best.
        // keys[k - 1] is stable here: it last changed before the barrier above.
        let row = tile_start + local;
        var score = 0.0;
        for (var l = 0u; l < LANES; l++) {
            score += partial[local * LANES + l];
        }
        var keep = row < rows;
        if keep {
            keep = better(score, row_base + row, key_score[k - 1u], key_row[k - 1u]);
        }
        if keep {
            key_score[BLOCK + local] = score;
            key_row[BLOCK + local] = row_base + row;
            atomicAdd(&survivors, 1u);
        } else {
            key_score[BLOCK + local] = negative_infinity;
            key_row[BLOCK + local] = NO_ROW;
        }
        workgroupBarrier();
        if local == 0u {
            any_survivor = atomicLoad(&survivors);
        }
        if workgroupUniformLoad(&any_survivor) == 0u {
            continue;
        }

        // Sort the tile worst-first: a bitonic sort of BLOCK keys, one pair per thread in the
        // lower half of the workgroup.
        for (var size = 2u; size <= BLOCK; size *= 2u) {
            for (var stride = size / 2u; stride > 0u; stride /= 2u) {
                if local < BLOCK / 2u {
                    let i = 2u * stride * (local / stride) + local % stride;
                    let j = i + stride;
                    // Blocks of `size` alternate direction; the last one (size == BLOCK)
                    // leaves the whole tile worst-first.
                    if (i & size) == 0u {
                        order_pair(BLOCK + j, BLOCK + i);
                    } else {
                        order_pair(BLOCK + i, BLOCK + j);
                    }
                }
                workgroupBarrier();
            }
        }

        // Best-first then worst-first is bitonic: the better of i and i + BLOCK is among the
        // best BLOCK of the union, and the lower half stays bitonic.
        order_pair(local, BLOCK + local);
        workgroupBarrier();

        // Bitonic merge of the lower half, best first.
        for (var stride = BLOCK / 2u; stride > 0u; stride /= 2u) {
            if local < BLOCK / 2u {
                let i = 2u * stride * (local / stride) + local % stride;
                order_pair(i, i + stride);
            }
            workgroupBarrier();
        }
    }

    // The best k, padded with NO_ROW where this workgroup saw fewer than k rows.
    if local < k {
        let slot = candidate_base + workgroup_id.x * k + local;
        candidates[slot] = Candidate(key_score[local], key_row[local]);
    }
}

// Row `row`'s score, for dims a multiple of 4: vec4 loads, four running sums in one vector.
fn dot4(row: u32, dims: u32) -> f32 {
    let base = row * (dims / 4u);
    var sum = vec4<f32>(0.0);
    for (var d = 0u; d < dims / 4u; d++) {
        sum += vectors4[base + d] * query4[d];
    }
    return (sum.x + sum.y) + (sum.z + sum.w);
}

// Row `row`'s score for any dims: the same four running sums from scalar loads.
fn dot1(row: u32, dims: u32) -> f32 {
    let base = row * dims;
    var sum = vec4<f32>(0.0);
    var d = 0u;
    for (; d + 4u <= dims; d += 4u) {
        let v = vec4<f32>(vectors[base + d], vectors[base + d + 1u], vectors[base + d + 2u],
            vectors[base + d + 3u]);
        sum += v * vec4<f32>(query[d], query[d + 1u], query[d + 2u], query[d + 3u]);
    }
    for (; d < dims; d++) {
        sum.x += vectors[base + d] * query[d];
    }
    return (sum.x + sum.y) + (sum.z + sum.w);
}

// The small-k entry point (k <= SMALL_K): one thread per row, no barrier until the end.
// Workgroup w's thread t scores rows (w + i * groups) * SMALL_GROUP + t, which only increase,
// so a strict `better` test keeps the lower row of a tie. With 16 or more rows
// per thread (search.rs sizes the grid), the list rarely changes after its first rows.
@compute @workgroup_size(SMALL_GROUP)
fn {{ small_entry }}(
    @builtin(local_invocation_index) local: u32,
    @builtin(workgroup_id) workgroup_id: vec3<u32>,
    @builtin(num_workgroups) num_workgroups: vec3<u32>,
) {
    let rows = info[0];
    let dims = info[1];
    let k = info[2];
    let row_base = info[3];
    let candidate_base = info[4];
    let negative_infinity = bitcast<f32>(0xff800000u);

    // This thread's best k, best first; worst_* mirror entry k - 1, the bar a row must pass.
    var best_score: array<f32, SMALL_K>;
    var best_row: array<u32, SMALL_K>;
    for (var i = 0u; i < SMALL_K; i++) {
        best_score[i] = negative_infinity;
        best_row[i] = NO_ROW;
    }
    var worst_score = negative_infinity;
    var worst_row = NO_ROW;

    // The loop and the dimension loop stay uniform (a row past the end is clamped and then
    // dropped), so lavapipe loads each query value once for all invocations.
    let stride = num_workgroups.x * SMALL_GROUP;
    for (var first = workgroup_id.x * SMALL_GROUP; first < rows; first += stride) {
        let row = min(first + local, rows - 1u);
        let score = {{ small_dot }}(row, dims);
        if first + local >= rows {
            continue;
        }
        let global_row = row_base + row;
        if !better(score, global_row, worst_score, worst_row) {
            continue;
        }
        // Insertion into the sorted list; the old entry k - 1 falls off.
        var i = k - 1u;
        while i > 0u && better(score, global_row, best_score[i - 1u], best_row[i - 1u]) {
            best_score[i] = best_score[i - 1u];
            best_row[i] = best_row[i - 1u];
            i--;
        }
        best_score[i] = score;
        best_row[i] = global_row;
        worst_score = best_score[k - 1u];
        worst_row = best_row[k - 1u];
    }

    // Tree merge of the threads' lists in workgroup memory (thread t's list at t * SMALL_K):
    // in the round of stride s, thread t (a multiple of 2 s) merges list t + s into its own.
    // Only thread t reads or writes list t in a round, so one barrier per round suffices.
    for (var i = 0u; i < k; i++) {
        key_score[local * SMALL_K + i] = best_score[i];
        key_row[local * SMALL_K + i] = best_row[i];
    }
    workgroupBarrier();
    for (var s = 1u; s < SMALL_GROUP; s *= 2u) {
        if local % (2u * s) == 0u {
            let other = (local + s) * SMALL_K;
            var merged_score: array<f32, SMALL_K>;
            var merged_row: array<u32, SMALL_K>;
            var a = 0u;
            var b = 0u;
            for (var i = 0u; i < k; i++) {
                if better(best_score[a], best_row[a], key_score[other + b], key_row[other + b]) {
                    merged_score[i] = best_score[a];
                    merged_row[i] = best_row[a];
                    a++;
                } else {
                    merged_score[i] = key_score[other + b];
                    merged_row[i] = key_row[other + b];
                    b++;
                }
            }
            for (var i = 0u; i < k; i++) {
                best_score[i] = merged_score[i];
                best_row[i] = merged_row[i];
                key_score[local * SMALL_K + i] = merged_score[i];
                key_row[local * SMALL_K + i] = merged_row[i];
            }
        }
        workgroupBarrier();
    }

    // List 0 is the workgroup's best k (padded with NO_ROW where it saw fewer rows).
    for (var i = local; i < k; i += SMALL_GROUP) {
        let slot = candidate_base + workgroup_id.x * k + i;
        candidates[slot] = Candidate(key_score[i], key_row[i]);
    }
}
