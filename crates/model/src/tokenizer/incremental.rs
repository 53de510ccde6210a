//! Streaming detokenization: one token id in, the newly completed text out.
//!
//! vLLM and TGI re-decode a small window of previous tokens (`prefix_offset` / `read_offset`)
//! and diff the strings, because `tokenizers`' decoders are the only place that knows how a
//! token renders in context (SentencePiece's leading space, byte fallback). Here the tokenizer
//! exposes exactly that context as a [`DecodeState`] plus the raw bytes of every token, so the
//! decoder can append bytes and cut at the last complete UTF-8 character: O(1) per token, and
//! the concatenated output equals [`Tokenizer::decode`] by construction, including U+FFFD for
//! byte sequences that can never become valid.

use super::{DecodeState, Tokenizer};

/// Turns a stream of token ids into text chunks that never end inside a UTF-8 character.
///
/// `T` is anything that derefs to the tokenizer: `&Tokenizer` or `Arc<Tokenizer>`.
#[derive(Debug, Clone)]
pub struct IncrementalDecoder<T: AsRef<Tokenizer>> {
    tokenizer: T,
    skip_special: bool,
    state: DecodeState,
    /// Bytes of an incomplete UTF-8 character (at most 3) held back from the last call.
    pending: Vec<u8>,
}

impl<T: AsRef<Tokenizer>> IncrementalDecoder<T> {
    pub fn new(tokenizer: T, skip_special: bool) -> Self {
        IncrementalDecoder {
            tokenizer,
            skip_special,
            state: DecodeState::new(),
            pending: Vec::new(),
        }
    }

    /// A decoder for tokens that continue a prompt (generated text): a SentencePiece word at
    /// the start or after a special token keeps its leading space, as llama-server streams it
    /// (`"The capital of France is"` + `▁Paris` is `" Paris"`). [`new`](Self::new) decodes a
    /// whole encoded text instead, removing the space encoding prefixed.
    pub fn continuing(tokenizer: T, skip_special: bool) -> Self {
        IncrementalDecoder { state: DecodeState::continuing(), ..IncrementalDecoder::new(tokenizer, skip_special) }
    }

    /// Feeds one token; returns the text it completes (often empty mid-character).
    pub fn push(&mut self, id: u32) -> String {
        self.tokenizer.as_ref().append_piece(
            id,
            self.skip_special,
            &mut self.state,
            &mut self.pending,
        );
        let mut out = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(valid) => {
                    out.push_str(valid);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    // Cannot fail: the first `valid_up_to` bytes are valid UTF-8 by definition.
                    out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match e.error_len() {
                        // Invalid whatever follows: replace it now, as `from_utf8_lossy` does.
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = &after[bad..];
                        }
                        // A character cut short: wait for the next token.
                        None => {
                            rest = after;
                            break;
                        }
                    }
                }
            }
        }
        let keep = rest.len();
        self.pending.drain(..self.pending.len() - keep);
        out
    }

    /// Ends the stream: an incomplete character still held back becomes U+FFFD (again as
    /// `from_utf8_lossy` renders a truncated tail).
    pub fn flush(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }

    /// Whether bytes of an unfinished character are being held back.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::tests::{tiny_bpe, tiny_spm};

    fn stream(tok: &Tokenizer, ids: &[u32], skip_special: bool) -> Vec<String> {
        let mut dec = IncrementalDecoder::new(tok, skip_special);
        let mut chunks: Vec<String> = ids.iter().map(|&id| dec.push(id)).collect();
        chunks.push(dec.flush());
        chunks
    }

    fn byte_ids(tok: &Tokenizer, bytes: &[u8]) -> Vec<u32> {
        // In the tiny byte-level vocabulary, token `i` for i < 256 is byte `i`.
        assert_eq!(tok.token_to_piece(0xF0), Some(&[0xF0u8][..]));
        bytes.iter().map(|&b| u32::from(b)).collect()
    }

    #[test]
    fn emoji_split_across_byte_tokens_is_held_back_until_complete() {
        let tok = tiny_bpe();
        let ids = byte_ids(&tok, "a😀b".as_bytes());
        let chunks = stream(&tok, &ids, false);
        assert_eq!(chunks, ["a", "", "", "", "😀", "b", ""]);
        assert_eq!(chunks.concat(), tok.decode(&ids, false));
    }

    #[test]
    fn zwj_sequence_streams_to_the_same_text() {
        let tok = tiny_bpe();
        let text = "👨‍👩‍👧 ok";
        let ids = byte_ids(&tok, text.as_bytes());
        let chunks = stream(&tok, &ids, false);
        assert!(chunks.iter().all(|c| !c.contains('\u{FFFD}')));
        assert_eq!(chunks.concat(), text);
    }

    #[test]
    fn invalid_and_truncated_bytes_match_lossy_decode() {
        let tok = tiny_bpe();
        // A stray continuation byte, a sequence broken by ASCII, and a truncated tail.
        let bytes = [0x80, b'x', 0xE2, 0x82, b'y', 0xF0, 0x9F];
        let ids = byte_ids(&tok, &bytes);
        let chunks = stream(&tok, &ids, false);
        assert_eq!(chunks.concat(), String::from_utf8_lossy(&bytes));
        assert_eq!(chunks.concat(), tok.decode(&ids, false));
        assert_eq!(chunks.last().map(String::as_str), Some("\u{FFFD}"));
    }

    #[test]
    fn special_tokens_render_or_skip_consistently() {
        let tok = tiny_bpe();
        let ids = tok.encode("hi<|end|>there", false).unwrap();
        assert!(ids.contains(&tok.token_id("<|end|>").unwrap()));
        for skip in [false, true] {
            assert_eq!(stream(&tok, &ids, skip).concat(), tok.decode(&ids, skip));
        }
        assert_eq!(tok.decode(&ids, true), "hithere");
    }

    #[test]
    fn sentencepiece_leading_space_is_removed_once_per_fragment() {
        let tok = tiny_spm();
        let ids = tok.encode("ab ab", true).unwrap();
        let chunks = stream(&tok, &ids, true);
        assert_eq!(chunks.concat(), "ab ab");
        assert_eq!(chunks.concat(), tok.decode(&ids, true));
        let with_bos = stream(&tok, &ids, false).concat();
        assert_eq!(with_bos, "<s>ab ab");
        // Generated tokens continue a prompt: their leading spaces stay.
        let mut generated = IncrementalDecoder::continuing(&tok, false);
        let text: String = ids.iter().map(|&id| generated.push(id)).collect();
        assert_eq!(text + &generated.flush(), "<s> ab ab");
    }
}
