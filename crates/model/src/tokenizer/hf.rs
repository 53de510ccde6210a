//! A tokenizer from a Hugging Face `tokenizer.json` (loaded by the `tokenizers` crate).
//!
//! The pipeline the file describes (normalizer, pre-tokenizer, BPE model) encodes the text
//! between special tokens as it is. What rill keeps doing itself, as for GGUF: splitting out
//! special and added tokens first (longest first, so `parse_special = false` can keep control
//! tokens out of user text), adding BOS/EOS, and decoding through a per-token byte table. The
//! added tokens' `lstrip`/`rstrip`/`single_word` flags are not applied (the tokenizers of the
//! architectures rill runs set none of them on tokens that appear in text).

use tokenizers::models::ModelWrapper;

use super::special::SpecialMatcher;
use super::vocab::{TokenType, Vocab, VocabKind};
use super::{end_of_generation_ids, pieces, Encoder, TokenIndex, Tokenizer, TokenizerError};

/// The special-token facts that live outside `tokenizer.json` (in `tokenizer_config.json`,
/// `generation_config.json` and `config.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HfSpecialTokens {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    /// More ids that end generation (e.g. `generation_config.json`'s `eos_token_id` list).
    pub extra_eos: Vec<u32>,
    /// Whether `encode(.., add_special = true)` prepends BOS / appends EOS.
    pub add_bos: bool,
    pub add_eos: bool,
}

impl Tokenizer {
    /// Builds rill's tokenizer around a Hugging Face one. Only BPE models are accepted
    /// (byte-level like Llama 3 / Qwen2, or SentencePiece-style with `▁` and byte fallback
    /// like Llama 2 / Mistral).
    pub fn from_hf(hf: &tokenizers::Tokenizer, special: HfSpecialTokens) -> Result<Tokenizer, TokenizerError> {
        let bpe = match hf.get_model() {
            ModelWrapper::BPE(bpe) => bpe,
            ModelWrapper::WordPiece(_) => return Err(TokenizerError::UnsupportedModel("WordPiece".into())),
            ModelWrapper::WordLevel(_) => return Err(TokenizerError::UnsupportedModel("WordLevel".into())),
            ModelWrapper::Unigram(_) => return Err(TokenizerError::UnsupportedModel("Unigram".into())),
        };
        let model_vocab = hf.get_vocab(false);
        let added = hf.get_added_tokens_decoder();
        let n = model_vocab.values().chain(added.keys()).map(|&id| id as usize + 1).max().unwrap_or(0);
        if n == 0 || n > u32::MAX as usize {
            return Err(TokenizerError::Invalid(format!("vocabulary of {n} tokens")));
        }
        // Ids nobody names stay empty and unused: they decode to nothing.
        let mut tokens = vec![String::new(); n];
        let mut types = vec![TokenType::Unused; n];
        for (text, &id) in &model_vocab {
            let byte = bpe.byte_fallback && pieces::parse_byte_token(text).is_some();
            types[id as usize] = if byte { TokenType::Byte } else { TokenType::Normal };
            tokens[id as usize] = text.clone();
        }
        for (&id, token) in &added {
            types[id as usize] = if token.special { TokenType::Control } else { TokenType::UserDefined };
            tokens[id as usize] = token.content.clone();
        }
        for id in [special.bos, special.eos].into_iter().flatten().chain(special.extra_eos.iter().copied()) {
            if id as usize >= n {
                return Err(TokenizerError::Invalid(format!("special token id {id} outside the vocabulary of {n}")));
            }
        }
        let kind = if mentions_byte_level(hf) { VocabKind::BytePairBpe } else { VocabKind::SentencePiece };

        // The same pipeline without added tokens or post-processor: special tokens are split
        // out before it runs, and BOS/EOS are added by `encode`.
        let mut inner = tokenizers::Tokenizer::new(bpe.clone());
        inner.with_normalizer(hf.get_normalizer().cloned()).map_err(|e| TokenizerError::Build(e.to_string()))?;
        inner.with_pre_tokenizer(hf.get_pre_tokenizer().cloned());

        let (add_bos, add_eos) = (Some(special.add_bos), Some(special.add_eos));
        let vocab = Vocab { bos: special.bos, eos: special.eos, add_bos, add_eos, ..Vocab::new(kind, tokens, types) };
        let pieces = pieces::build_pieces(&vocab);
        // Pipelines that prepend a space (`▁`) to the text (Llama 2's normalizer, Metaspace,
        // ByteLevel with `add_prefix_space`) get it removed again at the start of decoding,
        // as their decoders do. Found by encoding one letter.
        let adds_prefix = inner
            .encode_fast("a", false)
            .ok()
            .and_then(|e| e.get_ids().first().copied())
            .is_some_and(|id| pieces[id as usize].first() == Some(&b' '));

        let end_of_generation = end_of_generation_ids(special.eos.into_iter().chain(special.extra_eos.iter().copied()), &vocab.tokens);
        Ok(Tokenizer {
            kind,
            encoder: Encoder::Hf(Box::new(inner)),
            index: TokenIndex::default(),
            pieces,
            specials: SpecialMatcher::new(&vocab.tokens, &vocab.types, &[]),
            bos: special.bos,
            eos: special.eos,
            end_of_generation,
            add_bos: special.add_bos && special.bos.is_some(),
            add_eos: special.add_eos && special.eos.is_some(),
            add_space_prefix: adds_prefix,
            tokens: vocab.tokens,
            types: vocab.types,
        })
    }
}

/// Whether the pre-tokenizer or decoder maps bytes to GPT-2's visible alphabet.
fn mentions_byte_level(hf: &tokenizers::Tokenizer) -> bool {
    let pre = hf.get_pre_tokenizer().and_then(|p| serde_json::to_string(p).ok()).unwrap_or_default();
    let dec = hf.get_decoder().and_then(|d| serde_json::to_string(d).ok()).unwrap_or_default();
    pre.contains("\"ByteLevel\"") || dec.contains("\"ByteLevel\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny byte-level tokenizer.json: bytes "a", "b", "Ġ", merges "a b", and two added
    /// tokens (one special).
    const BYTE_LEVEL: &str = r#"{
      "version": "1.0",
      "added_tokens": [
        {"id": 5, "content": "<|end|>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
        {"id": 6, "content": "<x>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": false}
      ],
      "normalizer": null,
      "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
      "post_processor": null,
      "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
      "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                "vocab": {"a": 0, "b": 1, "Ġ": 2, "ab": 3, "Ġa": 4},
                "merges": ["a b", "Ġ a"]}
    }"#;

    fn byte_level(special: HfSpecialTokens) -> Tokenizer {
        let hf: tokenizers::Tokenizer = BYTE_LEVEL.parse().unwrap();
        Tokenizer::from_hf(&hf, special).unwrap()
    }

    #[test]
    fn byte_level_encodes_splits_specials_and_decodes() {
        let t = byte_level(HfSpecialTokens { eos: Some(5), add_bos: true, ..Default::default() });
        assert_eq!(t.kind(), VocabKind::BytePairBpe);
        assert_eq!(t.vocab_size(), 7);
        assert!(!t.adds_bos(), "no BOS id: nothing to add");
        assert_eq!(t.encode("ab a", true).unwrap(), vec![3, 4]);
        assert_eq!(t.encode("ab<|end|>a<x>b", true).unwrap(), vec![3, 5, 0, 6, 1]);
        // Control tokens stay text without parse_special; added (user-defined) ones do not.
        assert_eq!(t.encode_with("<|end|><x>", false, false).unwrap().last(), Some(&6));
        assert_ne!(t.encode_with("<|end|>", false, false).unwrap(), vec![5]);
        assert_eq!(t.decode(&[3, 4, 5, 6], false), "ab a<|end|><x>");
        assert_eq!(t.decode(&[3, 4, 5, 6], true), "ab a<x>");
        assert_eq!(t.decode(&[999], false), "");
        assert_eq!(t.eos_token_ids(), &[5]);
        assert!(t.is_special(5) && !t.is_special(6));
    }

    #[test]
    fn sentencepiece_style_with_byte_fallback_and_prefix_space() {
        let json = r#"{
          "version": "1.0",
          "added_tokens": [
            {"id": 0, "content": "<unk>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
            {"id": 1, "content": "<s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
            {"id": 2, "content": "</s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}
          ],
          "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
          "pre_tokenizer": null,
          "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
             "pair": [{"Sequence": {"id": "A", "type_id": 0}}], "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
          "decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
          "model": {"type": "BPE", "dropout": null, "unk_token": "<unk>", "continuing_subword_prefix": null,
                    "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true,
                    "vocab": {"<unk>": 0, "<s>": 1, "</s>": 2, "<0xC3>": 3, "<0xA9>": 4, "▁": 5, "h": 6, "i": 7, "▁h": 8, "▁hi": 9},
                    "merges": ["▁ h", "▁h i"]}
        }"#;
        let hf: tokenizers::Tokenizer = json.parse().unwrap();
        let t = Tokenizer::from_hf(&hf, HfSpecialTokens { bos: Some(1), eos: Some(2), add_bos: true, ..Default::default() }).unwrap();
        assert_eq!(t.kind(), VocabKind::SentencePiece);
        assert_eq!(t.token_type(3), Some(TokenType::Byte));
        assert_eq!(t.encode("hi", true).unwrap(), vec![1, 9]);
        assert_eq!(t.encode("hié", false).unwrap(), vec![9, 3, 4]);
        assert_eq!(t.decode(&[1, 9, 3, 4], true), "hié");
        assert_eq!(t.decode(&[9, 2], false), "hi</s>");
        assert_eq!(t.eos_token_ids(), &[2]);
    }

    #[test]
    fn unsupported_models_and_bad_ids_are_errors() {
        let hf: tokenizers::Tokenizer = BYTE_LEVEL.parse().unwrap();
        assert!(matches!(
            Tokenizer::from_hf(&hf, HfSpecialTokens { eos: Some(7), ..Default::default() }),
            Err(TokenizerError::Invalid(_))
        ));
        let wordlevel = r#"{"version": "1.0", "added_tokens": [], "normalizer": null, "pre_tokenizer": null,
            "post_processor": null, "decoder": null, "model": {"type": "WordLevel", "vocab": {"a": 0}, "unk_token": "a"}}"#;
        let hf: tokenizers::Tokenizer = wordlevel.parse().unwrap();
        assert!(matches!(Tokenizer::from_hf(&hf, HfSpecialTokens::default()), Err(TokenizerError::UnsupportedModel(m)) if m == "WordLevel"));
    }
}
