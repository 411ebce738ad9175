// Fused residual add + layer norm, one row per workgroup:
//   v = x + residual
//   out = (v - mean(v)) / sqrt(var(v) + eps) * gamma + beta
// with the biased variance over the row, as PyTorch's LayerNorm computes it. Every BERT layer
// ends its attention and feed-forward blocks this way; fusing saves the separate add pass and
// the mean, variance and normalise passes of an unfused layer norm.
//
// Buffers (f32 unless noted, row-major, contiguous):
//   0 input     [rows * cols]
//   1 residual  [rows * cols]
//   2 gamma     [cols]
//   3 beta      [cols]
//   4 output    [rows * cols]
//   5 info      u32 [3]  rows, cols, bits of eps
// Every binding is read_write: burn may place several tensors in one wgpu buffer, and wgpu
// refuses read-only and writable views of the same buffer in one dispatch.
//
// Template hole: workgroup_size (a power of two, filled in by kernels.rs). reduce_sum,
// reduce_max and the `partial` workgroup array come from reduce.wgsl, appended by kernels.rs.
// Dispatch: a 1-D grid of up to 65,535 workgroups; workgroup w takes rows w, w + grid, ...
// Columns are strided over the threads, so cols need not be a multiple of the workgroup size.
// Limits: rows * cols < 2^32. Mean and variance are two passes (not sum of squares minus the
// squared mean), so rows with a large mean keep their precision.

@group(0) @binding(0) var<storage, read_write> input: array<f32>;
@group(0) @binding(1) var<storage, read_write> residual: array<f32>;
@group(0) @binding(2) var<storage, read_write> gamma: array<f32>;
@group(0) @binding(3) var<storage, read_write> beta: array<f32>;
@group(0) @binding(4) var<storage, read_write> output: array<f32>;
@group(0) @binding(5) var<storage, read_write> info: array<u32>;

const WORKGROUP_SIZE: u32 = {{ workgroup_size }}u;

var<workgroup> shared_rows: u32;
var<workgroup> shared_cols: u32;

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(
    @builtin(local_invocation_index) local_index: u32,
    @builtin(workgroup_id) workgroup_id: vec3<u32>,
    @builtin(num_workgroups) num_workgroups: vec3<u32>,
) {
    // Shape. The row loop holds barriers, so its bounds must be provably uniform: loads from a
    // storage buffer are not, values passed through workgroupUniformLoad are.
    if local_index == 0u {
        shared_rows = info[0];
        shared_cols = info[1];
    }
    let rows = workgroupUniformLoad(&shared_rows);
    let cols = workgroupUniformLoad(&shared_cols);
    let eps = bitcast<f32>(info[2]);
    let inverse_cols = 1.0 / f32(cols);

    for (var row = workgroup_id.x; row < rows; row += num_workgroups.x) {
        let base = row * cols;

        // Mean.
        var local_sum = 0.0;
        for (var col = local_index; col < cols; col += WORKGROUP_SIZE) {
            local_sum += input[base + col] + residual[base + col];
        }
        let mean = reduce_sum(local_index, local_sum) * inverse_cols;

        // Biased variance, from the deviations.
        var local_squares = 0.0;
        for (var col = local_index; col < cols; col += WORKGROUP_SIZE) {
            let deviation = input[base + col] + residual[base + col] - mean;
            local_squares += deviation * deviation;
        }
        let variance = reduce_sum(local_index, local_squares) * inverse_cols;
        let inverse_std = 1.0 / sqrt(variance + eps);

        // Normalise, scale and shift.
        for (var col = local_index; col < cols; col += WORKGROUP_SIZE) {
            let deviation = input[base + col] + residual[base + col] - mean;
            output[base + col] = deviation * inverse_std * gamma[col] + beta[col];
        }
    }
}
