//! The bytes each token stands for.
//!
//! Decoding is done from a per-token byte table instead of through `tokenizers`' decoders:
//! the decoders return lossy `String`s per call, so a token that carries half of a UTF-8
//! character (byte tokens, split emoji) cannot be represented. With raw bytes per token,
//! full and incremental decoding are the same concatenation and cannot disagree.

use super::vocab::{TokenType, Vocab, VocabKind};

/// GPT-2's reversible byte → char map: printable Latin-1 bytes stand for themselves, the
/// other 68 bytes are shifted to U+0100.. so that every byte is a visible vocabulary char.
pub const fn byte_to_char_table() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut shifted = 0u32;
    let mut b = 0;
    while b < 256 {
        let v = b as u32;
        let printable = (0x21 <= v && v <= 0x7E) || (0xA1 <= v && v <= 0xAC) || (0xAE <= v && v <= 0xFF);
        let cp = if printable {
            v
        } else {
            shifted += 1;
            255 + shifted
        };
        table[b] = match char::from_u32(cp) {
            Some(c) => c,
            None => panic!("below U+0200 is always a valid char"),
        };
        b += 1;
    }
    table
}

/// [`byte_to_char_table`], computed once.
pub static BYTE_TO_CHAR: [char; 256] = byte_to_char_table();

/// The inverse of [`byte_to_char_table`], indexed by code point (all mapped chars are < U+0144).
fn char_to_byte_table() -> Vec<Option<u8>> {
    let mut inverse = vec![None; 0x200];
    for (b, c) in byte_to_char_table().iter().enumerate() {
        inverse[*c as usize] = Some(b as u8);
    }
    inverse
}

/// `<0xNN>` → the byte, for SentencePiece byte-fallback tokens.
pub fn parse_byte_token(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// The text bytes of every token as llama.cpp's `token_to_piece(special = true)` renders them:
/// control, unknown and user-defined tokens as their literal text, byte tokens as one byte,
/// normal tokens un-byte-mapped (BPE) or with `▁` turned back into spaces (SentencePiece).
/// Unused and undefined tokens render as nothing.
pub fn build_pieces(vocab: &Vocab) -> Vec<Box<[u8]>> {
    let inverse = char_to_byte_table();
    vocab
        .tokens
        .iter()
        .zip(&vocab.types)
        .map(|(text, ty)| {
            let bytes: Vec<u8> = match ty {
                TokenType::Control | TokenType::Unknown | TokenType::UserDefined => {
                    text.as_bytes().to_vec()
                }
                TokenType::Byte => parse_byte_token(text).map(|b| vec![b]).unwrap_or_default(),
                TokenType::Normal => match vocab.kind {
                    VocabKind::BytePairBpe => unmap_bytes(text, &inverse),
                    VocabKind::SentencePiece | VocabKind::Gemma4 => text.replace('\u{2581}', " ").into_bytes(),
                },
                TokenType::Unused | TokenType::Undefined => Vec::new(),
            };
            bytes.into_boxed_slice()
        })
        .collect()
}

/// Byte-level BPE token text → bytes. A char outside the byte map (only in hand-edited
/// vocabularies) is kept as its own UTF-8 rather than dropped.
fn unmap_bytes(text: &str, inverse: &[Option<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match inverse.get(c as usize).copied().flatten() {
            Some(b) => out.push(b),
            None => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_map_is_a_bijection_matching_gpt2() {
        let table = byte_to_char_table();
        assert_eq!(table[b'A' as usize], 'A');
        assert_eq!(table[b' ' as usize], 'Ġ'); // U+0120
        assert_eq!(table[b'\n' as usize], 'Ċ'); // U+010A
        assert_eq!(table[0], 'Ā'); // U+0100
        let inverse = char_to_byte_table();
        for b in 0..=255u8 {
            assert_eq!(inverse[table[b as usize] as usize], Some(b));
        }
        assert_eq!(unmap_bytes("ĠhelloĊ", &inverse), b" hello\n");
        // "ðŁĺĢ" is the byte-mapped form of U+1F600 (F0 9F 98 80).
        assert_eq!(unmap_bytes("ðŁĺĢ", &inverse), "😀".as_bytes());
    }

    #[test]
    fn byte_tokens_parse() {
        assert_eq!(parse_byte_token("<0x0A>"), Some(b'\n'));
        assert_eq!(parse_byte_token("<0xff>"), Some(0xFF));
        assert_eq!(parse_byte_token("<0x1>"), None);
        assert_eq!(parse_byte_token("0x41"), None);
    }
}
