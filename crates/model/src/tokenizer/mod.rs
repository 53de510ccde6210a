//! Text ↔ token ids for GGUF models, matching llama.cpp token for token.
//!
//! The GGUF file carries the vocabulary, merges or scores, token types and special ids, but
//! only the *name* of the pre-tokenizer. rill reimplements llama.cpp's tokenizer for it rather
//! than approximating it with Hugging Face `tokenizers`, because that is what a GGUF model was
//! validated against, and the two differ in many small ways:
//! - token types are corrected by name and phi-3's specials strip whitespace (`attributes.rs`);
//! - special tokens are split out of the text first, longest first (`special.rs`);
//! - SentencePiece merges by score, leftmost on ties, with a space prefix at the start and
//!   after every special token, and byte tokens for the rest (`spm.rs`);
//! - BPE splits words with llama.cpp's regexes as llama.cpp runs them (its Unicode tables,
//!   its collapsed-category trick: `split.rs`, `pretokenize.rs`), then merges by rank, with
//!   whole-word lookup for the llama3 family (`bpe.rs`);
//! - decoding goes through a per-token byte table (`pieces.rs`), so streaming output can
//!   hold back half a UTF-8 character exactly (`incremental.rs`).
//!
//! Checked against llama.cpp itself on 24 vocabularies (`tests/fixtures/tokenizers/`, recorded
//! by `scripts/gen-tokenizer-vocab-fixtures.py`) and on the default model. Deliberate
//! differences: decoding is the exact inverse of encoding, so llama.cpp's `clean_spaces`
//! post-pass (" ," → ",") is not applied; WordPiece, Unigram and RWKV vocabularies are
//! rejected. Tokenizers from a Hugging Face `tokenizer.json` (`hf.rs`) run its own pipeline.

mod attributes;
mod bpe;
mod error;
mod hf;
mod incremental;
mod index;
pub(crate) mod pieces;
mod pipeline;
mod pretokenize;
mod special;
mod split;
mod spm;
mod symbols;
mod unicode;
mod unicode_categories;
mod vocab;

#[cfg(test)]
mod tests;

pub use error::TokenizerError;
pub use hf::HfSpecialTokens;
pub use incremental::IncrementalDecoder;
pub use pipeline::byte_level_bpe as hf_byte_level_pipeline;
pub use vocab::{TokenType, Vocab, VocabKind};

use crate::gguf::GgufFile;
use index::TokenIndex;
use special::{Fragment, SpecialMatcher};

/// Token texts llama.cpp treats as "end of generation" whatever the metadata says (the
/// common chat end markers). FIM markers, which llama.cpp also lists, are left out: they end
/// infill, not chat.
const END_OF_GENERATION_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<|end_of_text|>",
    "<EOT>",
    "<end_of_utterance>",
];

/// The ids that end generation: `known` (EOS/EOT/EOM from the metadata) plus every token whose
/// text is a known end-of-turn marker, sorted and deduplicated.
fn end_of_generation_ids(known: impl IntoIterator<Item = u32>, tokens: &[String]) -> Vec<u32> {
    let mut ids: Vec<u32> = known.into_iter().collect();
    ids.extend(tokens.iter().enumerate().filter(|(_, t)| END_OF_GENERATION_TEXTS.contains(&t.as_str())).map(|(id, _)| id as u32));
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// How the text between special tokens becomes ids.
enum Encoder {
    SentencePiece {
        scores: Vec<f32>,
    },
    Bpe {
        merges: bpe::Merges,
        splitter: split::Splitter,
        options: bpe::BpeOptions,
        /// gemma4: spaces are `▁` in the vocabulary.
        escape_spaces: bool,
    },
    /// A Hugging Face `tokenizer.json` pipeline, run as it is (normalizer included).
    Hf(Box<tokenizers::Tokenizer>),
}

/// A GGUF model's tokenizer. Cheap to share (`Send + Sync`); all methods take `&self`.
pub struct Tokenizer {
    kind: VocabKind,
    encoder: Encoder,
    index: TokenIndex,
    tokens: Vec<String>,
    /// As llama.cpp uses them (after its corrections by name, see `attributes.rs`).
    types: Vec<TokenType>,
    /// The bytes each token decodes to (see `pieces.rs`).
    pieces: Vec<Box<[u8]>>,
    specials: SpecialMatcher,
    bos: Option<u32>,
    eos: Option<u32>,
    end_of_generation: Vec<u32>,
    add_bos: bool,
    add_eos: bool,
    /// SentencePiece: a space is prepended at the start and after special tokens (and
    /// removed again when decoding). For Hugging Face pipelines the pipeline adds the space;
    /// the flag then only says that decoding removes it.
    add_space_prefix: bool,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("kind", &self.kind)
            .field("vocab_size", &self.tokens.len())
            .field("specials", &self.specials.len())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("add_bos", &self.add_bos)
            .finish()
    }
}

impl AsRef<Tokenizer> for Tokenizer {
    fn as_ref(&self) -> &Tokenizer {
        self
    }
}

/// What decoding has seen so far; shared by [`Tokenizer::decode`] and [`IncrementalDecoder`]
/// so that the two cannot disagree.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DecodeState {
    /// At the start of text or right after a special token: where SentencePiece encoding
    /// added a space that decoding must remove again.
    at_fragment_start: bool,
    /// Whether that space is removed: decoding a whole encoded text, not tokens that continue
    /// a prompt (generated text keeps its leading space, as llama-server streams it).
    strip_space_prefix: bool,
}

impl DecodeState {
    pub(crate) fn new() -> DecodeState {
        DecodeState { at_fragment_start: true, strip_space_prefix: true }
    }

    pub(crate) fn continuing() -> DecodeState {
        DecodeState { at_fragment_start: false, strip_space_prefix: false }
    }
}

impl Tokenizer {
    /// Builds the tokenizer described by the model's `tokenizer.ggml.*` metadata.
    pub fn from_gguf(gguf: &GgufFile) -> Result<Tokenizer, TokenizerError> {
        Tokenizer::from_vocab(Vocab::from_gguf(gguf)?)
    }

    /// Builds a tokenizer from vocabulary data already read (or made up, in tests).
    pub fn from_vocab(vocab: Vocab) -> Result<Tokenizer, TokenizerError> {
        if vocab.types.len() != vocab.tokens.len() {
            return Err(TokenizerError::Invalid("token types do not match the vocabulary".into()));
        }
        // Defaults per model type as in llama.cpp's `llama_vocab::impl::load`; metadata wins,
        // except that gemma4 always adds BOS and chatglm has none.
        let bpe = |spec: pretokenize::PreTokenizerSpec, byte_encoded: bool| -> Result<Encoder, TokenizerError> {
            let options = bpe::BpeOptions { ignore_merges: spec.ignore_merges, whole_newlines: !byte_encoded, byte_encoded };
            let (merges, splitter) = (bpe::Merges::new(&vocab.merges), split::Splitter::new(spec.regexes)?);
            Ok(Encoder::Bpe { merges, splitter, options, escape_spaces: !byte_encoded })
        };
        let (encoder, add_bos, add_space_prefix, bos) = match vocab.kind {
            VocabKind::BytePairBpe => {
                let spec = pretokenize::spec_for(&vocab.pre)?;
                let bos = if spec.no_bos { None } else { vocab.bos };
                (bpe(spec, true)?, vocab.add_bos.unwrap_or(spec.add_bos_default), false, bos)
            }
            VocabKind::Gemma4 => (bpe(pretokenize::GEMMA4, false)?, true, false, vocab.bos),
            VocabKind::SentencePiece => {
                if vocab.scores.len() != vocab.tokens.len() {
                    return Err(TokenizerError::MissingKey("tokenizer.ggml.scores"));
                }
                let encoder = Encoder::SentencePiece { scores: vocab.scores.clone() };
                (encoder, vocab.add_bos.unwrap_or(true), vocab.add_space_prefix.unwrap_or(true), vocab.bos)
            }
        };
        let add_eos = vocab.add_eos.unwrap_or(false) && vocab.eos.is_some();
        let end_of_generation = end_of_generation_ids([vocab.eos, vocab.eot, vocab.eom].into_iter().flatten(), &vocab.tokens);
        let (types, strip) = attributes::llama_cpp_types(&vocab);
        let vocab = Vocab { types, ..vocab };
        Ok(Tokenizer {
            kind: vocab.kind,
            encoder,
            index: TokenIndex::new(&vocab.tokens),
            pieces: pieces::build_pieces(&vocab),
            specials: SpecialMatcher::new(&vocab.tokens, &vocab.types, &strip),
            bos,
            eos: vocab.eos,
            end_of_generation,
            add_bos: add_bos && bos.is_some(),
            add_eos,
            add_space_prefix,
            tokens: vocab.tokens,
            types: vocab.types,
        })
    }

    /// Encodes text the way a prompt is encoded: special-token texts (`<|im_start|>`) become
    /// their tokens, and with `add_special` the BOS/EOS the model asks for are added.
    pub fn encode(&self, text: &str, add_special: bool) -> Result<Vec<u32>, TokenizerError> {
        self.encode_with(text, add_special, true)
    }

    /// [`encode`](Self::encode) with control over special-token parsing. `parse_special =
    /// false` is for untrusted text that must not inject control tokens (user-defined added
    /// tokens are still matched, as in llama.cpp).
    pub fn encode_with(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<u32>, TokenizerError> {
        let mut ids = Vec::with_capacity(text.len() / 3 + 2);
        if add_special && self.add_bos {
            ids.extend(self.bos);
        }
        let mut after_special = true;
        for fragment in self.specials.partition(text, parse_special) {
            match fragment {
                Fragment::Token(id) => {
                    ids.push(id);
                    after_special = true;
                }
                Fragment::Text(raw) => {
                    self.encode_fragment(raw, after_special, &mut ids)?;
                    after_special = false;
                }
            }
        }
        if add_special && self.add_eos {
            ids.extend(self.eos);
        }
        Ok(ids)
    }

    fn encode_fragment(&self, raw: &str, after_special: bool, ids: &mut Vec<u32>) -> Result<(), TokenizerError> {
        match &self.encoder {
            Encoder::Hf(inner) => {
                let encoding = inner.encode_fast(raw, false).map_err(|e| TokenizerError::Encode(e.to_string()))?;
                ids.extend_from_slice(encoding.get_ids());
            }
            Encoder::SentencePiece { scores } => {
                let prefix = if self.add_space_prefix && after_special { " " } else { "" };
                let escaped = format!("{prefix}{raw}").replace(' ', "\u{2581}");
                spm::encode(&escaped, scores, &self.index, ids)?;
            }
            Encoder::Bpe { merges, splitter, options, escape_spaces } => {
                let escaped;
                let text = if *escape_spaces {
                    escaped = raw.replace(' ', "\u{2581}");
                    escaped.as_str()
                } else {
                    raw
                };
                let mut mapped = String::new();
                for word in splitter.split(text)? {
                    let word = if options.byte_encoded {
                        mapped.clear();
                        mapped.extend(word.bytes().map(|b| pieces::BYTE_TO_CHAR[b as usize]));
                        mapped.as_str()
                    } else {
                        word
                    };
                    bpe::encode_word(word, merges, &self.index, *options, ids);
                }
            }
        }
        Ok(())
    }

    /// Decodes ids to text. `skip_special` drops control tokens (BOS, `<|im_end|>`, …);
    /// user-defined tokens always render. Bytes that are not valid UTF-8 become U+FFFD, and
    /// ids outside the vocabulary render as nothing (decoding never fails).
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> String {
        let mut state = DecodeState::new();
        let mut bytes = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            self.append_piece(id, skip_special, &mut state, &mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Appends the bytes `id` contributes after the tokens already seen in `state`.
    pub(crate) fn append_piece(
        &self,
        id: u32,
        skip_special: bool,
        state: &mut DecodeState,
        out: &mut Vec<u8>,
    ) {
        let Some(ty) = self.types.get(id as usize) else { return };
        let piece = &self.pieces[id as usize];
        match ty {
            TokenType::Control | TokenType::Unknown | TokenType::UserDefined => {
                state.at_fragment_start = true;
                if !(skip_special && *ty != TokenType::UserDefined) {
                    out.extend_from_slice(piece);
                }
            }
            _ => {
                let strip = self.add_space_prefix && state.strip_space_prefix && state.at_fragment_start && piece.first() == Some(&b' ');
                out.extend_from_slice(&piece[usize::from(strip)..]);
                state.at_fragment_start = false;
            }
        }
    }

    /// The raw bytes one token stands for, out of context (no space-prefix removal; control
    /// tokens as their text). May be part of a UTF-8 character.
    pub fn token_to_piece(&self, id: u32) -> Option<&[u8]> {
        self.pieces.get(id as usize).map(|p| &p[..])
    }

    /// The token's vocabulary string as stored in the model (`Ġhello`, `▁hello`, `<0x0A>`).
    pub fn token_str(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// The id of a vocabulary string, e.g. `<|im_end|>` (linear scan: not for hot paths).
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.tokens.iter().rposition(|t| t == text).map(|i| i as u32)
    }

    pub fn token_type(&self, id: u32) -> Option<TokenType> {
        self.types.get(id as usize).copied()
    }

    /// Control or unknown tokens: the ones `decode(.., skip_special = true)` hides.
    pub fn is_special(&self, id: u32) -> bool {
        matches!(self.token_type(id), Some(TokenType::Control | TokenType::Unknown))
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    pub fn kind(&self) -> VocabKind {
        self.kind
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    pub fn eos_id(&self) -> Option<u32> {
        self.eos
    }

    /// Whether `encode(.., add_special = true)` prepends BOS / appends EOS.
    pub fn adds_bos(&self) -> bool {
        self.add_bos
    }

    pub fn adds_eos(&self) -> bool {
        self.add_eos
    }

    /// Every id that ends generation, sorted: EOS, EOT and EOM from the metadata plus the
    /// usual end-of-turn markers found by text (for SmolLM2: `<|endoftext|>`, `<|im_end|>`).
    pub fn eos_token_ids(&self) -> &[u32] {
        &self.end_of_generation
    }

    pub fn is_end_of_generation(&self, id: u32) -> bool {
        self.end_of_generation.binary_search(&id).is_ok()
    }
}
