//! Unit tests on hand-made vocabularies; the real-model checks against llama.cpp live in
//! `tests/integration/tokenizer.rs`.

use super::pieces::byte_to_char_table;
use super::*;

/// Byte-level BPE: tokens 0..256 are the 256 byte chars (so id `b` decodes to byte `b`),
/// then a few merges and special tokens.
pub(crate) fn tiny_bpe() -> Tokenizer {
    tiny_bpe_with(None)
}

fn tiny_bpe_with(add_bos: Option<bool>) -> Tokenizer {
    let mut tokens: Vec<String> = byte_to_char_table().iter().map(|c| c.to_string()).collect();
    let mut types = vec![TokenType::Normal; 256];
    for (text, ty) in [
        ("th", TokenType::Normal),
        ("the", TokenType::Normal),
        ("hi", TokenType::Normal),
        ("<|end|>", TokenType::Control),
        ("<|endoftext|>", TokenType::Control),
        ("<u>", TokenType::UserDefined),
        ("<s>", TokenType::Control),
    ] {
        tokens.push(text.to_string());
        types.push(ty);
    }
    let merges = ["t h", "th e", "h i"].map(String::from).to_vec();
    let vocab = Vocab { pre: "gpt-2".into(), merges, bos: Some(262), eos: Some(259), add_bos, ..Vocab::new(VocabKind::BytePairBpe, tokens, types) };
    Tokenizer::from_vocab(vocab).expect("tiny BPE vocabulary builds")
}

/// SentencePiece: `<unk>`, `<s>`, `</s>`, the 256 byte tokens, then scored pieces.
pub(crate) fn tiny_spm() -> Tokenizer {
    let mut tokens = vec!["<unk>".to_string(), "<s>".into(), "</s>".into()];
    let mut types = vec![TokenType::Unknown, TokenType::Control, TokenType::Control];
    let mut scores = vec![0.0f32; 3];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(TokenType::Byte);
        scores.push(0.0);
    }
    for (piece, score) in
        [("▁", -3.0), ("a", -4.0), ("b", -4.0), ("ab", -1.5), ("▁a", -2.0), ("▁ab", -1.0)]
    {
        tokens.push(piece.to_string());
        types.push(TokenType::Normal);
        scores.push(score);
    }
    let vocab = Vocab { pre: "default".into(), scores, bos: Some(1), eos: Some(2), unk: Some(0), ..Vocab::new(VocabKind::SentencePiece, tokens, types) };
    Tokenizer::from_vocab(vocab).expect("tiny SentencePiece vocabulary builds")
}

fn id(tok: &Tokenizer, text: &str) -> u32 {
    tok.token_id(text).unwrap_or_else(|| panic!("{text:?} not in vocabulary"))
}

#[test]
fn byte_level_bpe_merges_and_maps_spaces() {
    let tok = tiny_bpe();
    let the = id(&tok, "the");
    // " there" is one regex piece: "Ġ" + "the" + "r" + "e".
    assert_eq!(tok.encode(" there", false).unwrap(), vec![u32::from(b' '), the, 114, 101]);
    assert_eq!(tok.decode(&[u32::from(b' '), the, 114, 101], false), " there");
    assert_eq!(tok.encode("", true).unwrap(), Vec::<u32>::new());
}

#[test]
fn special_tokens_are_parsed_only_when_asked() {
    let tok = tiny_bpe();
    let end = id(&tok, "<|end|>");
    assert_eq!(tok.encode("hi<|end|>", false).unwrap(), vec![id(&tok, "hi"), end]);
    let plain = tok.encode_with("hi<|end|>", false, false).unwrap();
    assert!(!plain.contains(&end));
    assert_eq!(tok.decode(&plain, false), "hi<|end|>");
    // User-defined tokens are matched either way and never skipped.
    let u = id(&tok, "<u>");
    assert_eq!(tok.encode_with("<u>", false, false).unwrap(), vec![u]);
    assert_eq!(tok.decode(&[u, end], true), "<u>");
    assert!(tok.is_special(end) && !tok.is_special(u) && !tok.is_special(id(&tok, "the")));
}

#[test]
fn bos_follows_metadata_and_end_of_generation_includes_known_markers() {
    let tok = tiny_bpe();
    assert!(!tok.adds_bos(), "gpt-2 pre-tokenizer defaults to no BOS");
    assert_eq!(tok.encode("hi", true).unwrap(), vec![id(&tok, "hi")]);
    let with_bos = tiny_bpe_with(Some(true));
    assert_eq!(with_bos.encode("hi", true).unwrap(), vec![262, id(&tok, "hi")]);
    // EOS (259 = "<|end|>") plus "<|endoftext|>" found by its text.
    assert_eq!(tok.eos_token_ids(), &[259, 260]);
    assert!(tok.is_end_of_generation(260) && !tok.is_end_of_generation(262));
    assert_eq!((tok.bos_id(), tok.eos_id(), tok.vocab_size()), (Some(262), Some(259), 263));
}

#[test]
fn sentencepiece_merges_by_score_with_space_prefix_and_byte_fallback() {
    let tok = tiny_spm();
    let ab = id(&tok, "▁ab");
    assert!(tok.adds_bos());
    assert_eq!(tok.encode("ab ab", true).unwrap(), vec![1, ab, ab]);
    // The space prefix is added again after a special token, and removed again on decode.
    assert_eq!(tok.encode("ab</s>ab", false).unwrap(), vec![ab, 2, ab]);
    assert_eq!(tok.decode(&[ab, 2, ab], false), "ab</s>ab");
    // 'c' is not a piece: its byte token instead.
    let ids = tok.encode("ac", false).unwrap();
    assert_eq!(ids, vec![id(&tok, "▁a"), id(&tok, "<0x63>")]);
    assert_eq!(tok.decode(&ids, true), "ac");
    let emoji = tok.encode("😀", false).unwrap();
    assert_eq!(emoji.len(), 5, "▁ + four byte tokens");
    assert_eq!(tok.decode(&emoji, false), "😀");
}

#[test]
fn unsupported_configurations_fail_clearly() {
    let mut vocab = Vocab { pre: "mystery-pre".into(), ..Vocab::new(VocabKind::BytePairBpe, vec!["a".into()], vec![TokenType::Normal]) };
    let err = Tokenizer::from_vocab(vocab.clone()).unwrap_err();
    assert!(
        matches!(err, TokenizerError::UnknownPreTokenizer(ref p) if p == "mystery-pre"),
        "{err}"
    );
    vocab.kind = VocabKind::SentencePiece;
    let err = Tokenizer::from_vocab(vocab).unwrap_err();
    assert!(err.to_string().contains("tokenizer.ggml.scores"), "{err}");
}

#[test]
fn tokenizer_and_decoder_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Tokenizer>();
    assert_send_sync::<IncrementalDecoder<std::sync::Arc<Tokenizer>>>();
}

#[test]
fn sentencepiece_ties_merge_leftmost_and_a_missing_byte_token_is_an_error() {
    // All scores equal (as in GGUFs converted from tokenizer.json alone): leftmost pair first.
    let tokens = ["<unk>", "<s>", "</s>", "▁", "a", "b", "c", "▁a", "ab", "bc"].map(String::from).to_vec();
    let mut types = vec![TokenType::Unknown, TokenType::Control, TokenType::Control];
    types.resize(tokens.len(), TokenType::Normal);
    let scores = vec![-1.0; tokens.len()];
    let tok = Tokenizer::from_vocab(Vocab { scores, bos: Some(1), eos: Some(2), ..Vocab::new(VocabKind::SentencePiece, tokens, types) }).unwrap();
    assert_eq!(tok.encode("abc", false).unwrap(), vec![id(&tok, "▁a"), id(&tok, "bc")]);
    // No `<0x78>` and no "x": llama.cpp aborts; rill reports it.
    assert!(matches!(tok.encode("ax", false), Err(TokenizerError::NoByteToken(b'x'))));
}

#[test]
fn bpe_whole_words_follow_the_pre_tokenizer_and_unknown_bytes_are_dropped() {
    let bpe = |pre: &str| {
        let tokens = ["a", "b", "c", "abc"].map(String::from).to_vec();
        Tokenizer::from_vocab(Vocab { pre: pre.into(), ..Vocab::new(VocabKind::BytePairBpe, tokens, vec![TokenType::Normal; 4]) }).unwrap()
    };
    // "abc" has no merges: only llama3-family pre-tokenizers look the whole word up.
    assert_eq!(bpe("llama-bpe").encode("abc", false).unwrap(), vec![3]);
    assert_eq!(bpe("smaug-bpe").encode("abc", false).unwrap(), vec![0, 1, 2]);
    // The bytes of "é" have no tokens: llama.cpp drops them silently.
    assert_eq!(bpe("smaug-bpe").encode("aéb", false).unwrap(), vec![0, 1]);
}
