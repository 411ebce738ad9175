//! Model configuration read from the sentence-transformers model directory.
//!
//! Three files matter: `config.json` (the BERT architecture), `sentence_bert_config.json` (the
//! sequence length the embedding model was trained with) and `1_Pooling/config.json` (how token
//! vectors become one sentence vector). This module parses them and refuses configurations the
//! encoder in [`crate::bert`] does not implement, rather than computing something else quietly.

use std::path::Path;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::ModelError;

/// The architecture fields of a Hugging Face BERT `config.json`.
///
/// Unknown fields are ignored; the ones below are all the encoder needs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BertConfig {
    /// Size of the word-piece vocabulary.
    pub vocab_size: usize,
    /// Width of every hidden state.
    pub hidden_size: usize,
    /// Number of transformer layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer; must divide `hidden_size`.
    pub num_attention_heads: usize,
    /// Width of the feed-forward block.
    pub intermediate_size: usize,
    /// Activation of the feed-forward block; only `gelu` (the erf form) is implemented.
    pub hidden_act: String,
    /// Number of learned positions; bounds the sequence length.
    pub max_position_embeddings: usize,
    /// Number of token types (segments).
    pub type_vocab_size: usize,
    /// Epsilon of every layer norm.
    pub layer_norm_eps: f64,
    /// Only `absolute` position embeddings are implemented.
    #[serde(default = "absolute")]
    pub position_embedding_type: String,
}

fn absolute() -> String {
    "absolute".to_string()
}

/// `sentence_bert_config.json`.
#[derive(Debug, Clone, Deserialize)]
struct SentenceBertConfig {
    max_seq_length: usize,
}

/// `1_Pooling/config.json`.
#[derive(Debug, Clone, Deserialize)]
struct PoolingConfig {
    word_embedding_dimension: usize,
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
}

/// Everything the embedder needs to know about a model directory, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// The encoder architecture.
    pub bert: BertConfig,
    /// Longest input in tokens, `[CLS]` and `[SEP]` included. Longer inputs are truncated.
    pub max_seq_length: usize,
}

impl ModelConfig {
    /// Reads and validates the configuration files of `model_dir`.
    ///
    /// # Errors
    ///
    /// [`ModelError::MissingFile`] for an absent file, [`ModelError::Config`] for malformed JSON
    /// or a model this crate cannot run (another activation, pooling mode or position scheme).
    pub fn load(model_dir: &Path) -> Result<Self, ModelError> {
        let bert_path = model_dir.join("config.json");
        let bert: BertConfig = read_json(&bert_path)?;
        let sentence: SentenceBertConfig = read_json(&model_dir.join("sentence_bert_config.json"))?;
        let pooling_path = model_dir.join("1_Pooling").join("config.json");
        let pooling: PoolingConfig = read_json(&pooling_path)?;

        // The architecture.
        let invalid = |message: String| ModelError::Config {
            path: bert_path.clone(),
            message,
        };
        if bert.hidden_act != "gelu" {
            return Err(invalid(format!(
                "hidden_act {:?} is not supported (only \"gelu\")",
                bert.hidden_act
            )));
        }
        if bert.position_embedding_type != "absolute" {
            return Err(invalid(format!(
                "position_embedding_type {:?} is not supported (only \"absolute\")",
                bert.position_embedding_type
            )));
        }
        if bert.num_attention_heads == 0
            || !bert.hidden_size.is_multiple_of(bert.num_attention_heads)
        {
            return Err(invalid(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                bert.hidden_size, bert.num_attention_heads
            )));
        }
        if bert.type_vocab_size == 0 || bert.num_hidden_layers == 0 {
            return Err(invalid(
                "type_vocab_size and num_hidden_layers must be > 0".into(),
            ));
        }

        // The sentence-level settings.
        if sentence.max_seq_length < 2 || sentence.max_seq_length > bert.max_position_embeddings {
            return Err(ModelError::Config {
                path: model_dir.join("sentence_bert_config.json"),
                message: format!(
                    "max_seq_length {} must be in 2..={} (max_position_embeddings)",
                    sentence.max_seq_length, bert.max_position_embeddings
                ),
            });
        }
        let mean_only = pooling.pooling_mode_mean_tokens
            && !pooling.pooling_mode_cls_token
            && !pooling.pooling_mode_max_tokens
            && !pooling.pooling_mode_mean_sqrt_len_tokens;
        if !mean_only || pooling.word_embedding_dimension != bert.hidden_size {
            return Err(ModelError::Config {
                path: pooling_path,
                message: format!(
                    "only mean pooling over {} dimensions is supported",
                    bert.hidden_size
                ),
            });
        }

        Ok(Self {
            bert,
            max_seq_length: sentence.max_seq_length,
        })
    }
}

fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, ModelError> {
    let text = std::fs::read_to_string(path).map_err(|err| ModelError::io(path, err))?;
    serde_json::from_str(&text).map_err(|err| ModelError::Config {
        path: path.to_path_buf(),
        message: err.to_string(),
    })
}
