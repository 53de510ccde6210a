use crate::gguf::GgufError;

/// Why a tokenizer could not be built from a model file, or (rarely) could not encode a text:
/// a regex that gave up, an error of the `tokenizers` crate (Hugging Face pipelines), or a
/// byte a SentencePiece vocabulary cannot spell.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("reading tokenizer metadata: {0}")]
    Gguf(#[from] GgufError),

    #[error("the model file has no `{0}` metadata key, so it carries no usable tokenizer")]
    MissingKey(&'static str),

    #[error(
        "tokenizer model `{0}` is not supported (supported: `gpt2` byte-level BPE, `llama` \
         SentencePiece and `gemma4`)"
    )]
    UnsupportedModel(String),

    #[error(
        "pre-tokenizer type `{0}` (tokenizer.ggml.pre) is not supported; supported: {supported}",
        supported = super::pretokenize::supported_names()
    )]
    UnknownPreTokenizer(String),

    #[error("invalid tokenizer metadata: {0}")]
    Invalid(String),

    #[error("building the tokenizer: {0}")]
    Build(String),

    #[error("encoding text: {0}")]
    Encode(String),

    /// A SentencePiece vocabulary without a token for this byte met a character it cannot
    /// spell (llama.cpp aborts there).
    #[error("the vocabulary has no token for byte 0x{0:02X} (no `<0x{0:02X}>` byte token)")]
    NoByteToken(u8),
}
