//! A Hugging Face `tokenizers` pipeline (model + pre-tokenizer) for a byte-level BPE GGUF
//! vocabulary: what the `tokenizer.json` of an exported model starts from. rill itself
//! encodes GGUF vocabularies with its own llama.cpp-exact code (`bpe.rs`, `split.rs`); HF
//! readers of the export get the same regexes and merges through `tokenizers`.

use tokenizers::models::bpe::{Vocab as BpeVocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::SplitDelimiterBehavior;

use super::pretokenize;
use super::vocab::Vocab;
use super::TokenizerError;

fn build_error(e: impl std::fmt::Display) -> TokenizerError {
    TokenizerError::Build(e.to_string())
}

/// Token text → id. On duplicate texts the last id wins, as in llama.cpp's `token_to_id`.
fn vocab_map(vocab: &Vocab) -> BpeVocab {
    vocab.tokens.iter().enumerate().map(|(id, t)| (t.clone(), id as u32)).collect()
}

/// Byte-level BPE: the pre-tokenizer regexes, then GPT-2 byte mapping, then merges.
pub fn byte_level_bpe(vocab: &Vocab) -> Result<tokenizers::Tokenizer, TokenizerError> {
    let spec = pretokenize::spec_for(&vocab.pre)?;
    let map = vocab_map(vocab);
    let merges = bpe_merges(&vocab.merges, &map);
    let model = BPE::builder()
        .vocab_and_merges(map, merges)
        .ignore_merges(spec.ignore_merges)
        .build()
        .map_err(build_error)?;
    let mut steps: Vec<PreTokenizerWrapper> = Vec::with_capacity(spec.regexes.len() + 1);
    for re in spec.regexes {
        let split = Split::new(
            SplitPattern::Regex((*re).to_string()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(build_error)?;
        steps.push(split.into());
    }
    // The regexes already split the text; ByteLevel only maps bytes to its visible alphabet.
    steps.push(ByteLevel::new(false, false, false).into());
    let mut tokenizer = tokenizers::Tokenizer::new(model);
    tokenizer.with_pre_tokenizer(Some(Sequence::new(steps)));
    Ok(tokenizer)
}

/// Parses `"left right"` merges, dropping those `tokenizers` would reject (a side or the
/// result missing from the vocabulary). llama.cpp keeps them but their result can never be
/// emitted as one token anyway.
fn bpe_merges(lines: &[String], map: &BpeVocab) -> Vec<(String, String)> {
    let mut merges = Vec::with_capacity(lines.len());
    let mut dropped = 0usize;
    for line in lines {
        // Search after the first character like llama.cpp, so a left side that is itself " "
        // still parses.
        let first = line.chars().next().map_or(0, char::len_utf8);
        let Some(pos) = line[first..].find(' ').map(|p| p + first) else {
            dropped += 1;
            continue;
        };
        let (left, right) = (&line[..pos], &line[pos + 1..]);
        let merged = format!("{left}{right}");
        if map.contains_key(left) && map.contains_key(right) && map.contains_key(&merged) {
            merges.push((left.to_string(), right.to_string()));
        } else {
            dropped += 1;
        }
    }
    if dropped > 0 {
        tracing::warn!(
            dropped,
            "BPE merges skipped: malformed or producing out-of-vocabulary tokens"
        );
    }
    merges
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_parse_like_llama_cpp_and_skip_unknown_tokens() {
        let map: BpeVocab = ["a", "b", "ab", " ", "  ", "Ġ", "Ġa"]
            .iter()
            .enumerate()
            .map(|(i, t)| (t.to_string(), i as u32))
            .collect();
        let lines = ["a b", "   ", "a c", "nospace", "Ġ a"].map(String::from);
        assert_eq!(
            bpe_merges(&lines, &map),
            vec![("a".into(), "b".into()), (" ".into(), " ".into()), ("Ġ".into(), "a".into())]
        );
    }
}
