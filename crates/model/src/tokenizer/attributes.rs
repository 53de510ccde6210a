//! llama.cpp's name-based corrections to token types, applied when it loads a vocabulary.
//!
//! GGUF files carry a type per token but no strip flags, and converters get types wrong, so
//! llama.cpp's loader (`llama_vocab::impl::load`) re-types tokens by their text and sets
//! strip flags by model name. Tokenization depends on both (a control token is matched only
//! with `parse_special`; a right-stripping one eats the whitespace after it), so they are
//! reproduced here.

use super::vocab::{TokenType, Vocab};

/// Texts llama.cpp makes control tokens: end of generation/turn and fill-in-the-middle markers.
const CONTROL_TEXTS: &[&str] = &[
    // end of generation (llama.cpp's EOG list, which includes its EOT and EOM names)
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>", "<end_of_turn>", "<|endoftext|>", "</s>",
    "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
    "<\u{ff5c}end\u{2581}of\u{2581}sentence\u{ff5c}>", "[e~[",
    // fill in the middle
    "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<\u{ff5c}fim\u{2581}begin\u{ff5c}>", "<PRE>", "\u{2581}<PRE>", "<|code_prefix|>", "<|prefix|>",
    "<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<\u{ff5c}fim\u{2581}hole\u{ff5c}>", "<SUF>", "\u{2581}<SUF>", "<|code_suffix|>", "<|suffix|>",
    "<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<\u{ff5c}fim\u{2581}end\u{ff5c}>", "<MID>", "\u{2581}<MID>", "<|code_middle|>", "<|middle|>",
    "<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]", "<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>", "<|file_sep|>",
];

/// gpt-oss markers llama.cpp always renders (user-defined whatever the file says).
const USER_DEFINED_TEXTS: &[&str] = &["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"];

/// Whitespace a special token removes from the text beside it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Strip {
    pub left: bool,
    pub right: bool,
}

/// The token types llama.cpp ends up with, and the strip flags it sets, by token id.
pub(crate) fn llama_cpp_types(vocab: &Vocab) -> (Vec<TokenType>, Vec<Strip>) {
    let mut types = vocab.types.clone();
    let id_of = |text: &str| vocab.tokens.iter().rposition(|t| t == text);
    let has = |text: &str| id_of(text).is_some();
    for (ty, text) in types.iter_mut().zip(&vocab.tokens) {
        if CONTROL_TEXTS.contains(&text.as_str()) {
            *ty = TokenType::Control;
        }
        if USER_DEFINED_TEXTS.contains(&text.as_str()) {
            *ty = TokenType::UserDefined;
        }
    }
    // gpt-oss / solar-open: `<|end|>` ends a message, not generation, and stays visible.
    let call = has("<|call|>") || has("<|calls|>");
    if let Some(end) = id_of("<|end|>").filter(|_| call && (has("<|return|>") || has("<|flush|>"))) {
        types[end] = TokenType::UserDefined;
    }
    // gemma4 / plamo: `</s>` is an ordinary token there.
    let plamo_eos = vocab.eos.is_some_and(|id| vocab.tokens[id as usize] == "<|plamo:eos|>");
    if let Some(s) = id_of("</s>").filter(|_| has("<|tool_response>") || plamo_eos) {
        types[s] = TokenType::Normal;
    }

    let mut strip = vec![Strip::default(); types.len()];
    let name = vocab.general_name.to_lowercase();
    let lstrip_mask = ["jina-v2-de", "jina-v2-es", "jina-v2-code", "mmbert"].iter().any(|p| vocab.pre.contains(p))
        || ["nomic-bert-moe", "jina-bert-v3"].iter().any(|a| vocab.architecture.contains(a));
    if lstrip_mask {
        if let Some(id) = id_of("<mask>") {
            strip[id].left = true;
        }
    } else if name.contains("phi-3") || name.contains("phi3") {
        for (s, ty) in strip.iter_mut().zip(&types) {
            s.right = matches!(ty, TokenType::Control | TokenType::UserDefined | TokenType::Unknown);
        }
        if let Some(id) = id_of("</s>") {
            strip[id].right = true;
        }
        for id in ["<unk>", "<s>", "<|endoftext|>"].into_iter().filter_map(id_of) {
            strip[id].right = false;
        }
    } else if name.contains("modern-bert") {
        if let Some(id) = id_of("[MASK]") {
            strip[id].left = true;
        }
    }
    (types, strip)
}
