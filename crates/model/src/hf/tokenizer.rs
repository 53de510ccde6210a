//! The tokenizer and chat template of a Hugging Face model directory: `tokenizer.json`, plus
//! the special tokens and template from `tokenizer_config.json` (or `chat_template.jinja`),
//! with `generation_config.json` and `config.json` filling in ids the others leave out.

use std::path::Path;

use crate::chat_template::ChatTemplate;
use crate::tokenizer::{HfSpecialTokens, Tokenizer};

use super::config::{GenerationConfig, HfConfig, TokenizerConfig};
use super::{read_optional, HfError};

pub const TOKENIZER_FILE: &str = "tokenizer.json";
pub const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";
pub const GENERATION_CONFIG_FILE: &str = "generation_config.json";
pub const CHAT_TEMPLATE_FILE: &str = "chat_template.jinja";

/// Reads the tokenizer files of `dir`; `config` is the model's `config.json`.
pub fn load(dir: &Path, config: &HfConfig) -> Result<(Tokenizer, Option<ChatTemplate>), HfError> {
    let path = dir.join(TOKENIZER_FILE);
    if !path.is_file() {
        return Err(HfError::Io { path, source: std::io::Error::new(std::io::ErrorKind::NotFound, "no tokenizer.json") });
    }
    let hf = tokenizers::Tokenizer::from_file(&path).map_err(|e| HfError::Json { path: path.clone(), message: e.to_string() })?;
    let tc = match read_optional(&dir.join(TOKENIZER_CONFIG_FILE))? {
        Some(text) => TokenizerConfig::parse(&text).map_err(|message| HfError::Json { path: dir.join(TOKENIZER_CONFIG_FILE), message })?,
        None => TokenizerConfig::default(),
    };
    let generation = match read_optional(&dir.join(GENERATION_CONFIG_FILE))? {
        Some(text) => GenerationConfig::parse(&text).map_err(|message| HfError::Json { path: dir.join(GENERATION_CONFIG_FILE), message })?,
        None => GenerationConfig::default(),
    };
    let special = special_tokens(&hf, &tc, &generation, config);
    let tokenizer = Tokenizer::from_hf(&hf, special)?;

    let source = match tc.chat_template() {
        Some(t) => Some(t.to_string()),
        None => read_optional(&dir.join(CHAT_TEMPLATE_FILE))?,
    };
    let text_of = |id: Option<u32>| id.and_then(|id| tokenizer.token_str(id)).unwrap_or_default().to_string();
    let template = match source {
        Some(src) => {
            let bos = tc.bos_token().map(str::to_string).unwrap_or_else(|| text_of(tokenizer.bos_id()));
            let eos = tc.eos_token().map(str::to_string).unwrap_or_else(|| text_of(tokenizer.eos_id()));
            Some(ChatTemplate::new(&src, bos, eos)?)
        }
        None => None,
    };
    Ok((tokenizer, template))
}

/// BOS/EOS by text from `tokenizer_config.json`, else by id from `generation_config.json`,
/// else `config.json`. Whether BOS/EOS are added: `add_bos_token`/`add_eos_token` when
/// stated, else what `tokenizer.json`'s post-processor does to a one-letter text.
pub fn special_tokens(hf: &tokenizers::Tokenizer, tc: &TokenizerConfig, generation: &GenerationConfig, config: &HfConfig) -> HfSpecialTokens {
    let by_text = |text: Option<&str>| text.and_then(|t| hf.token_to_id(t));
    let bos = by_text(tc.bos_token())
        .or_else(|| generation.bos_token_id.as_ref().and_then(|i| i.first()))
        .or_else(|| config.bos_token_id.as_ref().and_then(|i| i.first()));
    let eos = by_text(tc.eos_token())
        .or_else(|| generation.eos_token_id.as_ref().and_then(|i| i.first()))
        .or_else(|| config.eos_token_id.as_ref().and_then(|i| i.first()));
    let mut extra_eos: Vec<u32> = generation.eos_token_id.iter().chain(&config.eos_token_id).flat_map(|i| i.to_vec()).collect();
    extra_eos.sort_unstable();
    extra_eos.dedup();
    let (plain, full) = (hf.encode("a", false).ok(), hf.encode("a", true).ok());
    let (plain, full) = (plain.map(|e| e.get_ids().to_vec()).unwrap_or_default(), full.map(|e| e.get_ids().to_vec()).unwrap_or_default());
    let grew = full.len() > plain.len();
    let add_bos = tc.add_bos_token.unwrap_or(grew && bos.is_some() && full.first().copied() == bos);
    let add_eos = tc.add_eos_token.unwrap_or(grew && eos.is_some() && full.last().copied() == eos);
    HfSpecialTokens { bos, eos, extra_eos, add_bos, add_eos }
}
