//! The tokenizer on the real default model, against llama.cpp.
//!
//! `tests/fixtures/tokenize.json` holds llama.cpp's token ids for a few hundred strings
//! (regenerate with `scripts/gen-tokenizer-fixtures.py`). Every id must match: a prompt that
//! tokenizes differently from what the model was validated with is a silent quality bug.

use std::sync::OnceLock;

use rill_model::gguf::GgufFile;
use rill_model::tokenizer::{IncrementalDecoder, Tokenizer, VocabKind};
use serde::Deserialize;

type Fixture = crate::common::Cases<Case>;

#[derive(Deserialize)]
struct Case {
    text: String,
    /// llama.cpp with `parse_special = true`.
    ids: Vec<u32>,
    /// llama.cpp with `parse_special = false`, present only where it differs from `ids`.
    #[serde(default)]
    ids_parse_special_false: Option<Vec<u32>>,
}

fn tokenizer() -> &'static Tokenizer {
    static TOKENIZER: OnceLock<Tokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| {
        let gguf =
            GgufFile::open(&rill::testing::default_model_path()).expect("open default model");
        Tokenizer::from_gguf(&gguf).expect("build tokenizer")
    })
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| crate::common::fixture("tokenize.json"))
}

#[test]
fn token_ids_match_llama_cpp_for_every_fixture_string() {
    let tok = tokenizer();
    let cases = &fixture().cases;
    assert!(cases.len() >= 200, "fixture shrank to {} strings", cases.len());
    let mut mismatches = Vec::new();
    let mut checks = 0;
    for case in cases {
        let plain_expected = case.ids_parse_special_false.as_ref().unwrap_or(&case.ids);
        for (parse_special, expected) in [(true, &case.ids), (false, plain_expected)] {
            checks += 1;
            let got = tok.encode_with(&case.text, false, parse_special).expect("encode");
            if &got != expected {
                mismatches.push(format!(
                    "{:?} (parse_special={parse_special}):\n  llama.cpp {expected:?}\n  rill      {got:?}",
                    case.text
                ));
            }
        }
    }
    eprintln!(
        "tokenize fixture: {}/{checks} encodings of {} strings match llama.cpp",
        checks - mismatches.len(),
        cases.len()
    );
    assert!(mismatches.is_empty(), "{} mismatches:\n{}", mismatches.len(), mismatches.join("\n"));
}

#[test]
fn decode_inverts_encode() {
    let tok = tokenizer();
    for case in &fixture().cases {
        let ids = tok.encode(&case.text, false).unwrap();
        assert_eq!(tok.decode(&ids, false), case.text, "ids {ids:?}");
        // The fixture's own ids decode to the same text too.
        assert_eq!(tok.decode(&case.ids, false), case.text);
    }
}

#[test]
fn incremental_decoding_concatenates_to_the_full_decode() {
    let tok = tokenizer();
    for case in &fixture().cases {
        for skip_special in [false, true] {
            let mut decoder = IncrementalDecoder::new(tok, skip_special);
            let mut streamed: String = case.ids.iter().map(|&id| decoder.push(id)).collect();
            assert!(!decoder.has_pending(), "{:?} ends mid-character", case.text);
            streamed.push_str(&decoder.flush());
            assert_eq!(streamed, tok.decode(&case.ids, skip_special), "{:?}", case.text);
        }
    }
}

#[test]
fn special_tokens_of_the_default_model() {
    let tok = tokenizer();
    assert_eq!(tok.kind(), VocabKind::BytePairBpe);
    assert_eq!(tok.vocab_size(), 49152);
    assert_eq!((tok.bos_id(), tok.eos_id()), (Some(1), Some(2)));
    assert!(!tok.adds_bos(), "SmolLM2 sets add_bos_token = false");
    assert_eq!(tok.eos_token_ids(), &[0, 2], "<|endoftext|> and <|im_end|> end generation");
    assert_eq!(tok.token_str(2), Some("<|im_end|>"));
    assert_eq!(tok.token_to_piece(216), Some(&b" "[..]));
    assert!(tok.is_special(1) && !tok.is_special(216));
    let ids = tok.encode("<|im_start|>user\nHi<|im_end|>", true).unwrap();
    assert_eq!((ids[0], *ids.last().unwrap()), (1, 2));
    assert_eq!(tok.decode(&ids, true), "user\nHi");
}
