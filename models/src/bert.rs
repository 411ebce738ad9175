//! The BERT encoder as burn modules and its weight loading.
//!
//! The module tree mirrors Hugging Face's `BertModel` so that the safetensors keys map onto it
//! with two renames (`LayerNorm` -> `layer_norm`, `attention.self` -> `attention.self_attention`,
//! both Rust keywords or style), and `PyTorchToBurnAdapter` transposes the linear weights and
//! renames layer-norm `weight`/`bias` to `gamma`/`beta`. The pooler is not built: sentence
//! embeddings come from mean pooling, so `pooler.*` (and `embeddings.position_ids`) stay unused.
//!
//! Hidden states travel as `[batch * seq, hidden]` matrices between layers; only burn's
//! reference attention splits them into heads. The three fused ops of each layer go through
//! [`KernelPath`], which selects the WGSL kernels on wgpu and burn's ops elsewhere.

use std::path::Path;

use burn::module::Module;
use burn::nn::{
    Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig,
};
use burn::store::{KeyRemapper, ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore};
use burn::tensor::{Device, Int, Tensor};

use crate::config::BertConfig;
use crate::error::ModelError;
use crate::kernels::KernelPath;

/// Token, position and token-type embeddings followed by a layer norm.
#[derive(Module, Debug)]
struct Embeddings {
    word_embeddings: Embedding,
    position_embeddings: Embedding,
    token_type_embeddings: Embedding,
    layer_norm: LayerNorm,
}

/// Query, key and value projections of one attention block.
#[derive(Module, Debug)]
struct SelfAttention {
    query: Linear,
    key: Linear,
    value: Linear,
    #[module(skip)]
    num_heads: usize,
}

/// A projection followed by residual add and layer norm (`BertSelfOutput` / `BertOutput`).
#[derive(Module, Debug)]
struct ResidualOutput {
    dense: Linear,
    layer_norm: LayerNorm,
    /// The layer norm's epsilon, for the WGSL kernel (burn's `LayerNorm` keeps its copy
    /// private).
    #[module(skip)]
    eps: f32,
}

#[derive(Module, Debug)]
struct Attention {
    self_attention: SelfAttention,
    output: ResidualOutput,
}

#[derive(Module, Debug)]
struct Intermediate {
    dense: Linear,
}

#[derive(Module, Debug)]
struct Layer {
    attention: Attention,
    intermediate: Intermediate,
    output: ResidualOutput,
}

#[derive(Module, Debug)]
struct Encoder {
    layer: Vec<Layer>,
}

/// The BERT encoder: embeddings and transformer layers, without the pooler.
#[derive(Module, Debug)]
pub struct BertModel {
    embeddings: Embeddings,
    encoder: Encoder,
}

impl BertModel {
    /// Builds the module tree for `config` on `device`, zero-initialised: every parameter is
    /// then overwritten by [`BertModel::load_weights`].
    pub fn new(config: &BertConfig, device: &Device) -> Self {
        let hidden = config.hidden_size;
        let linear = |d_input, d_output| {
            LinearConfig::new(d_input, d_output)
                .with_initializer(Initializer::Zeros)
                .init(device)
        };
        let embedding = |count| {
            EmbeddingConfig::new(count, hidden)
                .with_initializer(Initializer::Zeros)
                .init(device)
        };
        let layer_norm = || {
            LayerNormConfig::new(hidden)
                .with_epsilon(config.layer_norm_eps)
                .init(device)
        };
        let residual_output = |d_input| ResidualOutput {
            dense: linear(d_input, hidden),
            layer_norm: layer_norm(),
            // The kernels compute in f32; 1e-12 is representable there.
            eps: config.layer_norm_eps as f32,
        };

        let layers = (0..config.num_hidden_layers)
            .map(|_| Layer {
                attention: Attention {
                    self_attention: SelfAttention {
                        query: linear(hidden, hidden),
                        key: linear(hidden, hidden),
                        value: linear(hidden, hidden),
                        num_heads: config.num_attention_heads,
                    },
                    output: residual_output(hidden),
                },
                intermediate: Intermediate {
                    dense: linear(hidden, config.intermediate_size),
                },
                output: residual_output(config.intermediate_size),
            })
            .collect();

        Self {
            embeddings: Embeddings {
                word_embeddings: embedding(config.vocab_size),
                position_embeddings: embedding(config.max_position_embeddings),
                token_type_embeddings: embedding(config.type_vocab_size),
                layer_norm: layer_norm(),
            },
            encoder: Encoder { layer: layers },
        }
    }

    /// Loads a Hugging Face BERT safetensors file into the module.
    ///
    /// # Errors
    ///
    /// [`ModelError::Weights`] if the file cannot be read, a tensor has the wrong shape or
    /// dtype, or any encoder tensor is missing from the file. Tensors the encoder does not use
    /// (the pooler, `position_ids`) are ignored.
    pub fn load_weights(&mut self, path: &Path) -> Result<(), ModelError> {
        let weights_error = |message: String| ModelError::Weights {
            path: path.to_path_buf(),
            message,
        };
        if !path.is_file() {
            return Err(ModelError::MissingFile {
                path: path.to_path_buf(),
            });
        }

        // Hugging Face names -> this module tree (see the module docs).
        let remapper = KeyRemapper::new()
            .add_pattern(r"\.LayerNorm\.", ".layer_norm.")
            .and_then(|remapper| {
                remapper.add_pattern(r"\.attention\.self\.", ".attention.self_attention.")
            })
            .map_err(|err| weights_error(format!("bad key remapping: {err}")))?;

        // Partial loading is allowed only so that a missing tensor is reported below, by name,
        // instead of as the store's generic error.
        let mut store = SafetensorsStore::from_file(path)
            .with_from_adapter(PyTorchToBurnAdapter)
            .remap(remapper)
            .allow_partial(true);
        let result = self
            .load_from(&mut store)
            .map_err(|err| weights_error(err.to_string()))?;

        if !result.errors.is_empty() {
            let errors: Vec<String> = result.errors.iter().map(ToString::to_string).collect();
            return Err(weights_error(errors.join("; ")));
        }
        if !result.missing.is_empty() {
            let missing: Vec<&str> = result
                .missing
                .iter()
                .map(|(path, _)| path.as_str())
                .collect();
            return Err(weights_error(format!(
                "{} encoder tensors missing from the file: {}",
                missing.len(),
                missing.join(", ")
            )));
        }
        tracing::debug!(
            applied = result.applied.len(),
            unused = ?result.unused,
            "encoder weights loaded"
        );
        Ok(())
    }

    /// Runs the encoder.
    ///
    /// `input_ids` is `[batch, seq]` (padding with any valid id), `mask` is `[batch, seq]` with
    /// 1 for real tokens and 0 for padding. Returns the last hidden states, `[batch, seq,
    /// hidden]`.
    ///
    /// # Errors
    ///
    /// [`ModelError::Input`] for an empty batch or one longer than the position table,
    /// [`ModelError::Inference`] if a WGSL kernel cannot be launched on these tensors.
    pub fn forward(
        &self,
        input_ids: Tensor<2, Int>,
        mask: Tensor<2>,
        kernels: KernelPath,
    ) -> Result<Tensor<3>, ModelError> {
        let [batch, seq] = input_ids.dims();
        let [positions, _] = self.embeddings.position_embeddings.weight.dims();
        if batch == 0 || seq == 0 || seq > positions {
            return Err(ModelError::Input(format!(
                "encoder input of shape [{batch}, {seq}]: need a non-empty batch of at most \
                 {positions} tokens"
            )));
        }
        if mask.dims() != [batch, seq] {
            return Err(ModelError::Input(format!(
                "attention mask {:?} for input ids [{batch}, {seq}]",
                mask.dims()
            )));
        }

        let mut hidden = self.embeddings.forward(input_ids);
        for layer in &self.encoder.layer {
            hidden = layer.forward(hidden, mask.clone(), kernels)?;
        }

        let [_, width] = hidden.dims();
        Ok(hidden.reshape([batch, seq, width]))
    }
}

impl Embeddings {
    /// `[batch, seq]` ids -> `[batch * seq, hidden]` normalised embeddings.
    fn forward(&self, input_ids: Tensor<2, Int>) -> Tensor<2> {
        let [batch, seq] = input_ids.dims();
        let words = self.word_embeddings.forward(input_ids);
        let [_, _, hidden] = words.dims();

        // Positions 0..seq and token type 0 for every token (single-segment inputs), taken
        // straight from the tables and broadcast instead of looked up per token.
        let positions = self.position_embeddings.weight.val().narrow(0, 0, seq);
        let token_type = self.token_type_embeddings.weight.val().narrow(0, 0, 1);
        let summed = words + token_type.unsqueeze::<3>() + positions.unsqueeze::<3>();

        self.layer_norm
            .forward(summed)
            .reshape([batch * seq, hidden])
    }
}

impl Layer {
    fn forward(
        &self,
        x: Tensor<2>,
        mask: Tensor<2>,
        kernels: KernelPath,
    ) -> Result<Tensor<2>, ModelError> {
        // Attention block.
        let attention = &self.attention;
        let context = attention.self_attention.forward(x.clone(), mask, kernels)?;
        let x = attention.output.forward(context, x, kernels)?;

        // Feed-forward block.
        let intermediate = kernels.linear_gelu(&self.intermediate.dense, x.clone())?;
        self.output.forward(intermediate, x, kernels)
    }
}

impl ResidualOutput {
    /// `layer_norm(dense(x) + residual)`.
    fn forward(
        &self,
        x: Tensor<2>,
        residual: Tensor<2>,
        kernels: KernelPath,
    ) -> Result<Tensor<2>, ModelError> {
        kernels.add_layer_norm(self.dense.forward(x), residual, &self.layer_norm, self.eps)
    }
}

impl SelfAttention {
    /// `[batch * seq, hidden]` -> attention context, same shape, before the output projection.
    fn forward(
        &self,
        x: Tensor<2>,
        mask: Tensor<2>,
        kernels: KernelPath,
    ) -> Result<Tensor<2>, ModelError> {
        let query = self.query.forward(x.clone());
        let key = self.key.forward(x.clone());
        let value = self.value.forward(x);
        kernels.attention(query, key, value, mask, self.num_heads)
    }
}
