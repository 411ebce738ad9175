//! [`Embedder`]: a loaded model on a device, turning texts or token ids into sentence vectors.
//!
//! The daemon's batching queue is expected to call [`Embedder::tokenize`] when a request
//! arrives (to count tokens), group requests, and call [`Embedder::embed_tokens`] once per
//! batch from a dedicated worker thread. The embedder is `Send` so it can move to that thread;
//! it is used through `&self`, one batch at a time.

use std::path::Path;
use std::time::Instant;

use burn::tensor::{Int, Tensor, TensorData};

use crate::bert::BertModel;
use crate::config::ModelConfig;
use crate::device::{BackendKind, ComputeDevice, DeviceChoice, DeviceInfo};
use crate::error::ModelError;
use crate::kernels::KernelPath;
use crate::tokenize::{Tokenizer, Tokens};

/// Largest attention-score tensor (`batch * heads * seq * seq` f32 values) one forward pass
/// may build: 16 Mi values = 64 MiB, half of lavapipe's 128 MiB storage-binding limit. Larger
/// batches are split into consecutive passes; 32 sequences of 256 tokens is 25 Mi values and
/// runs as two. Only burn's reference attention materialises the scores (the WGSL kernel
/// keeps one row at a time), but the same bound keeps the wgpu path's feed-forward
/// activations under the binding limit too.
const MAX_SCORE_ELEMENTS: usize = 16 * 1024 * 1024;

/// The `[PAD]` id. Its embedding never reaches the output (padded positions are masked out of
/// attention and pooling), so any valid id would do.
const PAD_ID: i32 = 0;

/// What a loaded model is and where it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbedderInfo {
    /// Model name: the model directory's name (e.g. `all-MiniLM-L6-v2`).
    pub model: String,
    /// Embedding dimensions.
    pub dims: usize,
    /// Longest input in tokens, `[CLS]` and `[SEP]` included; longer texts are truncated.
    pub max_tokens: usize,
    /// The device the model runs on.
    pub device: DeviceInfo,
}

/// A sentence-embedding model loaded on a device.
pub struct Embedder {
    model: BertModel,
    tokenizer: Tokenizer,
    device: ComputeDevice,
    kernels: KernelPath,
    vocab_size: usize,
    num_heads: usize,
    info: EmbedderInfo,
}

impl Embedder {
    /// Loads the model in `model_dir` (a directory laid out by `models/fetch.sh`) onto the
    /// device picked by `device`.
    ///
    /// This does not hash the files; call [`Manifest::verify`](crate::Manifest::verify) first
    /// to detect corruption.
    ///
    /// # Errors
    ///
    /// [`ModelError::MissingFile`] naming the first absent file, [`ModelError::Config`],
    /// [`ModelError::Tokenizer`] or [`ModelError::Weights`] for unusable files, and
    /// [`ModelError::Device`] when the requested device cannot be opened.
    pub fn load(model_dir: &Path, device: DeviceChoice) -> Result<Self, ModelError> {
        let started = Instant::now();
        if !model_dir.is_dir() {
            return Err(ModelError::MissingFile {
                path: model_dir.to_path_buf(),
            });
        }

        // Configuration and tokenizer (cheap, and they fail fast on a broken directory).
        let config = ModelConfig::load(model_dir)?;
        let tokenizer = Tokenizer::load(model_dir, config.max_seq_length)?;

        // Device, then the weights onto it.
        let device = ComputeDevice::open(device)?;
        let mut model = BertModel::new(&config.bert, device.device());
        model.load_weights(&model_dir.join("model.safetensors"))?;
        let kernels = match device.backend() {
            BackendKind::Wgpu => KernelPath::Wgsl,
            BackendKind::Cpu => KernelPath::Burn,
        };

        let model_name = model_dir.file_name().map_or_else(
            || model_dir.display().to_string(),
            |name| name.to_string_lossy().into_owned(),
        );
        let info = EmbedderInfo {
            model: model_name,
            dims: config.bert.hidden_size,
            max_tokens: config.max_seq_length,
            device: device.info().clone(),
        };
        tracing::info!(
            model = %info.model,
            device = %info.device,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "embedding model loaded"
        );

        Ok(Self {
            model,
            tokenizer,
            device,
            kernels,
            vocab_size: config.bert.vocab_size,
            num_heads: config.bert.num_attention_heads,
            info,
        })
    }

    /// The device the model runs on.
    pub fn device(&self) -> &ComputeDevice {
        &self.device
    }

    /// What the model is and where it runs.
    pub fn info(&self) -> &EmbedderInfo {
        &self.info
    }

    /// Tokenises texts without padding, truncating each at [`EmbedderInfo::max_tokens`].
    ///
    /// # Errors
    ///
    /// [`ModelError::Tokenizer`] if the tokenizer fails on an input.
    pub fn tokenize(&self, texts: &[&str]) -> Result<Vec<Tokens>, ModelError> {
        self.tokenizer.tokenize(texts)
    }

    /// Embeds one batch: pads it internally, runs the encoder with an attention mask, mean-pools
    /// over the real tokens and L2-normalises. Returns one vector of [`EmbedderInfo::dims`]
    /// values per input, in input order.
    ///
    /// Results do not depend on how inputs are batched (beyond float rounding, well under
    /// 1e-5). A batch whose attention scores would exceed 64 MiB is run as several passes.
    ///
    /// # Errors
    ///
    /// [`ModelError::Input`] for token sequences this model cannot take (empty, too long, ids
    /// outside the vocabulary), [`ModelError::Inference`] if the device fails.
    pub fn embed_tokens(&self, batch: &[Tokens]) -> Result<Vec<Vec<f32>>, ModelError> {
        for (index, tokens) in batch.iter().enumerate() {
            self.check_tokens(tokens)
                .map_err(|reason| ModelError::Input(format!("input {index} {reason}")))?;
        }

        // Split so that no pass builds an oversized attention tensor. Sequences are padded to
        // the longest in their pass, so splitting never changes a result.
        let mut embeddings = Vec::with_capacity(batch.len());
        let mut start = 0;
        while start < batch.len() {
            let mut end = start + 1;
            let mut longest = batch[start].len();
            while end < batch.len() {
                let longest_with_next = longest.max(batch[end].len());
                let elements = (end + 1 - start) * self.num_heads * longest_with_next.pow(2);
                if elements > MAX_SCORE_ELEMENTS {
                    break;
                }
                longest = longest_with_next;
                end += 1;
            }
            embeddings.extend(self.embed_pass(&batch[start..end], longest)?);
            start = end;
        }
        Ok(embeddings)
    }

    /// Takes token ids that a client computed itself, `[CLS]` and `[SEP]` included, after the
    /// checks tokenizer output passes: not empty, within the length limit (no truncation: a
    /// client sending ids expects exactly those), every id in the vocabulary.
    ///
    /// # Errors
    ///
    /// [`ModelError::Input`] saying what is wrong with the ids.
    pub fn tokens_from_ids(&self, ids: &[u32]) -> Result<Tokens, ModelError> {
        let tokens = Tokens::from_ids(ids.to_vec());
        self.check_tokens(&tokens)
            .map_err(|reason| ModelError::Input(format!("the token ids {reason}")))?;
        Ok(tokens)
    }

    /// Tokenises and embeds texts in one batch.
    ///
    /// # Errors
    ///
    /// As [`Embedder::tokenize`] and [`Embedder::embed_tokens`].
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, ModelError> {
        let tokens = self.tokenize(texts)?;
        self.embed_tokens(&tokens)
    }

    /// Why this model cannot take `tokens`, if it cannot.
    fn check_tokens(&self, tokens: &Tokens) -> Result<(), String> {
        let len = tokens.len();
        if len == 0 || len > self.info.max_tokens {
            return Err(format!(
                "has {len} tokens, expected 1..={}",
                self.info.max_tokens
            ));
        }
        if let Some(id) = tokens
            .ids()
            .iter()
            .find(|&&id| id as usize >= self.vocab_size)
        {
            return Err(format!(
                "has token id {id}, outside the vocabulary of {}",
                self.vocab_size
            ));
        }
        Ok(())
    }

    /// One forward pass over `batch`, padded to `seq` tokens.
    fn embed_pass(&self, batch: &[Tokens], seq: usize) -> Result<Vec<Vec<f32>>, ModelError> {
        let started = Instant::now();
        let size = batch.len();
        let device = self.device.device();

        // Padded ids and the matching mask, row-major [size, seq].
        let mut ids = Vec::with_capacity(size * seq);
        let mut mask = Vec::with_capacity(size * seq);
        for tokens in batch {
            // Ids are below the vocabulary size (checked), which fits in i32.
            ids.extend(tokens.ids().iter().map(|&id| id as i32));
            ids.resize(ids.len() + seq - tokens.len(), PAD_ID);
            mask.extend(std::iter::repeat_n(1.0f32, tokens.len()));
            mask.resize(mask.len() + seq - tokens.len(), 0.0);
        }
        let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [size, seq]), device);
        let mask = Tensor::<2>::from_data(TensorData::new(mask, [size, seq]), device);

        // Encoder, pooling, read-back.
        let hidden = self.model.forward(ids, mask.clone(), self.kernels)?;
        let pooled = self.kernels.mean_pool_normalize(hidden, mask)?;
        let values = pooled
            .try_into_data()
            .map_err(|err| ModelError::Inference(format!("reading embeddings failed: {err}")))?
            .try_into_vec::<f32>()
            .map_err(|err| ModelError::Inference(format!("unexpected embedding data: {err:?}")))?;

        tracing::debug!(
            batch = size,
            seq,
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "embedded batch"
        );
        Ok(values
            .chunks_exact(self.info.dims)
            .map(<[f32]>::to_vec)
            .collect())
    }
}
