//! Word-piece tokenisation with the Hugging Face `tokenizers` crate, configured the way
//! sentence-transformers runs the model.
//!
//! `tokenizer.json` of all-MiniLM-L6-v2 asks for truncation at 128 tokens and fixed padding to
//! 128. sentence-transformers overrides both: it truncates at `max_seq_length` (256, from
//! `sentence_bert_config.json`) and pads per batch. Loading the file as it is would embed long
//! texts differently from the reference (cosine 0.964 on a 256-token text), so both settings
//! are replaced here. Padding is left to the encoder, which builds the attention mask itself.

use std::path::Path;

use tokenizers::{TruncationDirection, TruncationParams, TruncationStrategy};

use crate::error::ModelError;

/// The token ids of one text, `[CLS]` and `[SEP]` included, ready for
/// [`Embedder::embed_tokens`](crate::Embedder::embed_tokens).
///
/// Only [`Tokenizer::tokenize`] and [`Embedder::tokens_from_ids`] create these, so the ids
/// always come from the model's own vocabulary and respect its length limit.
///
/// [`Embedder::tokens_from_ids`]: crate::Embedder::tokens_from_ids
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens {
    ids: Vec<u32>,
    truncated: bool,
}

impl Tokens {
    /// Ids from elsewhere than the tokenizer; [`Embedder::tokens_from_ids`] checks them.
    ///
    /// [`Embedder::tokens_from_ids`]: crate::Embedder::tokens_from_ids
    pub(crate) fn from_ids(ids: Vec<u32>) -> Self {
        Self {
            ids,
            truncated: false,
        }
    }

    /// The token ids.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// Number of tokens, special tokens included: the unit a batching queue counts.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Always false: even the empty text has `[CLS]` and `[SEP]`.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Whether the text was longer than the model's limit and its tail was dropped.
    pub fn truncated(&self) -> bool {
        self.truncated
    }
}

/// A `tokenizer.json` tokenizer with padding off and truncation at the model's limit.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    max_tokens: usize,
}

impl Tokenizer {
    /// Loads `tokenizer.json` from `model_dir`, truncating at `max_tokens`.
    ///
    /// # Errors
    ///
    /// [`ModelError::MissingFile`] if the file is absent, [`ModelError::Tokenizer`] if it
    /// cannot be parsed or configured.
    pub fn load(model_dir: &Path, max_tokens: usize) -> Result<Self, ModelError> {
        let path = model_dir.join("tokenizer.json");
        if !path.is_file() {
            return Err(ModelError::MissingFile { path });
        }
        let mut inner = tokenizers::Tokenizer::from_file(&path).map_err(|err| {
            ModelError::Tokenizer(format!("cannot load {}: {err}", path.display()))
        })?;

        // Replace the file's own padding (fixed, 128) and truncation (128) settings; see the
        // module docs for why.
        inner.with_padding(None);
        inner
            .with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length: max_tokens,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            }))
            .map_err(|err| ModelError::Tokenizer(format!("cannot set truncation: {err}")))?;

        Ok(Self { inner, max_tokens })
    }

    /// The truncation limit in tokens.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Tokenises each text on its own (no padding), adding `[CLS]` and `[SEP]`.
    ///
    /// # Errors
    ///
    /// [`ModelError::Tokenizer`] if the tokenizer fails on an input.
    pub fn tokenize(&self, texts: &[&str]) -> Result<Vec<Tokens>, ModelError> {
        texts
            .iter()
            .map(|text| {
                let encoding = self
                    .inner
                    .encode(*text, true)
                    .map_err(|err| ModelError::Tokenizer(err.to_string()))?;
                Ok(Tokens {
                    truncated: !encoding.get_overflowing().is_empty(),
                    ids: encoding.get_ids().to_vec(),
                })
            })
            .collect()
    }
}
