// Fused bias add + exact (erf) GELU, element-wise:
//   v = input + bias
//   out = v * Phi(v) = 0.5 * v * erfc(-v / sqrt(2))
// The feed-forward block of every BERT layer applies this to the output of its first
// projection; fusing it saves one full read and write of a [tokens, 1536] matrix.
//
// GELU is written with erfc rather than 1 + erf: for negative v, 1 + erf(v / sqrt(2)) is a
// difference of nearly equal numbers and loses all relative precision, while erfc keeps it.
// erfc comes from a Chebyshev fit (Numerical Recipes' erfcc) whose relative error is below
// 1.2e-7 over the whole real line; for v >= 0, erfc(-z) = 2 - erfc(z).
//
// Buffers (f32 unless noted, row-major, contiguous):
//   0 input   [rows * cols]
//   1 bias    [cols]
//   2 output  [rows * cols]
//   3 info    u32 [2]  len = rows * cols, cols
// Every binding is read_write: burn may place several tensors in one wgpu buffer, and wgpu
// refuses read-only and writable views of the same buffer in one dispatch.
//
// Template hole: workgroup_size (filled in by kernels.rs).
// Dispatch: a 1-D grid of up to 65,535 workgroups, one thread per element and a grid-stride
// loop for the rest. Limits: len < 2^32.

@group(0) @binding(0) var<storage, read_write> input: array<f32>;
@group(0) @binding(1) var<storage, read_write> bias: array<f32>;
@group(0) @binding(2) var<storage, read_write> output: array<f32>;
@group(0) @binding(3) var<storage, read_write> info: array<u32>;

const WORKGROUP_SIZE: u32 = {{ workgroup_size }}u;
const FRAC_1_SQRT_2: f32 = 0.70710678118654752;

// erfc(z) for z >= 0, relative error < 1.2e-7.
fn erfc_nonnegative(z: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418
        + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587
        + t * (-0.82215223 + t * 0.17087277))))))));
    return t * exp(-z * z + poly);
}

fn gelu(v: f32) -> f32 {
    let z = -v * FRAC_1_SQRT_2;
    var erfc_z: f32;
    if z >= 0.0 {
        erfc_z = erfc_nonnegative(z);
    } else {
        erfc_z = 2.0 - erfc_nonnegative(-z);
    }
    return 0.5 * v * erfc_z;
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(
    @builtin(global_invocation_id) global_id: vec3<u32>,
    @builtin(num_workgroups) num_workgroups: vec3<u32>,
) {
    let len = info[0];
    let cols = info[1];
    let stride = num_workgroups.x * WORKGROUP_SIZE;

    for (var index = global_id.x; index < len; index += stride) {
        output[index] = gelu(input[index] + bias[index % cols]);
    }
}
