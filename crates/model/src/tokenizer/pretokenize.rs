//! Pre-tokenizer regexes for byte-level BPE, keyed by `tokenizer.ggml.pre`.
//!
//! GGUF files name the pre-tokenizer instead of storing its regexes, so the table below is
//! llama.cpp's `llm_tokenizer_bpe` (src/llama-vocab.cpp) and the flags its vocabulary loader
//! ties to each name, copied string for string: llama.cpp adapted several Hugging Face
//! regexes to its `std::regex` (`(?i:'s|…)` spelled `'[sS]|…`, lookahead emulation for
//! `\p{Lu}`), and a GGUF model behaves as llama.cpp runs it. `split.rs` runs them the way
//! llama.cpp does. Non-ASCII regex text is written as `\u{..}` escapes: editors and tools may
//! NFC-normalize literal characters, which silently changes ranges such as U+1FD6-U+1FDB.

use super::TokenizerError;

/// How one family of pre-tokenizers splits text, plus the BPE flags llama.cpp ties to it.
#[derive(Debug, Clone, Copy)]
pub struct PreTokenizerSpec {
    pub regexes: &'static [&'static str],
    /// A word that is itself in the vocabulary is emitted whole, without running merges.
    pub ignore_merges: bool,
    /// Whether a BOS token is added when the GGUF has no `add_bos_token` key.
    pub add_bos_default: bool,
    /// The vocabulary has no BOS token whatever the metadata says (chatglm, glm4).
    pub no_bos: bool,
}

const GPT2: &str = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
const LLAMA3: &str = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const QWEN2: &str = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const LLAMA3_SET: &[&str] = &[LLAMA3];
const JAIS2_SET: &[&str] = &["(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s{512}(?!\\S)|\\s{256}(?!\\S)|\\s{128}(?!\\S)|\\s{64}(?!\\S)|\\s{32}(?!\\S)|\\s{16}(?!\\S)|\\s{8}(?!\\S)|\\s{4}(?!\\S)|\\s{1,2}(?!\\S)|\\s{1}"];
const DEEPSEEK_LLM_SET: &[&str] = &["[\r\n]", "\\s?[A-Za-z\u{b5}\u{c0}-\u{d6}\u{d8}-\u{f6}\u{f8}-\u{1ba}\u{1bc}-\u{1bf}\u{1c4}-\u{293}\u{295}-\u{2af}\u{370}-\u{373}\u{376}\u{377}\u{37b}-\u{37d}\u{37f}\u{386}\u{388}-\u{38a}\u{38c}\u{38e}-\u{3a1}\u{3a3}-\u{3f5}\u{3f7}-\u{481}\u{48a}-\u{52f}\u{531}-\u{556}\u{10a0}-\u{10c5}\u{13a0}-\u{13f5}\u{13f8}-\u{13fd}\u{1c90}-\u{1cba}\u{1cbd}-\u{1cbf}\u{1d00}-\u{1d2b}\u{1d6b}-\u{1d77}\u{1d79}-\u{1d9a}\u{1e00}-\u{1f15}\u{1f18}-\u{1f1d}\u{1f20}-\u{1f45}\u{1f48}-\u{1f4d}\u{1f50}-\u{1f57}\u{1f59}\u{1f5b}\u{1f5d}\u{1f5f}-\u{1f7d}\u{1f80}-\u{1fb4}\u{1fb6}-\u{1fbc}\u{1fbe}\u{1fc2}-\u{1fc4}\u{1fc6}-\u{1fcc}\u{1fd0}-\u{1fd3}\u{1fd6}-\u{1fdb}\u{1fe0}-\u{1fec}\u{1ff2}-\u{1ff4}\u{1ff6}-\u{1ffc}\u{2102}\u{2107}\u{210a}-\u{2113}\u{2115}\u{2119}-\u{211d}\u{2124}\u{2126}\u{2128}\u{212a}-\u{212d}\u{212f}-\u{2134}\u{2139}\u{213c}-\u{213f}\u{2145}-\u{2149}\u{214e}\u{2183}\u{2184}\u{2c00}-\u{2c7b}\u{2c7e}-\u{2ce4}\u{2ceb}-\u{2cee}\u{2cf2}\u{2cf3}\u{a640}-\u{a66d}\u{a680}-\u{a69b}\u{a722}-\u{a76f}\u{a771}-\u{a787}\u{a78b}-\u{a78e}\u{ab70}-\u{abbf}\u{fb00}-\u{fb06}\u{fb13}-\u{fb17}\u{ff21}-\u{ff3a}\u{ff41}-\u{ff5a}\u{10400}-\u{1044f}\u{104b0}-\u{104d3}\u{104d8}-\u{104fb}\u{10c80}-\u{10cb2}\u{10cc0}-\u{10cf2}\u{118a0}-\u{118df}\u{1e900}-\u{1e943}]+", "\\s?[!-/:-~\u{ff01}-\u{ff0f}\u{ff1a}-\u{ff5e}\u{2018}-\u{201f}\u{3000}-\u{3002}]+", "\\s+$", "[\u{4e00}-\u{9fa5}\u{800}-\u{4e00}\u{ac00}-\u{d7ff}]+", "\\p{N}+"];
const DEEPSEEK3_SET: &[&str] = &["\\p{N}{1,3}", "[\u{4e00}-\u{9fa5}\u{3040}-\u{309f}\u{30a0}-\u{30ff}]+", "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"];
const SPARK2_5_SET: &[&str] = &["\\p{N}{1,3}", "[\u{4e00}-\u{9fa5}\u{3040}-\u{309f}\u{30a0}-\u{30ff}]+", "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+|[\r\n]|\\s+(?!\\S)|\\s+", "\\p{N}"];
const YOUTU_SET: &[&str] = &["[\u{ac00}-\u{d7a3}\u{3131}-\u{318e}]+|[\u{ff01}\u{2026}\u{201c}\u{201d}\u{2018}\u{2019}\u{2014}\u{ff1a}\u{ff1b}\u{ff0c}\u{3001}-\u{303f}\u{fe30}-\u{fe4f}]+|[\u{3105}-\u{312f}]+|[\u{4e00}-\u{9fa5}\u{3040}-\u{309f}\u{30a0}-\u{30ff}]+", "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"];
const DEEPSEEK_CODER_SET: &[&str] = &["[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", "[\u{4e00}-\u{9fa5}\u{800}-\u{4e00}\u{ac00}-\u{d7ff}]+", "\\p{N}"];
const FALCON_SET: &[&str] = &["[\\p{P}\\$\\+<=>\\^~\\|`]+", GPT2, "[0-9][0-9][0-9]"];
const DIGITS_GPT2_SET: &[&str] = &["\\p{N}", GPT2];
const GPT2_SET: &[&str] = &[GPT2];
const QWEN2_SET: &[&str] = &[QWEN2];
const QWEN35_SET: &[&str] = &["(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"];
const PORO_SET: &[&str] = &[" ?[^(\\s|.,!?\u{2026}\u{3002}\u{ff0c}\u{3001}\u{964}\u{6d4}\u{60c})]+"];
const VIKING_SET: &[&str] = &[" ?[^(\\s|.,!?\u{2026}\u{3002}\u{ff0c}\u{3001}\u{964}\u{6d4}\u{60c})]+", "\\p{N}"];
const TEKKEN_SET: &[&str] = &["[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"];
const CHAMELEON_SET: &[&str] = &["<sentinel:[0-9]+>", "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z", "([\\t\\n]|    |  )", "\\p{N}", "[\\p{P}!-/:-@\\[-`{-~]", GPT2];
const GPT4O_SET: &[&str] = &["[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"];
const GRANITE_EMB_MULTI_SET: &[&str] = &["[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}\\p{M}])([^a-z]))*((?=[\\p{L}\\p{M}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}\\p{M}])([^a-z]))+((?=[\\p{L}\\p{M}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"];
const BAILINGMOE_SET: &[&str] = &["'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+"];
const SEED_CODER_SET: &[&str] = &["(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1}| ?[^\\s\\p{L}\\p{N}\\r\\n]+|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"];
const UFAKZEKA_SET: &[&str] = &["[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"];
const LAGUNA_SET: &[&str] = &["[^\\n]+|[\\n]+", QWEN2];
const EXAONE_MOE_SET: &[&str] = &["(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?(?:\\p{L}\\p{M}*(?: \\p{L}\\p{M}*)*)+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]?|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+"];
const NEWLINES_SET: &[&str] = &["[^\\n]+|[\\n]+"];
const MINICPM5_SET: &[&str] = &["\\p{N}{1,3}", "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}+| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"];
const DEFAULT_SET: &[&str] = &["[\\p{P}\\$\\+<=>\\^~\\|]+", GPT2, "\\p{N}+", "[0-9][0-9][0-9]"];

const fn spec(regexes: &'static [&'static str]) -> PreTokenizerSpec {
    PreTokenizerSpec { regexes, ignore_merges: false, add_bos_default: false, no_bos: false }
}

const fn ignore_merges(s: PreTokenizerSpec) -> PreTokenizerSpec {
    PreTokenizerSpec { ignore_merges: true, ..s }
}

const fn add_bos(s: PreTokenizerSpec) -> PreTokenizerSpec {
    PreTokenizerSpec { add_bos_default: true, ..s }
}

const fn no_bos(s: PreTokenizerSpec) -> PreTokenizerSpec {
    PreTokenizerSpec { no_bos: true, ..s }
}

/// `(names, spec)`; the names are llama.cpp's spellings of `tokenizer.ggml.pre`. Left out, and
/// rejected rather than approximated: the ones llama.cpp splits with hand-written or unfinished
/// code (kimi-k2, afmoe, tiny_aya/cohere2moe, superbpe's zero-width splits, whitespace) and the
/// raw-UTF-8 ones on a `gpt2` model (gemma4/granite-embed-multi-311m, sarvam-moe, mmbert);
/// `gemma4` vocabularies (`tokenizer.ggml.model = gemma4`) are supported through [`GEMMA4`].
const TABLE: &[(&[&str], PreTokenizerSpec)] = &[
    (&["", "default"], spec(DEFAULT_SET)),
    (&["llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "jina-v5-nano"], add_bos(ignore_merges(spec(LLAMA3_SET)))),
    (&["dbrx", "smaug-bpe"], spec(LLAMA3_SET)),
    (&["chatglm-bpe"], no_bos(spec(LLAMA3_SET))),
    (&["glm4", "glm5"], no_bos(ignore_merges(spec(LLAMA3_SET)))),
    (&["jais-2"], spec(JAIS2_SET)),
    (&["minicpm5"], ignore_merges(spec(MINICPM5_SET))),
    (&["deepseek-llm"], spec(DEEPSEEK_LLM_SET)),
    (&["deepseek-coder"], spec(DEEPSEEK_CODER_SET)),
    (&["deepseek-v3", "hunyuan-dense", "joyai-llm", "hy_v4"], spec(DEEPSEEK3_SET)),
    (&["spark2_5"], spec(SPARK2_5_SET)),
    (&["youtu"], ignore_merges(spec(YOUTU_SET))),
    (&["falcon"], spec(FALCON_SET)),
    (
        &[
            "gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de", "a.x-4.0", "mellum", "modern-bert", "jina-v1-en",
            "jina-v2-code", "roberta-bpe", "exaone4", "mpt", "olmo", "jais", "trillion", "granite-docling",
        ],
        spec(GPT2_SET),
    ),
    (&["starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b", "mellum2"], spec(DIGITS_GPT2_SET)),
    (&["qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez", "stablelm2", "hunyuan", "solar-open", "grok-2"], spec(QWEN2_SET)),
    (&["qwen35"], spec(QWEN35_SET)),
    (&["poro-chat", "bloom", "gpt3-finnish"], spec(PORO_SET)),
    (&["viking"], spec(VIKING_SET)),
    (&["tekken"], add_bos(ignore_merges(spec(TEKKEN_SET)))),
    (&["chameleon"], add_bos(spec(CHAMELEON_SET))),
    (&["gpt-4o", "llama4", "kanana2", "talkie", "minimax-m2"], spec(GPT4O_SET)),
    (&["granite-embed-multi-97m"], ignore_merges(spec(GRANITE_EMB_MULTI_SET))),
    (&["bailingmoe", "bailingmoe2", "llada-moe"], spec(BAILINGMOE_SET)),
    (&["seed-coder"], spec(SEED_CODER_SET)),
    (&["ufakzeka"], spec(UFAKZEKA_SET)),
    (&["laguna"], spec(LAGUNA_SET)),
    (&["exaone-moe"], spec(EXAONE_MOE_SET)),
];

/// The pre-tokenizer of `gemma4` vocabularies (BPE on raw UTF-8 with `▁` for spaces): words
/// are runs of newlines and runs of everything else.
pub const GEMMA4: PreTokenizerSpec = add_bos(spec(NEWLINES_SET));

/// Every accepted `tokenizer.ggml.pre` value, for error messages.
pub fn supported_names() -> String {
    let names: Vec<&str> = TABLE.iter().flat_map(|(names, _)| names.iter().copied()).filter(|n| !n.is_empty()).collect();
    names.join(", ")
}

/// The pre-tokenizer a byte-level BPE vocabulary declares. Unknown names are an error rather
/// than a silent fallback, as in llama.cpp: a wrong regex tokenizes plausibly but differently
/// from training.
pub fn spec_for(pre: &str) -> Result<PreTokenizerSpec, TokenizerError> {
    TABLE.iter().find(|(names, _)| names.contains(&pre)).map(|(_, spec)| *spec).ok_or_else(|| TokenizerError::UnknownPreTokenizer(pre.to_string()))
}

#[cfg(test)]
mod tests {
    use super::super::split::Splitter;
    use super::*;

    #[test]
    fn every_regex_compiles() {
        for (names, spec) in TABLE.iter().chain([(&["gemma4"][..], GEMMA4)].iter()) {
            Splitter::new(spec.regexes).unwrap_or_else(|e| panic!("{names:?}: {e}"));
        }
    }

    #[test]
    fn names_resolve_and_unknown_is_an_error() {
        assert!(spec_for("smollm").unwrap().regexes.len() == 2);
        assert!(spec_for("llama-bpe").unwrap().ignore_merges);
        assert!(!spec_for("smaug-bpe").unwrap().ignore_merges);
        assert!(spec_for("qwen2").is_ok() && spec_for("gpt-2").is_ok() && spec_for("").is_ok());
        let err = spec_for("no-such-pre").unwrap_err().to_string();
        assert!(err.contains("no-such-pre") && err.contains("smollm"), "{err}");
    }
}
