//! The default model's chat template rendered by rill against llama.cpp's `/apply-template`
//! (`tests/fixtures/chat_template.json`, regenerate with `scripts/gen-tokenizer-fixtures.py`).
//! The prompt must be byte-identical: one stray newline changes what the model sees.

use rill_model::chat_template::{ChatMessage, ChatTemplate};
use rill_model::gguf::GgufFile;
use rill_model::tokenizer::Tokenizer;
use serde::Deserialize;

type Fixture = crate::common::Cases<Case>;

#[derive(Deserialize)]
struct Case {
    messages: Vec<ChatMessage>,
    add_generation_prompt: bool,
    prompt: String,
}

fn load() -> (GgufFile, Fixture) {
    let gguf = GgufFile::open(&rill::testing::default_model_path()).expect("open default model");
    (gguf, crate::common::fixture("chat_template.json"))
}

#[test]
fn renders_byte_identical_to_llama_cpp() {
    let (gguf, fixture) = load();
    let template = ChatTemplate::from_gguf(&gguf).expect("compile the model's template");
    assert!(fixture.cases.len() >= 16, "fixture shrank to {} renders", fixture.cases.len());
    let mut mismatches = Vec::new();
    for case in &fixture.cases {
        let got = template.render(&case.messages, case.add_generation_prompt).expect("render");
        if got != case.prompt {
            mismatches.push(format!(
                "{:?}\n  llama.cpp {:?}\n  rill      {got:?}",
                case.messages, case.prompt
            ));
        }
    }
    eprintln!(
        "chat template fixture: {}/{} renders match llama.cpp",
        fixture.cases.len() - mismatches.len(),
        fixture.cases.len()
    );
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn special_tokens_come_from_the_vocabulary() {
    let (gguf, _) = load();
    let template = ChatTemplate::from_gguf(&gguf).unwrap();
    assert_eq!((template.bos_token(), template.eos_token()), ("<|im_start|>", "<|im_end|>"));
}

#[test]
fn rendered_prompt_tokenizes_with_chat_markers_as_single_tokens() {
    let (gguf, _) = load();
    let template = ChatTemplate::from_gguf(&gguf).unwrap();
    let tokenizer = Tokenizer::from_gguf(&gguf).unwrap();
    let prompt = template.render(&[ChatMessage::new("user", "Hi")], true).unwrap();
    let ids = tokenizer.encode(&prompt, true).unwrap();
    let im_start = ids.iter().filter(|&&id| id == 1).count();
    assert_eq!(im_start, 3, "system, user and assistant headers: {ids:?}");
    assert_eq!(tokenizer.decode(&ids, false), prompt);
}
