//! Tokenisation matches sentence-transformers exactly.

mod common;

use nexus_models::config::ModelConfig;
use nexus_models::tokenize::Tokenizer;

fn tokenizer() -> Tokenizer {
    let dir = common::model_dir();
    let config = ModelConfig::load(&dir).expect("model config");
    Tokenizer::load(&dir, config.max_seq_length).expect("tokenizer")
}

/// The limit comes from sentence_bert_config.json (256), not tokenizer.json's own 128.
#[test]
fn max_tokens_is_sentence_transformers_limit() {
    assert_eq!(tokenizer().max_tokens(), 256);
}

/// Every reference case gives exactly the reference token ids.
#[test]
fn token_ids_match_reference_for_all_cases() {
    let tokenizer = tokenizer();
    let texts: Vec<&str> = common::cases()
        .iter()
        .map(|case| case.text.as_str())
        .collect();
    let tokens = tokenizer.tokenize(&texts).expect("tokenize");

    let mismatches: Vec<String> = common::cases()
        .iter()
        .zip(&tokens)
        .filter(|(case, tokens)| tokens.ids() != case.token_ids.as_slice())
        .map(|(case, tokens)| {
            format!(
                "{:?}: got {:?}, want {:?}",
                case.text,
                tokens.ids(),
                case.token_ids
            )
        })
        .collect();
    assert!(
        mismatches.is_empty(),
        "token id mismatches:\n{}",
        mismatches.join("\n")
    );
}

/// A text over the limit is cut to 256 tokens ending in [SEP] and flagged; others are not.
#[test]
fn long_text_is_truncated_and_flagged() {
    let tokenizer = tokenizer();
    let long = "brand guidelines ".repeat(300);
    let tokens = tokenizer
        .tokenize(&[long.as_str(), "logo"])
        .expect("tokenize");

    assert_eq!(tokens[0].len(), 256);
    assert_eq!(tokens[0].ids().first(), Some(&101));
    assert_eq!(tokens[0].ids().last(), Some(&102));
    assert!(tokens[0].truncated());
    assert_eq!(tokens[1].ids(), [101, 8154, 102]);
    assert!(!tokens[1].truncated());
}

/// Padding is off: each text keeps its own length inside one call.
#[test]
fn no_padding_between_texts() {
    let tokens = tokenizer()
        .tokenize(&["", "logo", "Primary logo on a white background"])
        .unwrap();
    let lengths: Vec<usize> = tokens.iter().map(|t| t.len()).collect();
    assert_eq!(lengths, [2, 3, 8]);
}
