use crate::gguf::GgufError;

/// Why a tokenizer could not be built from a model file. Encoding itself only fails on
/// internal errors of the `tokenizers` crate, which are reported as [`TokenizerError::Encode`].
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("reading tokenizer metadata: {0}")]
    Gguf(#[from] GgufError),

    #[error("the model file has no `{0}` metadata key, so it carries no usable tokenizer")]
    MissingKey(&'static str),

    #[error(
        "tokenizer model `{0}` is not supported (supported: `gpt2` byte-level BPE and `llama` \
         SentencePiece)"
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
}
