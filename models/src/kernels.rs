//! Hand-written WGSL kernels for the encoder's hot operations, and the burn-op reference each
//! one is tested against.
//!
//! | kernel (`shaders/*.wgsl`) | replaces | used in |
//! |---|---|---|
//! | [`attention`] | head split, `QKᵀ`, scale, mask, softmax, `·V`, head merge | every layer |
//! | [`bias_gelu`] | bias add + erf GELU | feed-forward block |
//! | [`add_layer_norm`] | residual add + layer norm | end of attention and feed-forward |
//! | [`mean_pool_normalize`] | masked mean over tokens + L2 normalisation | sentence pooling |
//!
//! The three row kernels share the workgroup reductions of `shaders/reduce.wgsl`.
//!
//! The kernels run on burn's wgpu backend only (burn built without `fusion`, so a tensor's
//! primitive is a plain `CubeTensor`). [`KernelPath`] lets the encoder pick them or the
//! [`reference`] versions, which are plain burn ops and run on any backend; the CPU backend
//! always uses the references.
//!
//! Each kernel comes in two forms: `name(..)` allocates its output, `name_into(.., output)`
//! writes into a tensor the caller allocated (tests fill it with NaN first, so an element the
//! kernel never writes cannot pass for a correct one). Each launch follows the same steps:
//! take the `CubeTensor`s out of the tensors, check device, dtype and shapes, make the inputs
//! contiguous, upload the shape as a small `u32` info buffer, and dispatch a 1-D grid capped at
//! the 65,535-workgroup limit (the shaders loop over whatever the grid does not cover).

use burn::backend::Wgpu;
use burn::backend::wgpu::{
    CubeTensor, KernelSource, SourceKernel, SourceTemplate, into_contiguous,
};
use burn::nn::{LayerNorm, Linear};
use burn::tensor::{DType, Tensor, activation};
use cubecl::prelude::KernelId;
use cubecl::server::KernelArguments;
use cubecl::{CubeCount, CubeDim};

use crate::error::ModelError;

/// Which implementation of the fused ops the encoder uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelPath {
    /// burn's own ops ([`reference`]); any backend.
    Burn,
    /// The hand-written WGSL kernels; wgpu backend only.
    Wgsl,
}

impl KernelPath {
    /// `gelu(linear(x))` for a linear layer with a bias.
    pub fn linear_gelu(self, linear: &Linear, x: Tensor<2>) -> Result<Tensor<2>, ModelError> {
        match self {
            Self::Burn => Ok(activation::gelu(linear.forward(x))),
            Self::Wgsl => {
                let bias = linear.bias.as_ref().ok_or_else(|| {
                    ModelError::Inference("feed-forward layer has no bias".to_string())
                })?;
                bias_gelu(x.matmul(linear.weight.val()), bias.val())
            }
        }
    }

    /// Multi-head self-attention over projected queries, keys and values (see
    /// [`attention`]).
    pub fn attention(
        self,
        query: Tensor<2>,
        key: Tensor<2>,
        value: Tensor<2>,
        mask: Tensor<2>,
        heads: usize,
    ) -> Result<Tensor<2>, ModelError> {
        match self {
            Self::Burn => Ok(reference::attention(query, key, value, mask, heads)),
            Self::Wgsl => attention(query, key, value, mask, heads),
        }
    }

    /// `norm(x + residual)`. `eps` is `norm`'s epsilon, which burn's `LayerNorm` does not
    /// expose; the WGSL kernel needs it, burn's path uses the module's own copy.
    pub fn add_layer_norm(
        self,
        x: Tensor<2>,
        residual: Tensor<2>,
        norm: &LayerNorm,
        eps: f32,
    ) -> Result<Tensor<2>, ModelError> {
        match self {
            Self::Burn => Ok(norm.forward(x + residual)),
            Self::Wgsl => {
                let beta = norm
                    .beta
                    .as_ref()
                    .ok_or_else(|| ModelError::Inference("layer norm has no bias".to_string()))?;
                add_layer_norm(x, residual, norm.gamma.val(), beta.val(), eps)
            }
        }
    }

    /// Sentence embeddings from the last hidden states (see [`mean_pool_normalize`]).
    pub fn mean_pool_normalize(
        self,
        hidden: Tensor<3>,
        mask: Tensor<2>,
    ) -> Result<Tensor<2>, ModelError> {
        match self {
            Self::Burn => Ok(reference::mean_pool_normalize(hidden, mask)),
            Self::Wgsl => mean_pool_normalize(hidden, mask),
        }
    }
}

/// The same computations as the kernels, written with burn's ops.
pub mod reference {
    use burn::tensor::{Tensor, activation};

    /// `gelu(x + bias)`, `bias` broadcast over the rows.
    pub fn bias_gelu(x: Tensor<2>, bias: Tensor<1>) -> Tensor<2> {
        activation::gelu(x + bias.unsqueeze::<2>())
    }

    /// Scaled dot-product attention per head with padded keys masked out.
    ///
    /// `query`, `key` and `value` are `[batch * seq, heads * head_dim]`, `mask` is `[batch,
    /// seq]` with 1 for real tokens and 0 for padding; returns the context in the query's
    /// layout.
    pub fn attention(
        query: Tensor<2>,
        key: Tensor<2>,
        value: Tensor<2>,
        mask: Tensor<2>,
        heads: usize,
    ) -> Tensor<2> {
        let [batch, seq] = mask.dims();
        let [tokens, width] = query.dims();
        let head_dim = width / heads;
        let split_heads = |t: Tensor<2>| t.reshape([batch, seq, heads, head_dim]).swap_dims(1, 2);

        // 0 where the key is real, the lowest finite f32 where it is padding: exp() of it
        // after the max subtraction is exactly 0, as with Hugging Face's additive mask.
        let additive = (mask.reshape([batch, 1, 1, seq]) - 1.0) * f32::MAX;
        let scale = 1.0 / (head_dim as f32).sqrt();
        let scores = split_heads(query).matmul(split_heads(key).swap_dims(2, 3)) * scale;
        let weights = activation::softmax(scores + additive, 3);

        weights
            .matmul(split_heads(value))
            .swap_dims(1, 2)
            .reshape([tokens, width])
    }

    /// `layer_norm(x + residual) * gamma + beta` over the last axis (burn's layer-norm op).
    pub fn add_layer_norm(
        x: Tensor<2>,
        residual: Tensor<2>,
        gamma: Tensor<1>,
        beta: Tensor<1>,
        eps: f32,
    ) -> Tensor<2> {
        burn::tensor::module::layer_norm(x + residual, gamma, Some(beta), f64::from(eps))
    }

    /// Mean over the real tokens, then L2 normalisation: sentence-transformers' `Pooling`
    /// (mean) and `Normalize` modules, with their epsilons.
    ///
    /// `hidden` is `[batch, seq, width]`, `mask` `[batch, seq]`; returns `[batch, width]`.
    pub fn mean_pool_normalize(hidden: Tensor<3>, mask: Tensor<2>) -> Tensor<2> {
        let [batch, seq, width] = hidden.dims();

        // Padding rows are multiplied by 0, so their (finite) values never reach the mean.
        let summed = (hidden * mask.clone().reshape([batch, seq, 1]))
            .sum_dim(1)
            .reshape([batch, width]);
        let counts = mask.sum_dim(1).clamp_min(1e-9);
        let mean = summed / counts;

        let norm = mean
            .clone()
            .powi_scalar(2)
            .sum_dim(1)
            .sqrt()
            .clamp_min(1e-12);
        mean / norm
    }
}

/// Compiled into the crate, so a deployed daemon needs no shader files next to it.
macro_rules! shader {
    ($file:literal) => {
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../shaders/", $file))
    };
}

/// Threads per workgroup. The row kernels reduce with a tree, so theirs must be powers of two;
/// 128 threads cover a 384-wide hidden row or a 256-key score row in two or three steps, and
/// give attention four partial sums per dimension of a 32-wide head.
const ELEMENTWISE_WORKGROUP: u32 = 256;
const ROW_WORKGROUP: u32 = 128;

/// WebGPU's guaranteed maximum number of workgroups along one dispatch dimension.
const MAX_WORKGROUPS: u32 = 65_535;

/// Longest sequence the attention kernel holds in workgroup memory (`MAX_KEYS` in the shader).
pub const ATTENTION_MAX_SEQ: usize = 512;

/// One WGSL shader with its template filled in.
struct WgslKernel {
    /// Distinguishes the shaders in the compilation cache, which keys on the id, not the text.
    name: &'static str,
    source: &'static str,
    workgroup_size: u32,
    /// Whether the shader calls the workgroup reductions of `shaders/reduce.wgsl`.
    reductions: bool,
}

const REDUCTIONS_WGSL: &str = shader!("reduce.wgsl");

const BIAS_GELU: WgslKernel = WgslKernel {
    name: "bias_gelu",
    source: shader!("bias_gelu.wgsl"),
    workgroup_size: ELEMENTWISE_WORKGROUP,
    reductions: false,
};
const ATTENTION: WgslKernel = WgslKernel {
    name: "attention",
    source: shader!("attention.wgsl"),
    workgroup_size: ROW_WORKGROUP,
    reductions: true,
};
const ADD_LAYER_NORM: WgslKernel = WgslKernel {
    name: "add_layer_norm",
    source: shader!("add_layer_norm.wgsl"),
    workgroup_size: ROW_WORKGROUP,
    reductions: true,
};
const MEAN_POOL_NORMALIZE: WgslKernel = WgslKernel {
    name: "mean_pool_normalize",
    source: shader!("mean_pool_normalize.wgsl"),
    workgroup_size: ROW_WORKGROUP,
    reductions: true,
};

impl KernelSource for WgslKernel {
    fn source(&self) -> SourceTemplate {
        let mut template = SourceTemplate::new(self.source);
        if self.reductions {
            // WGSL has no includes; module-scope items may come in any order.
            template = template.add_template(REDUCTIONS_WGSL);
        }
        template.register("workgroup_size", self.workgroup_size.to_string())
    }

    fn id(&self) -> KernelId {
        KernelId::new::<Self>().info((self.name, self.workgroup_size))
    }

    fn lang(&self) -> &'static str {
        "wgsl"
    }
}

/// Fused `gelu(x + bias)` (erf GELU) on the wgpu backend.
///
/// `x` is `[rows, cols]`, `bias` is `[cols]`.
///
/// # Errors
///
/// [`ModelError::Inference`] if the tensors are not f32 tensors on one wgpu device, or their
/// shapes do not fit.
pub fn bias_gelu(x: Tensor<2>, bias: Tensor<1>) -> Result<Tensor<2>, ModelError> {
    let output = Tensor::empty(x.dims(), &x.device());
    bias_gelu_into(x, bias, output)
}

/// [`bias_gelu`] into `output`, an unshared contiguous `[rows, cols]` tensor.
///
/// # Errors
///
/// As [`bias_gelu`], and if `output` does not fit.
pub fn bias_gelu_into(
    x: Tensor<2>,
    bias: Tensor<1>,
    output: Tensor<2>,
) -> Result<Tensor<2>, ModelError> {
    let [rows, cols] = x.dims();
    let [bias_len] = bias.dims();
    if bias_len != cols {
        return Err(shape_error(format!(
            "bias_gelu: bias of {bias_len} for {cols} columns"
        )));
    }

    let x = input(x)?;
    let bias = input(bias)?;
    let output = writable_output(output, [rows, cols], &x)?;
    let len = checked_u32(rows * cols)?;

    // One thread per element, grid-stride beyond the dispatch cap.
    let groups = len.div_ceil(ELEMENTWISE_WORKGROUP);
    launch(
        BIAS_GELU,
        &[&x, &bias],
        output,
        &[len, checked_u32(cols)?],
        groups,
    )
}

/// Fused multi-head self-attention for sequences of up to [`ATTENTION_MAX_SEQ`] tokens.
///
/// `query`, `key` and `value` are the projections as the linear layers produce them, `[batch
/// * seq, heads * head_dim]`; `mask` is `[batch, seq]` with 1 for a real token and 0 for
/// padding. Returns the attention context in the same layout, heads merged. Scores are scaled
/// by `1 / sqrt(head_dim)`; padded keys get a weight of exactly 0.
///
/// # Errors
///
/// [`ModelError::Inference`] if the tensors are not f32 tensors on one wgpu device, their
/// shapes do not fit, the sequence is longer than [`ATTENTION_MAX_SEQ`] or a head is wider
/// than the workgroup.
pub fn attention(
    query: Tensor<2>,
    key: Tensor<2>,
    value: Tensor<2>,
    mask: Tensor<2>,
    heads: usize,
) -> Result<Tensor<2>, ModelError> {
    let output = Tensor::empty(query.dims(), &query.device());
    attention_into(query, key, value, mask, heads, output)
}

/// [`attention`] into `output`, an unshared contiguous tensor shaped like `query`.
///
/// # Errors
///
/// As [`attention`], and if `output` does not fit.
pub fn attention_into(
    query: Tensor<2>,
    key: Tensor<2>,
    value: Tensor<2>,
    mask: Tensor<2>,
    heads: usize,
    output: Tensor<2>,
) -> Result<Tensor<2>, ModelError> {
    let [batch, seq] = mask.dims();
    let [tokens, width] = query.dims();
    let shapes_fit = heads > 0
        && width % heads == 0
        && tokens == batch * seq
        && key.dims() == [tokens, width]
        && value.dims() == [tokens, width];
    if !shapes_fit {
        return Err(shape_error(format!(
            "attention: query {:?}, key {:?}, value {:?}, mask {:?}, {heads} heads",
            [tokens, width],
            key.dims(),
            value.dims(),
            [batch, seq]
        )));
    }
    let head_dim = width / heads;
    if seq > ATTENTION_MAX_SEQ || head_dim > ROW_WORKGROUP as usize {
        return Err(shape_error(format!(
            "attention: sequences of {seq} with heads of {head_dim} exceed the kernel's limits \
             of {ATTENTION_MAX_SEQ} and {ROW_WORKGROUP}"
        )));
    }

    let query = input(query)?;
    let key = input(key)?;
    let value = input(value)?;
    let mask = input(mask)?;
    let output = writable_output(output, [tokens, width], &query)?;
    checked_u32(tokens * width)?;
    let scale = 1.0 / (head_dim as f32).sqrt();
    let info = [
        checked_u32(batch)?,
        checked_u32(seq)?,
        checked_u32(heads)?,
        checked_u32(head_dim)?,
        scale.to_bits(),
    ];

    // One workgroup per (token, head) row, rows strided beyond the dispatch cap.
    let rows = checked_u32(tokens * heads)?;
    launch(
        ATTENTION,
        &[&query, &key, &value, &mask],
        output,
        &info,
        rows,
    )
}

/// Fused `layer_norm(x + residual) * gamma + beta` over rows, on the wgpu backend.
///
/// `x` and `residual` are `[rows, cols]`, `gamma` and `beta` are `[cols]`.
///
/// # Errors
///
/// [`ModelError::Inference`] if the tensors are not f32 tensors on one wgpu device, or their
/// shapes do not fit.
pub fn add_layer_norm(
    x: Tensor<2>,
    residual: Tensor<2>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    eps: f32,
) -> Result<Tensor<2>, ModelError> {
    let output = Tensor::empty(x.dims(), &x.device());
    add_layer_norm_into(x, residual, gamma, beta, eps, output)
}

/// [`add_layer_norm`] into `output`, an unshared contiguous `[rows, cols]` tensor.
///
/// # Errors
///
/// As [`add_layer_norm`], and if `output` does not fit.
pub fn add_layer_norm_into(
    x: Tensor<2>,
    residual: Tensor<2>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    eps: f32,
    output: Tensor<2>,
) -> Result<Tensor<2>, ModelError> {
    let [rows, cols] = x.dims();
    if residual.dims() != [rows, cols] || gamma.dims() != [cols] || beta.dims() != [cols] {
        return Err(shape_error(format!(
            "add_layer_norm: x {:?}, residual {:?}, gamma {:?}, beta {:?}",
            [rows, cols],
            residual.dims(),
            gamma.dims(),
            beta.dims()
        )));
    }

    let x = input(x)?;
    let residual = input(residual)?;
    let gamma = input(gamma)?;
    let beta = input(beta)?;
    let output = writable_output(output, [rows, cols], &x)?;
    checked_u32(rows * cols)?;
    let info = [checked_u32(rows)?, checked_u32(cols)?, eps.to_bits()];

    // One workgroup per row, rows strided beyond the dispatch cap.
    let groups = checked_u32(rows)?;
    launch(
        ADD_LAYER_NORM,
        &[&x, &residual, &gamma, &beta],
        output,
        &info,
        groups,
    )
}

/// Fused masked mean pooling and L2 normalisation: sentence embeddings from hidden states.
///
/// `hidden` is `[batch, seq, width]`, `mask` is `[batch, seq]` with 1 for a real token and 0
/// for padding; returns `[batch, width]` unit vectors (a sequence whose mean is zero stays
/// zero).
///
/// # Errors
///
/// [`ModelError::Inference`] if the tensors are not f32 tensors on one wgpu device, or their
/// shapes do not fit.
pub fn mean_pool_normalize(hidden: Tensor<3>, mask: Tensor<2>) -> Result<Tensor<2>, ModelError> {
    let [batch, _, width] = hidden.dims();
    let output = Tensor::empty([batch, width], &hidden.device());
    mean_pool_normalize_into(hidden, mask, output)
}

/// [`mean_pool_normalize`] into `output`, an unshared contiguous `[batch, width]` tensor.
///
/// # Errors
///
/// As [`mean_pool_normalize`], and if `output` does not fit.
pub fn mean_pool_normalize_into(
    hidden: Tensor<3>,
    mask: Tensor<2>,
    output: Tensor<2>,
) -> Result<Tensor<2>, ModelError> {
    let [batch, seq, width] = hidden.dims();
    if mask.dims() != [batch, seq] {
        return Err(shape_error(format!(
            "mean_pool_normalize: mask {:?} for hidden states {:?}",
            mask.dims(),
            [batch, seq, width]
        )));
    }

    let hidden = input(hidden)?;
    let mask = input(mask)?;
    let output = writable_output(output, [batch, width], &hidden)?;
    checked_u32(batch * seq * width)?;
    let info = [checked_u32(batch)?, checked_u32(seq)?, checked_u32(width)?];

    // One workgroup per sequence, sequences strided beyond the dispatch cap.
    let groups = checked_u32(batch)?;
    launch(
        MEAN_POOL_NORMALIZE,
        &[&hidden, &mask],
        output,
        &info,
        groups,
    )
}

/// A kernel input: the contiguous `CubeTensor` of an f32 wgpu tensor.
fn input<const D: usize>(tensor: Tensor<D>) -> Result<CubeTensor, ModelError> {
    Ok(into_contiguous(wgpu_primitive(tensor)?))
}

/// A kernel output: `output`'s `CubeTensor`, if it has the expected shape, is contiguous, is on
/// `like`'s device and shares its buffer with no other tensor (the kernel writes it in place).
fn writable_output<const D: usize>(
    output: Tensor<D>,
    shape: [usize; D],
    like: &CubeTensor,
) -> Result<CubeTensor, ModelError> {
    if output.dims() != shape {
        return Err(shape_error(format!(
            "output of shape {:?}, expected {shape:?}",
            output.dims()
        )));
    }
    let output = wgpu_primitive(output)?;
    same_device(like, &output)?;
    if !output.is_contiguous() || !output.can_mut() {
        return Err(ModelError::Inference(
            "the output tensor must be contiguous and not shared with another tensor".to_string(),
        ));
    }
    Ok(output)
}

/// The `CubeTensor` behind a float tensor, if it is an f32 tensor on the wgpu runtime.
fn wgpu_primitive<const D: usize>(tensor: Tensor<D>) -> Result<CubeTensor, ModelError> {
    let primitive = tensor.try_into_primitive::<Wgpu>().map_err(|err| {
        ModelError::Inference(format!("WGSL kernels need a wgpu tensor: {err:?}"))
    })?;

    // The CubeCL backends share one tensor type, so the runtime is checked separately.
    if !matches!(primitive.device, cubecl::Device::Wgpu(_)) {
        return Err(ModelError::Inference(format!(
            "WGSL kernels need a wgpu tensor, got one on {:?}",
            primitive.device
        )));
    }
    if primitive.dtype != DType::F32 {
        return Err(ModelError::Inference(format!(
            "WGSL kernels are written for f32, got {:?}",
            primitive.dtype
        )));
    }
    Ok(primitive)
}

fn same_device(a: &CubeTensor, b: &CubeTensor) -> Result<(), ModelError> {
    if a.device == b.device {
        Ok(())
    } else {
        Err(ModelError::Inference(format!(
            "kernel inputs on different devices: {:?} and {:?}",
            a.device, b.device
        )))
    }
}

/// The shaders index with `u32`.
fn checked_u32(value: usize) -> Result<u32, ModelError> {
    u32::try_from(value)
        .map_err(|_| shape_error(format!("{value} elements exceed the kernels' u32 indexing")))
}

fn shape_error(message: String) -> ModelError {
    ModelError::Inference(message)
}

/// Queues `kernel` over `groups` workgroups (capped at the dispatch limit) with the bindings
/// in shader order: the inputs, the output, then `info`. burn runs it lazily, in order with
/// the other ops on the device.
fn launch<const D: usize>(
    kernel: WgslKernel,
    inputs: &[&CubeTensor],
    output: CubeTensor,
    info: &[u32],
    groups: u32,
) -> Result<Tensor<D>, ModelError> {
    for tensor in inputs {
        same_device(&output, tensor)?;
    }
    let client = output.client.clone();
    let info_bytes: Vec<u8> = info.iter().flat_map(|value| value.to_ne_bytes()).collect();
    let info = client.create_from_slice(&info_bytes);

    let mut bindings: Vec<_> = inputs
        .iter()
        .map(|tensor| tensor.handle.clone().binding())
        .collect();
    bindings.push(output.handle.clone().binding());
    bindings.push(info.binding());

    let cube_dim = CubeDim::new_1d(kernel.workgroup_size);
    client.launch(
        Box::new(SourceKernel::new(kernel, cube_dim)),
        CubeCount::Static(groups.clamp(1, MAX_WORKGROUPS), 1, 1),
        KernelArguments::new().with_buffers(bindings),
    );
    Ok(Tensor::from_primitive::<Wgpu>(output))
}
