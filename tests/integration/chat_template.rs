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

/// The formats rill falls back to for files without a template, against llama.cpp's built-in
/// C++ formatting of the same name (`tests/fixtures/chat_formats.json`,
/// `scripts/gen-chat-format-fixtures.py`).
#[test]
fn fallback_formats_render_as_llama_cpp_builtins() {
    use rill_model::family::chat_format::{ChatFormat, ALL};

    #[derive(Deserialize)]
    struct Render {
        format: String,
        messages: Vec<ChatMessage>,
        prompt: String,
    }
    let fixture: crate::common::Cases<Render> = crate::common::fixture("chat_formats.json");
    for format in ALL {
        assert!(fixture.cases.iter().any(|c| c.format == format.name), "no fixture for {}", format.name);
    }
    for case in &fixture.cases {
        let format = ChatFormat::named(&case.format).unwrap_or_else(|| panic!("unknown format {}", case.format));
        let template = ChatTemplate::new(format.source(), "", "").expect("compiles");
        assert_eq!(template.render(&case.messages, true).unwrap(), case.prompt, "{} {:?}", case.format, case.messages);
    }
}

/// A file without a template gets its family's format where the vocabulary has the family's
/// markers, and ChatML otherwise; `--chat-template` replaces any template.
#[test]
fn files_without_a_template_get_their_family_format() {
    use rill_model::family::chat_format::ChatFormat;
    use rill_model::loader::{load, KvBudget, LoadOptions};

    let root = rill::testing::repo_root().join("tests/fixtures/models");
    let expected = [("qwen3", "chatml"), ("smollm3", "chatml"), ("gemma2", "gemma"), ("gemma3", "gemma"), ("phi3", "phi3"), ("llama", "llama3"), ("mistral", "llama2")];
    for (family, format) in expected {
        let gguf = GgufFile::open(&root.join(format!("{family}.Q8_0.gguf"))).unwrap();
        let (cfg, tokenizer) = (rill_model::ModelConfig::from_gguf(&gguf).unwrap(), Tokenizer::from_gguf(&gguf).unwrap());
        assert_eq!(ChatFormat::for_model(cfg.arch, &tokenizer).name, format, "{family}");
    }
    // The default model's vocabulary has ChatML's markers but a Llama architecture: ChatML.
    let gguf = GgufFile::open(&rill::testing::default_model_path()).unwrap();
    assert_eq!(ChatFormat::for_model(rill_model::Architecture::Llama, &Tokenizer::from_gguf(&gguf).unwrap()).name, "chatml");

    let messages = [ChatMessage::new("user", "Hi")];
    let custom = LoadOptions { kv_budget: KvBudget::Tokens(64), chat_template: Some("{% for m in messages %}<<{{ m.content }}>>{% endfor %}".into()), ..LoadOptions::default() };
    let model = load(&root.join("qwen3.Q8_0.gguf"), rill_backend_cpu::CpuBackend::new(1).unwrap(), &custom, &mut |_, _| {}).unwrap();
    assert_eq!(model.chat_template.unwrap().render(&messages, true).unwrap(), "<<Hi>>");
}

/// Tool definitions, assistant calls and tool results render byte-identical to transformers
/// (`tests/fixtures/chat_template_tools.json`, regenerate with
/// `scripts/gen-tool-template-fixtures.py`): the tool templates of Qwen 2.5 and 3, Hermes 3,
/// Llama 3.1-3.3, Mistral Nemo, Mistral Small 3.2 and Devstral; `tojson` with and without
/// `indent`, the request's key order, and `enable_thinking` passed through.
#[test]
fn tool_conversations_render_like_transformers() {
    use rill_model::chat_template::{MessageToolCall, RenderOptions};
    #[derive(Deserialize)]
    struct Template {
        source: String,
        bos_token: String,
        eos_token: String,
    }
    #[derive(Deserialize)]
    struct ToolCase {
        template: String,
        messages: Vec<serde_json::Value>,
        tools: Vec<serde_json::Value>,
        variables: serde_json::Map<String, serde_json::Value>,
        rendered: String,
    }
    #[derive(Deserialize)]
    struct Fixture {
        now: u64,
        templates: std::collections::BTreeMap<String, Template>,
        cases: Vec<ToolCase>,
    }
    let fixture: Fixture = crate::common::fixture("chat_template_tools.json");
    assert!(fixture.cases.len() >= 20);
    let mut mismatches = Vec::new();
    for case in &fixture.cases {
        let t = &fixture.templates[&case.template];
        let template = ChatTemplate::new(&t.source, t.bos_token.clone(), t.eos_token.clone()).unwrap();
        assert!(template.takes_tools(), "{}", case.template);
        let messages: Vec<ChatMessage> = case
            .messages
            .iter()
            .map(|m| {
                let mut msg = ChatMessage::new(m["role"].as_str().unwrap(), m["content"].as_str().unwrap());
                msg.tool_call_id = m["tool_call_id"].as_str().map(str::to_string);
                for c in m["tool_calls"].as_array().into_iter().flatten() {
                    let f = &c["function"];
                    msg.tool_calls.push(MessageToolCall { id: c["id"].as_str().unwrap().into(), name: f["name"].as_str().unwrap().into(), arguments: f["arguments"].clone() });
                }
                msg
            })
            .collect();
        let variables: Vec<(String, serde_json::Value)> = case.variables.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let options = RenderOptions { add_generation_prompt: true, tools: &case.tools, variables: &variables, now: Some(fixture.now) };
        match template.render_with(&messages, &options) {
            Ok(got) if got == case.rendered => {}
            got => mismatches.push(format!("{} {:?}\n  transformers {:?}\n  rill         {got:?}", case.template, case.messages, case.rendered)),
        }
    }
    eprintln!("tool templates: {}/{} renders match transformers", fixture.cases.len() - mismatches.len(), fixture.cases.len());
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}
