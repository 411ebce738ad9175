// Fused multi-head self-attention for short sequences, one query row per workgroup:
//   s[j]   = scale * dot(q[b, i, h, :], k[b, j, h, :])          for the real keys j
//   w[j]   = exp(s[j] - max_j s) / sum_j exp(s[j] - max_j s)     (0 for padding keys)
//   out[b, i, h, :] = sum_j w[j] * v[b, j, h, :]
// with scale = 1 / sqrt(head_dim). It replaces the head split, the QK^T matmul, the mask add,
// the softmax passes, the second matmul and the head merge of an unfused encoder: the
// [batch, heads, seq, seq] score tensor is never written to memory, only one row of it at a
// time into workgroup memory. Skipping masked keys gives what an additive -inf mask gives:
// their weight is exactly 0.
//
// Buffers (f32 unless noted, row-major, contiguous):
//   0 query   [batch * seq, heads * head_dim]   the projections as the linear layers leave
//   1 key     [batch * seq, heads * head_dim]   them: head h of token t is columns
//   2 value   [batch * seq, heads * head_dim]   h * head_dim .. (h + 1) * head_dim of row t
//   3 mask    [batch * seq]                     1.0 for a real token, 0.0 for padding
//   4 output  [batch * seq, heads * head_dim]   same layout (heads merged)
//   5 info    u32 [5]  batch, seq, heads, head_dim, bits of the scale
// Every binding is read_write: burn may place several tensors in one wgpu buffer, and wgpu
// refuses read-only and writable views of the same buffer in one dispatch.
//
// Template hole: workgroup_size (a power of two, filled in by kernels.rs). reduce_sum,
// reduce_max and the `partial` workgroup array come from reduce.wgsl, appended by kernels.rs.
// Dispatch: a 1-D grid of up to 65,535 workgroups; workgroup w takes rows w, w + grid, ...
// of the batch * seq * heads (query, head) rows.
// Limits: seq <= MAX_KEYS (512, BERT's position table), head_dim <= workgroup_size, and
// batch * seq * heads * head_dim < 2^32. A row whose keys are all masked comes out as zeros
// (BERT never produces one: [CLS] is always a real token). Every query reads all keys and
// values of its head, which is cheap for the short texts this serves and would want tiling
// (flash attention) for long sequences.

@group(0) @binding(0) var<storage, read_write> query: array<f32>;
@group(0) @binding(1) var<storage, read_write> key: array<f32>;
@group(0) @binding(2) var<storage, read_write> value: array<f32>;
@group(0) @binding(3) var<storage, read_write> mask: array<f32>;
@group(0) @binding(4) var<storage, read_write> output: array<f32>;
@group(0) @binding(5) var<storage, read_write> info: array<u32>;

const WORKGROUP_SIZE: u32 = {{ workgroup_size }}u;
const MAX_KEYS: u32 = 512u;
const LOWEST: f32 = -3.40282347e+38;

// The scaled query of the current row, then its score and weight per key.
var<workgroup> scaled_query: array<f32, WORKGROUP_SIZE>;
var<workgroup> weights: array<f32, MAX_KEYS>;
var<workgroup> shared_rows: u32;

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(
    @builtin(local_invocation_index) local_index: u32,
    @builtin(workgroup_id) workgroup_id: vec3<u32>,
    @builtin(num_workgroups) num_workgroups: vec3<u32>,
) {
    // Shape. The row loop holds barriers, so its bound must be provably uniform: loads from a
    // storage buffer are not, values passed through workgroupUniformLoad are.
    if local_index == 0u {
        shared_rows = info[0] * info[1] * info[2];
    }
    let rows = workgroupUniformLoad(&shared_rows);
    let seq = info[1];
    let heads = info[2];
    let head_dim = info[3];
    let scale = bitcast<f32>(info[4]);
    let width = heads * head_dim;

    // For the weighted sum of values, thread t adds up dimension t % head_dim over every
    // parts-th key, starting at key t / head_dim; the parts are summed at the end.
    let parts = WORKGROUP_SIZE / head_dim;
    let dim = local_index % head_dim;
    let part = local_index / head_dim;

    for (var row = workgroup_id.x; row < rows; row += num_workgroups.x) {
        // Rows run token-major, heads minor: neighbouring workgroups share a token's query.
        let token = row / heads;
        let head = row % heads;
        let sequence_start = token - token % seq;
        let head_offset = head * head_dim;

        // The scaled query, once, into workgroup memory.
        if local_index < head_dim {
            scaled_query[local_index] = query[token * width + head_offset + local_index] * scale;
        }
        workgroupBarrier();

        // Scores of the real keys, and their maximum.
        var local_max = LOWEST;
        for (var j = local_index; j < seq; j += WORKGROUP_SIZE) {
            if mask[sequence_start + j] != 0.0 {
                let key_base = (sequence_start + j) * width + head_offset;
                var score = 0.0;
                for (var d = 0u; d < head_dim; d++) {
                    score += scaled_query[d] * key[key_base + d];
                }
                weights[j] = score;
                local_max = max(local_max, score);
            }
        }
        let row_max = reduce_max(local_index, local_max);

        // Unnormalised weights (0 for padding) and their sum.
        var local_sum = 0.0;
        for (var j = local_index; j < seq; j += WORKGROUP_SIZE) {
            var weight = 0.0;
            if mask[sequence_start + j] != 0.0 {
                weight = exp(weights[j] - row_max);
            }
            weights[j] = weight;
            local_sum += weight;
        }
        let row_sum = reduce_sum(local_index, local_sum);
        let inverse = select(0.0, 1.0 / row_sum, row_sum > 0.0);

        // Weighted sum of the values: partial sums per (part, dim), then one per dim.
        var accumulated = 0.0;
        if part < parts {
            for (var j = part; j < seq; j += parts) {
                accumulated += weights[j] * value[(sequence_start + j) * width + head_offset + dim];
            }
        }
        partial[local_index] = accumulated;
        workgroupBarrier();
        if local_index < head_dim {
            var total = 0.0;
            for (var p = 0u; p < parts; p++) {
                total += partial[p * head_dim + local_index];
            }
            output[token * width + head_offset + local_index] = total * inverse;
        }
        // The next row overwrites the query, the weights and the partial sums.
        workgroupBarrier();
    }
}
