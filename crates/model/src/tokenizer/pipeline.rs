//! Building the `tokenizers` pipeline (model + pre-tokenizer) from a GGUF vocabulary.
//!
//! Only the merge loop and the regex splitting come from `tokenizers`; special tokens are
//! split out beforehand (see `special.rs`) and SentencePiece whitespace is escaped by the
//! caller, so the pipeline never sees added tokens, normalizers or post-processors.

use std::collections::HashMap;

use tokenizers::models::bpe::{Vocab as BpeVocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::SplitDelimiterBehavior;

use super::pretokenize::PreTokenizerSpec;
use super::vocab::{TokenType, Vocab};
use super::TokenizerError;

fn build_error(e: impl std::fmt::Display) -> TokenizerError {
    TokenizerError::Build(e.to_string())
}

/// Token text → id. On duplicate texts the last id wins, as in llama.cpp's `token_to_id`.
fn vocab_map(vocab: &Vocab) -> BpeVocab {
    vocab.tokens.iter().enumerate().map(|(id, t)| (t.clone(), id as u32)).collect()
}

/// Byte-level BPE: the pre-tokenizer regexes, then GPT-2 byte mapping, then merges.
pub fn byte_level_bpe(
    vocab: &Vocab,
    spec: &PreTokenizerSpec,
) -> Result<tokenizers::Tokenizer, TokenizerError> {
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

/// SentencePiece BPE: no pre-tokenizer (the caller escapes spaces to `▁`), merges derived
/// from piece scores, `<0xNN>` byte fallback for characters outside the vocabulary.
pub fn sentencepiece(vocab: &Vocab) -> Result<tokenizers::Tokenizer, TokenizerError> {
    if vocab.scores.len() != vocab.tokens.len() {
        return Err(TokenizerError::MissingKey("tokenizer.ggml.scores"));
    }
    let merges = spm_merges(vocab);
    let byte_fallback = vocab.types.contains(&TokenType::Byte);
    let mut builder =
        BPE::builder().vocab_and_merges(vocab_map(vocab), merges).byte_fallback(byte_fallback);
    if let Some(unk) = vocab.unk {
        builder = builder.unk_token(vocab.tokens[unk as usize].clone());
    }
    let model = builder.build().map_err(build_error)?;
    Ok(tokenizers::Tokenizer::new(model))
}

/// SentencePiece merges the adjacent pair whose concatenation is the highest-scoring piece.
/// As BPE merges that is: every split of every normal piece into two normal pieces, ranked by
/// the whole piece's score (the same derivation as `tokenizers`' SentencePiece converter:
/// stable sort by score, ties in vocabulary order, splits by left then right id).
pub fn spm_merges(vocab: &Vocab) -> Vec<(String, String)> {
    let normal: HashMap<&str, u32> = vocab
        .tokens
        .iter()
        .zip(&vocab.types)
        .enumerate()
        .filter(|(_, (_, ty))| **ty == TokenType::Normal)
        .map(|(id, (t, _))| (t.as_str(), id as u32))
        .collect();
    let mut ranked: Vec<(f32, u32, u32)> = Vec::new();
    for (id, (piece, ty)) in vocab.tokens.iter().zip(&vocab.types).enumerate() {
        if *ty != TokenType::Normal {
            continue;
        }
        let start = ranked.len();
        for (at, _) in piece.char_indices().skip(1) {
            if let (Some(&l), Some(&r)) = (normal.get(&piece[..at]), normal.get(&piece[at..])) {
                ranked.push((vocab.scores[id], l, r));
            }
        }
        ranked[start..].sort_by_key(|&(_, l, r)| (l, r));
    }
    ranked.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal));
    ranked
        .into_iter()
        .map(|(_, l, r)| (vocab.tokens[l as usize].clone(), vocab.tokens[r as usize].clone()))
        .collect()
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
