// Masked mean pooling + L2 normalisation, one sequence per workgroup:
//   mean[b, c] = sum_t mask[b, t] * hidden[b, t, c] / max(sum_t mask[b, t], 1e-9)
//   out[b, :]  = mean[b, :] / max(|mean[b, :]|_2, 1e-12)
// which is what sentence-transformers' Pooling (mean) and Normalize modules compute, with
// their epsilons. It turns the encoder's last hidden states into sentence embeddings in one
// pass instead of the mask multiply, sum, count, divide, square, sum, sqrt and divide of an
// unfused version. Padding positions are skipped, not multiplied by 0, so whatever a padded
// position holds (even a NaN) never reaches the output.
//
// Buffers (f32 unless noted, row-major, contiguous):
//   0 hidden  [batch * seq * width]
//   1 mask    [batch * seq]   1.0 for a real token, 0.0 for padding
//   2 output  [batch * width]
//   3 info    u32 [3]  batch, seq, width
// Every binding is read_write: burn may place several tensors in one wgpu buffer, and wgpu
// refuses read-only and writable views of the same buffer in one dispatch.
//
// Template hole: workgroup_size (a power of two, filled in by kernels.rs). reduce_sum,
// reduce_max and the `partial` workgroup array come from reduce.wgsl, appended by kernels.rs.
// Dispatch: a 1-D grid of up to 65,535 workgroups; workgroup w takes sequences w, w + grid, ...
// Columns are strided over the threads, so width need not be a multiple of the workgroup size.
// Limits: batch * seq * width < 2^32. Each thread sums its columns over the sequence in order,
// so the result does not depend on the workgroup size.

@group(0) @binding(0) var<storage, read_write> hidden: array<f32>;
@group(0) @binding(1) var<storage, read_write> mask: array<f32>;
@group(0) @binding(2) var<storage, read_write> output: array<f32>;
@group(0) @binding(3) var<storage, read_write> info: array<u32>;

const WORKGROUP_SIZE: u32 = {{ workgroup_size }}u;

var<workgroup> shared_batch: u32;

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(
    @builtin(local_invocation_index) local_index: u32,
    @builtin(workgroup_id) workgroup_id: vec3<u32>,
    @builtin(num_workgroups) num_workgroups: vec3<u32>,
) {
    // Shape. The sequence loop holds barriers, so its bound must be provably uniform.
    if local_index == 0u {
        shared_batch = info[0];
    }
    let batch = workgroupUniformLoad(&shared_batch);
    let seq = info[1];
    let width = info[2];

    for (var sequence = workgroup_id.x; sequence < batch; sequence += num_workgroups.x) {
        let mask_base = sequence * seq;
        let hidden_base = mask_base * width;
        let output_base = sequence * width;

        // Real tokens in this sequence.
        var local_count = 0.0;
        for (var t = local_index; t < seq; t += WORKGROUP_SIZE) {
            local_count += mask[mask_base + t];
        }
        let count = max(reduce_sum(local_index, local_count), 1e-9);

        // Means of this thread's columns, kept in the output, and their squares.
        var local_squares = 0.0;
        for (var c = local_index; c < width; c += WORKGROUP_SIZE) {
            var sum = 0.0;
            for (var t = 0u; t < seq; t++) {
                let weight = mask[mask_base + t];
                if weight != 0.0 {
                    sum += weight * hidden[hidden_base + t * width + c];
                }
            }
            let mean = sum / count;
            output[output_base + c] = mean;
            local_squares += mean * mean;
        }
        let norm = max(sqrt(reduce_sum(local_index, local_squares)), 1e-12);

        // Each thread rescales the columns it wrote itself, so no barrier is needed between.
        for (var c = local_index; c < width; c += WORKGROUP_SIZE) {
            output[output_base + c] = output[output_base + c] / norm;
        }
    }
}
