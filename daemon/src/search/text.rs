//! The text an item is embedded from: a canvas's title and the words inside its document, an
//! asset's file name, tags and description.
//!
//! A canvas document is the client's own JSON, so its text is found by shape rather than by
//! schema: a string under a key that usually holds words (`text`, `title`, `caption`,
//! `altText`, ...) is taken whole; a string under any other key is taken only when it reads
//! like words (two or more, with letters), which keeps ids, colours, URLs, enum values
//! (`"multiply"`, `"center"`) and path data out. Strings come depth first, in key order (the
//! parsed object's, which is sorted): reordering a document's keys does not change its text.
//!
//! The model reads at most 256 tokens, so the text is cut at [`MAX_TEXT_CHARS`]. Its SHA-256
//! tells whether a stored vector is still the item's: a change of this extraction changes the
//! hashes, and a start recomputes what it affects.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::store::search::{Source, SourceFields};

/// Longest text embedded, in characters: well past the 256 tokens the model reads.
pub const MAX_TEXT_CHARS: usize = 4000;
/// Longest snippet served with a hit, in characters.
pub const SNIPPET_CHARS: usize = 160;

/// Keys whose string values are text, compared in lower case. Keys ending in `text`, `title`,
/// `label`, `caption` or `description` count too (`altText`, `subtitle`, `ctaLabel`).
const TEXT_KEYS: &[&str] = &[
    "alt",
    "body",
    "caption",
    "characters",
    "comment",
    "content",
    "description",
    "heading",
    "keywords",
    "label",
    "name",
    "note",
    "notes",
    "placeholder",
    "subject",
    "summary",
    "tags",
    "text",
    "title",
];
const TEXT_KEY_SUFFIXES: &[&str] = &["text", "title", "label", "caption", "description"];

/// Keys whose values are never text, whatever they look like.
const SKIP_KEYS: &[&str] = &[
    "blendmode",
    "class",
    "classname",
    "color",
    "colour",
    "d",
    "fill",
    "fontfamily",
    "format",
    "guid",
    "href",
    "id",
    "kind",
    "mime",
    "path",
    "points",
    "src",
    "stroke",
    "style",
    "transform",
    "type",
    "uri",
    "url",
    "uuid",
];

/// What an item is indexed under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemText {
    /// The text the model embeds.
    pub text: String,
    /// Lower-case hex SHA-256 of `text`.
    pub hash: String,
    /// The start of `text` on one line.
    pub snippet: String,
}

impl ItemText {
    fn new(parts: Vec<String>) -> ItemText {
        let mut text = parts.join("\n");
        if let Some((cut, _)) = text.char_indices().nth(MAX_TEXT_CHARS) {
            text.truncate(cut);
        }
        let hash = hex(&Sha256::digest(text.as_bytes()));
        let snippet = snippet(&text);
        ItemText {
            text,
            hash,
            snippet,
        }
    }
}

/// The text of an item as stored now.
pub fn of(source: &Source) -> ItemText {
    match &source.fields {
        SourceFields::Canvas { title, document } => canvas(title, document),
        SourceFields::Asset {
            file_name,
            tags,
            description,
        } => asset(file_name, tags, description),
    }
}

/// A canvas's title, then the words of its document.
pub fn canvas(title: &str, document: &str) -> ItemText {
    let mut parts = Vec::new();
    push_part(&mut parts, title);
    // The API stores only JSON objects; an unreadable one still has its title indexed.
    if let Ok(document) = serde_json::from_str::<Value>(document) {
        let mut budget = MAX_TEXT_CHARS;
        collect(&document, None, &mut parts, &mut budget);
    }
    ItemText::new(parts)
}

/// An asset's file name, tags and description.
pub fn asset(file_name: &str, tags: &[String], description: &str) -> ItemText {
    let mut parts = Vec::new();
    push_part(&mut parts, file_name);
    push_part(&mut parts, &tags.join(", "));
    push_part(&mut parts, description);
    ItemText::new(parts)
}

/// Walks `value` depth first, adding the strings that are text; stops once `budget`
/// characters are taken (the rest would be cut anyway).
fn collect(value: &Value, key: Option<&str>, parts: &mut Vec<String>, budget: &mut usize) {
    if *budget == 0 {
        return;
    }
    match value {
        Value::String(text) => {
            let taken = match key.map(key_class) {
                Some(KeyClass::Skip) => false,
                Some(KeyClass::Text) => has_words(text, 1),
                Some(KeyClass::Other) | None => has_words(text, 2) && !looks_like_url(text),
            };
            if taken {
                let before = parts.len();
                push_part(parts, text);
                if let Some(part) = parts.get(before) {
                    *budget = budget.saturating_sub(part.chars().count() + 1);
                }
            }
        }
        // An array's strings belong to the array's key: `"tags": ["logo", "dark"]`.
        Value::Array(items) => {
            for item in items {
                collect(item, key, parts, budget);
            }
        }
        Value::Object(fields) => {
            for (name, field) in fields {
                collect(field, Some(name), parts, budget);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyClass {
    Text,
    Skip,
    Other,
}

fn key_class(key: &str) -> KeyClass {
    let lower = key.to_ascii_lowercase();
    // `layerId`, `owner_id`, `asset-id`; not `grid` or `paid`.
    let names_an_id = key.ends_with("Id") || lower.ends_with("_id") || lower.ends_with("-id");
    if TEXT_KEYS.contains(&lower.as_str())
        || TEXT_KEY_SUFFIXES
            .iter()
            .any(|suffix| lower.ends_with(suffix))
    {
        KeyClass::Text
    } else if SKIP_KEYS.contains(&lower.as_str()) || names_an_id {
        KeyClass::Skip
    } else {
        KeyClass::Other
    }
}

/// Whether `text` holds at least `words` whitespace-separated words with a letter or digit.
fn has_words(text: &str, words: usize) -> bool {
    text.split_whitespace()
        .filter(|word| word.chars().any(char::is_alphanumeric))
        .take(words)
        .count()
        == words
}

fn looks_like_url(text: &str) -> bool {
    let text = text.trim_start().to_ascii_lowercase();
    ["http://", "https://", "data:", "blob:", "file:"]
        .iter()
        .any(|scheme| text.starts_with(scheme))
}

/// Adds `text` with its white space collapsed, unless nothing is left of it.
fn push_part(parts: &mut Vec<String>, text: &str) {
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if !collapsed.is_empty() {
        parts.push(collapsed);
    }
}

fn snippet(text: &str) -> String {
    let line = text.replace('\n', " · ");
    match line.char_indices().nth(SNIPPET_CHARS) {
        Some((cut, _)) => format!("{}…", line[..cut].trim_end()),
        None => line,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_canvas_gives_its_title_and_the_words_of_its_document() {
        let document = r##"{
            "background": {"color": "#0b1f3a", "image": "https://cdn.example/bg.png"},
            "layers": [
                {"id": "l1", "type": "text", "text": "Summer sale", "font": {"family": "Inter"}},
                {"id": "l2", "type": "image", "src": "blob:abc", "altText": "A surfer at dusk"},
                {"id": "l3", "type": "shape", "blendMode": "multiply", "d": "M0 0 L10 10 Z"},
                {"type": "group", "children": [{"type": "text", "characters": "50%"}]},
                {"note": "  ask   legal  about the claim  ", "align": "center"},
                {"tags": ["hero", "beach"], "layerId": "d7c1 9a2e"}
            ],
            "meta": {"owner_id": "u-1", "campaign": "Back to school in style"}
        }"##;
        let text = canvas("Hero banner", document);

        assert_eq!(
            text.text,
            "Hero banner\nSummer sale\nA surfer at dusk\n50%\nask legal about the claim\n\
             hero\nbeach\nBack to school in style"
        );
        assert_eq!(
            text.snippet,
            "Hero banner · Summer sale · A surfer at dusk · 50% · ask legal about the claim · \
             hero · beach · Back to school in style"
        );
        assert_eq!(text.hash.len(), 64);
    }

    #[test]
    fn the_same_text_hashes_the_same_and_a_change_of_words_changes_it() {
        let one = canvas("Hero", r#"{"layers": [{"text": "Hello"}], "x": 1}"#);
        // Geometry and key order do not change the text, so the vector stays.
        let moved = canvas("Hero", r#"{"x": 2, "layers": [{"text": "Hello"}]}"#);
        let reworded = canvas("Hero", r#"{"layers": [{"text": "Goodbye"}], "x": 1}"#);

        assert_eq!(one.hash, moved.hash);
        assert_ne!(one.hash, reworded.hash);
        assert_ne!(
            one.hash,
            canvas("Hero 2", r#"{"layers": [{"text": "Hello"}]}"#).hash
        );
    }

    #[test]
    fn long_texts_are_cut_and_snippets_are_short() {
        let words = vec!["lorem ipsum"; 1000].join(" ");
        let document = serde_json::json!({ "text": words, "more": { "caption": words } });
        let text = canvas("Long", &document.to_string());

        assert_eq!(text.text.chars().count(), MAX_TEXT_CHARS);
        assert_eq!(text.snippet.chars().count(), SNIPPET_CHARS + 1);
        assert!(text.snippet.ends_with('…'));
    }

    #[test]
    fn an_asset_gives_its_file_name_tags_and_description() {
        let tags = vec!["logo".to_string(), "dark".to_string()];
        let text = asset("brand-mark.svg", &tags, "The  mark on\na dark ground");
        assert_eq!(
            text.text,
            "brand-mark.svg\nlogo, dark\nThe mark on a dark ground"
        );

        let bare = asset("a.png", &[], "");
        assert_eq!(bare.text, "a.png");
        assert_eq!(bare.snippet, "a.png");
    }

    #[test]
    fn an_unreadable_document_still_gives_the_title() {
        assert_eq!(canvas("Only the title", "not json").text, "Only the title");
    }
}
