//! The tokenizer half of GGUF metadata (`tokenizer.ggml.*`), read once into plain owned data.
//!
//! Keeping this separate from building the `tokenizers` pipeline lets unit tests construct a
//! vocabulary by hand, and keeps every GGUF quirk (missing keys, out-of-range ids, defaults
//! that depend on the model type) in one place.

use crate::gguf::GgufFile;

use super::TokenizerError;

/// Which tokenization algorithm the vocabulary was trained for (`tokenizer.ggml.model`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VocabKind {
    /// `gpt2`: byte-level BPE with merges and a regex pre-tokenizer.
    BytePairBpe,
    /// `llama`: SentencePiece BPE with scores, `▁` for spaces and `<0xNN>` byte fallback.
    SentencePiece,
    /// `gemma4`: BPE with merges over raw UTF-8, `▁` for spaces and `<0xNN>` byte fallback.
    Gemma4,
}

/// `tokenizer.ggml.token_type`, as llama.cpp numbers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenType {
    Normal,
    Unknown,
    /// Chat/control markers (`<|im_start|>`, `<s>`): matched in text, hidden by `skip_special`.
    Control,
    /// Added tokens that are always matched in text and always rendered.
    UserDefined,
    Unused,
    /// `<0xNN>`: one raw byte.
    Byte,
    Undefined,
}

impl TokenType {
    fn from_gguf(v: i64) -> TokenType {
        match v {
            1 => TokenType::Normal,
            2 => TokenType::Unknown,
            3 => TokenType::Control,
            4 => TokenType::UserDefined,
            5 => TokenType::Unused,
            6 => TokenType::Byte,
            _ => TokenType::Undefined,
        }
    }
}

/// Everything the tokenizer needs from the model file.
#[derive(Debug, Clone)]
pub struct Vocab {
    pub kind: VocabKind,
    /// `tokenizer.ggml.pre`; empty when absent (llama.cpp then uses its `default` regexes).
    pub pre: String,
    pub tokens: Vec<String>,
    pub types: Vec<TokenType>,
    /// SentencePiece piece scores; empty for BPE vocabularies.
    pub scores: Vec<f32>,
    /// BPE merges as `"left right"`; empty for SentencePiece vocabularies.
    pub merges: Vec<String>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eot: Option<u32>,
    pub eom: Option<u32>,
    pub unk: Option<u32>,
    /// `None` = the key is absent; the model type decides (see `Tokenizer::from_vocab`).
    pub add_bos: Option<bool>,
    pub add_eos: Option<bool>,
    pub add_space_prefix: Option<bool>,
    /// `general.name` and `general.architecture`: llama.cpp keys a few token attributes on
    /// them (phi-3's right-stripping specials).
    pub general_name: String,
    pub architecture: String,
}

impl Vocab {
    /// A vocabulary of these tokens with no scores, merges, special ids or flags (the rest is
    /// set with struct-update syntax).
    pub fn new(kind: VocabKind, tokens: Vec<String>, types: Vec<TokenType>) -> Vocab {
        let (bos, eos, eot, eom, unk, add_bos, add_eos, add_space_prefix) = Default::default();
        let (pre, general_name, architecture) = Default::default();
        Vocab { kind, pre, tokens, types, scores: Vec::new(), merges: Vec::new(), bos, eos, eot, eom, unk, add_bos, add_eos, add_space_prefix, general_name, architecture }
    }

    pub fn from_gguf(gguf: &GgufFile) -> Result<Vocab, TokenizerError> {
        let model = gguf
            .get_str("tokenizer.ggml.model")?
            .ok_or(TokenizerError::MissingKey("tokenizer.ggml.model"))?;
        let kind = match model {
            "gpt2" => VocabKind::BytePairBpe,
            "llama" => VocabKind::SentencePiece,
            "gemma4" => VocabKind::Gemma4,
            other => return Err(TokenizerError::UnsupportedModel(other.to_string())),
        };
        let tokens: Vec<String> = gguf
            .get_str_array("tokenizer.ggml.tokens")?
            .ok_or(TokenizerError::MissingKey("tokenizer.ggml.tokens"))?
            .into_iter()
            .map(str::to_string)
            .collect();
        let n = tokens.len();
        if n == 0 || n > u32::MAX as usize {
            return Err(TokenizerError::Invalid(format!("vocabulary of {n} tokens")));
        }
        let types = match gguf.get_int_array("tokenizer.ggml.token_type")? {
            Some(t) if t.len() >= n => t[..n].iter().map(|&v| TokenType::from_gguf(v)).collect(),
            Some(t) => return Err(short_array("tokenizer.ggml.token_type", t.len(), n)),
            None => vec![TokenType::Normal; n],
        };
        let scores = match gguf.get_array("tokenizer.ggml.scores")? {
            Some(s) if s.len() >= n => s[..n]
                .iter()
                .map(|v| v.as_f64().map(|x| x as f32))
                .collect::<Option<Vec<f32>>>()
                .ok_or_else(|| TokenizerError::Invalid("non-numeric token score".into()))?,
            Some(s) => return Err(short_array("tokenizer.ggml.scores", s.len(), n)),
            None => Vec::new(),
        };
        let merges = match kind {
            VocabKind::BytePairBpe | VocabKind::Gemma4 => gguf
                .get_str_array("tokenizer.ggml.merges")?
                .ok_or(TokenizerError::MissingKey("tokenizer.ggml.merges"))?
                .into_iter()
                .map(str::to_string)
                .collect(),
            VocabKind::SentencePiece => Vec::new(),
        };
        // llama.cpp's ids when a key is absent: SentencePiece <unk> <s> </s> = 0 1 2, GPT-2
        // BPE <|endoftext|> = 11 for both BOS and EOS.
        let (bos, eos, unk) = match kind {
            VocabKind::SentencePiece => (Some(1), Some(2), Some(0)),
            VocabKind::BytePairBpe => (Some(11), Some(11), None),
            VocabKind::Gemma4 => (None, None, None),
        };
        let id_or = |key: &str, default: Option<u64>| -> Result<Option<u32>, TokenizerError> {
            // An id outside the vocabulary is ignored, as llama.cpp does, rather than failing
            // the whole model: some converters write placeholder ids.
            Ok(gguf.get_u64(key)?.or(default).filter(|&id| id < n as u64).map(|id| id as u32))
        };
        let id = |key: &str| id_or(key, None);
        Ok(Vocab {
            kind,
            pre: gguf.get_str("tokenizer.ggml.pre")?.unwrap_or_default().to_string(),
            bos: id_or("tokenizer.ggml.bos_token_id", bos)?,
            eos: id_or("tokenizer.ggml.eos_token_id", eos)?,
            eot: id("tokenizer.ggml.eot_token_id")?,
            eom: id("tokenizer.ggml.eom_token_id")?,
            unk: id_or("tokenizer.ggml.unknown_token_id", unk)?,
            add_bos: gguf.get_bool("tokenizer.ggml.add_bos_token")?,
            add_eos: gguf.get_bool("tokenizer.ggml.add_eos_token")?,
            add_space_prefix: gguf.get_bool("tokenizer.ggml.add_space_prefix")?,
            general_name: gguf.get_str("general.name")?.unwrap_or_default().to_string(),
            architecture: gguf.get_str("general.architecture")?.unwrap_or_default().to_string(),
            tokens,
            types,
            scores,
            merges,
        })
    }
}

fn short_array(key: &str, got: usize, want: usize) -> TokenizerError {
    TokenizerError::Invalid(format!("`{key}` has {got} entries for {want} tokens"))
}
