//! The chat formats families use, for model files that carry no template: each is llama.cpp's
//! built-in format of that name (`llm_chat_apply_template` in `src/llama-chat.cpp`) written as a
//! template. A family's format applies when its markers are single tokens of the vocabulary;
//! otherwise ChatML, which is what llama.cpp's server falls back to for every model.

use super::Architecture;
use crate::chat_template::{ChatTemplate, ChatTemplateError};
use crate::tokenizer::{Tokenizer, VocabKind};

/// A named chat format: its template and the vocabulary strings it needs as tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatFormat {
    /// llama.cpp's name for it.
    pub name: &'static str,
    source: &'static str,
    markers: &'static [&'static str],
}

pub const CHATML: ChatFormat = ChatFormat {
    name: "chatml",
    source: "{%- for m in messages -%}{{- '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' -}}{%- endfor -%}\
             {%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}",
    markers: &[],
};

pub const LLAMA3: ChatFormat = ChatFormat {
    name: "llama3",
    source: "{%- for m in messages -%}{{- '<|start_header_id|>' + m.role + '<|end_header_id|>\\n\\n' + (m.content | trim) + '<|eot_id|>' -}}{%- endfor -%}\
             {%- if add_generation_prompt -%}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}{%- endif -%}",
    markers: &["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
};

/// Llama 2 and Mistral's `[INST]` turns (llama.cpp's `llama2`: a system message is the first
/// line of the turn it opens; no generation prompt). Their SentencePiece vocabularies spell
/// `[INST]` in pieces, so it has no markers to look for.
pub const LLAMA2: ChatFormat = ChatFormat {
    name: "llama2",
    source: "{{- '[INST] ' -}}{%- for m in messages -%}\
             {%- if m.role == 'system' -%}{{- m.content + '\\n' -}}\
             {%- elif m.role == 'user' -%}{{- m.content + ' [/INST]' -}}\
             {%- else -%}{{- m.content + '</s>' -}}{%- if not loop.last -%}{{- '[INST] ' -}}{%- endif -%}{%- endif -%}\
             {%- endfor -%}",
    markers: &[],
};

/// Gemma: `model` for the assistant, system text merged into the next user turn.
pub const GEMMA: ChatFormat = ChatFormat {
    name: "gemma",
    source: "{%- set ns = namespace(system='') -%}{%- for m in messages -%}\
             {%- if m.role == 'system' -%}{%- set ns.system = ns.system + (m.content | trim) -%}\
             {%- else -%}{%- set role = 'model' if m.role == 'assistant' else m.role -%}\
             {{- '<start_of_turn>' + role + '\\n' -}}\
             {%- if ns.system and role != 'model' -%}{{- ns.system + '\\n\\n' -}}{%- set ns.system = '' -%}{%- endif -%}\
             {{- (m.content | trim) + '<end_of_turn>\\n' -}}{%- endif -%}{%- endfor -%}\
             {%- if add_generation_prompt -%}{{- '<start_of_turn>model\\n' -}}{%- endif -%}",
    markers: &["<start_of_turn>", "<end_of_turn>"],
};

pub const PHI3: ChatFormat = ChatFormat {
    name: "phi3",
    source: "{%- for m in messages -%}{{- '<|' + m.role + '|>\\n' + m.content + '<|end|>\\n' -}}{%- endfor -%}\
             {%- if add_generation_prompt -%}{{- '<|assistant|>\\n' -}}{%- endif -%}",
    markers: &["<|assistant|>", "<|end|>", "<|user|>"],
};

pub const ALL: [ChatFormat; 5] = [CHATML, LLAMA3, LLAMA2, GEMMA, PHI3];

impl ChatFormat {
    /// The template, as llama.cpp formats it (no BOS).
    pub fn source(&self) -> &'static str {
        self.source
    }

    /// The format called `name` (llama.cpp's names).
    pub fn named(name: &str) -> Option<ChatFormat> {
        ALL.into_iter().find(|f| f.name == name)
    }

    /// The format a file of `arch` with this vocabulary most likely wants: the family's own
    /// where its markers are tokens (Llama: Llama 3's, else `[INST]` for a SentencePiece
    /// vocabulary as Llama 2's and Mistral's are), else ChatML.
    pub fn for_model(arch: Architecture, tokenizer: &Tokenizer) -> ChatFormat {
        let sentencepiece = tokenizer.kind() == VocabKind::SentencePiece;
        let candidates: &[ChatFormat] = match arch {
            Architecture::Llama if sentencepiece => &[LLAMA3, LLAMA2],
            Architecture::Llama => &[LLAMA3],
            Architecture::Gemma2 | Architecture::Gemma3 => &[GEMMA],
            Architecture::Phi3 => &[PHI3],
            Architecture::Qwen2 | Architecture::Qwen3 | Architecture::Qwen2Moe | Architecture::Qwen3Moe | Architecture::SmolLm3 => &[],
        };
        let has_all = |f: &ChatFormat| f.markers.iter().all(|m| tokenizer.token_id(m).is_some());
        candidates.iter().copied().find(has_all).unwrap_or(CHATML)
    }

    /// The format compiled for `tokenizer`'s BOS and EOS. Like llama.cpp's built-in formats it
    /// writes no BOS itself, so it starts with one where the vocabulary adds BOS (rill's chat
    /// path tokenizes a rendered prompt without adding special tokens).
    pub fn compile(&self, tokenizer: &Tokenizer) -> Result<ChatTemplate, ChatTemplateError> {
        let (bos, eos) = special_strings(tokenizer);
        let source = if tokenizer.adds_bos() { format!("{{{{- bos_token -}}}}{}", self.source) } else { self.source.to_string() };
        ChatTemplate::new(&source, bos, eos)
    }
}

/// `source` compiled for `tokenizer`'s BOS and EOS (a `--chat-template` override).
pub fn compile_template(source: &str, tokenizer: &Tokenizer) -> Result<ChatTemplate, ChatTemplateError> {
    let (bos, eos) = special_strings(tokenizer);
    ChatTemplate::new(source, bos, eos)
}

/// The vocabulary strings of BOS and EOS (empty where the model has none).
fn special_strings(tokenizer: &Tokenizer) -> (String, String) {
    let text = |id: Option<u32>| id.and_then(|id| tokenizer.token_str(id)).unwrap_or_default().to_string();
    (text(tokenizer.bos_id()), text(tokenizer.eos_id()))
}
