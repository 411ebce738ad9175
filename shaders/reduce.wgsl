// Workgroup tree reductions shared by the row kernels (add_layer_norm, attention,
// mean_pool_normalize). WGSL has no includes: kernels.rs appends this file to each of those
// shaders before compiling, so it uses the WORKGROUP_SIZE constant (a power of two) that the
// shader declares.
//
// Both functions hold barriers: call them from uniform control flow only. They leave every
// thread with the result and end with a barrier, so a shader may reuse `partial` right after
// (attention does, for its partial sums of the values).

var<workgroup> partial: array<f32, WORKGROUP_SIZE>;

fn reduce_sum(local_index: u32, value: f32) -> f32 {
    partial[local_index] = value;
    workgroupBarrier();
    for (var offset = WORKGROUP_SIZE / 2u; offset > 0u; offset /= 2u) {
        if local_index < offset {
            partial[local_index] = partial[local_index] + partial[local_index + offset];
        }
        workgroupBarrier();
    }
    let result = partial[0];
    // Everyone must have read the result before the next reduction overwrites it.
    workgroupBarrier();
    return result;
}

fn reduce_max(local_index: u32, value: f32) -> f32 {
    partial[local_index] = value;
    workgroupBarrier();
    for (var offset = WORKGROUP_SIZE / 2u; offset > 0u; offset /= 2u) {
        if local_index < offset {
            partial[local_index] = max(partial[local_index], partial[local_index + offset]);
        }
        workgroupBarrier();
    }
    let result = partial[0];
    workgroupBarrier();
    return result;
}
