//! Rendering a model's chat template (`tokenizer.chat_template`) into a prompt string.
//!
//! Templates are Jinja written for Hugging Face's `apply_chat_template` (Python `jinja2` with
//! `trim_blocks` and `lstrip_blocks`), so we render them with minijinja configured the same
//! way plus `minijinja-contrib`'s Python-compat methods (`.strip()`, `.startswith()`,
//! `.items()` …) and the `raise_exception` function templates use to reject conversations.
//!
//! The template comes from a model file, which is untrusted input: there is no loader (no
//! `include`/`import` of anything, no file access), the source size is capped, every render
//! runs on a fuel budget (bounding time and memory) and a recursion limit.

mod python_json;
mod strftime;
mod tool_grammar;
mod tools;

use minijinja::syntax::SyntaxConfig;
use minijinja::{Environment, Error, ErrorKind, Value};
use serde::{Deserialize, Serialize};

use crate::gguf::{GgufError, GgufFile};
pub use python_json::tojson_string;
pub use tool_grammar::{tool_call_lark, ToolFunction};
pub use tools::ToolCallFormat;

/// The GGUF metadata key holding the template source.
pub const CHAT_TEMPLATE_KEY: &str = "tokenizer.chat_template";
/// Real templates are a few KiB; the largest common ones (tool-calling) stay under 16 KiB.
pub const MAX_SOURCE_BYTES: usize = 64 * 1024;
/// About this many VM instructions (or 64 bytes of produced data each) per render: orders of
/// magnitude above a long conversation, small enough to stop a runaway loop in well under a
/// second.
pub const RENDER_FUEL: u64 = 5_000_000;
/// Nesting depth of loops, macros and calls; chat templates need single digits.
pub const RECURSION_LIMIT: usize = 100;

const TEMPLATE_NAME: &str = "chat_template";
/// Marks errors raised by the template itself, to tell them apart from engine errors.
const RAISED_PREFIX: &str = "raise_exception: ";

/// One chat turn as the OpenAI API and the templates see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
    /// The calls an assistant turn made.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<MessageToolCall>,
    /// On a `tool` turn: the call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A call in an assistant turn; templates see it as OpenAI's
/// `{"id", "type": "function", "function": {"name", "arguments"}}`, the arguments as an object
/// (as vLLM and llama.cpp pass them) where they parse as one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageToolCall {
    pub id: String,
    pub name: String,
    pub arguments: serde_json::Value,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> ChatMessage {
        ChatMessage { role: role.into(), content: content.into(), tool_calls: Vec::new(), tool_call_id: None, name: None }
    }

    /// The turn as the template sees it: keys a turn does not have are undefined, as in
    /// `apply_chat_template`.
    fn to_template_value(&self) -> Value {
        let mut pairs = vec![("role", Value::from(self.role.as_str())), ("content", Value::from(self.content.as_str()))];
        if !self.tool_calls.is_empty() {
            let calls: Vec<Value> = self
                .tool_calls
                .iter()
                .map(|c| {
                    let function = Value::from_pairs([("name", Value::from(c.name.as_str())), ("arguments", python_json::to_template_value(&c.arguments))]);
                    Value::from_pairs([("id", Value::from(c.id.as_str())), ("type", Value::from("function")), ("function", function)])
                })
                .collect();
            pairs.push(("tool_calls", Value::from(calls)));
        }
        if let Some(id) = &self.tool_call_id {
            pairs.push(("tool_call_id", Value::from(id.as_str())));
        }
        if let Some(name) = &self.name {
            pairs.push(("name", Value::from(name.as_str())));
        }
        Value::from_pairs(pairs)
    }
}

/// What a render is asked for besides the messages.
#[derive(Debug, Clone, Default)]
pub struct RenderOptions<'a> {
    /// Append the assistant header the model continues from; off for a finished transcript.
    pub add_generation_prompt: bool,
    /// OpenAI tool definitions (`{"type": "function", "function": {…}}`), in the request's order.
    pub tools: &'a [serde_json::Value],
    /// Further template variables (vLLM's `chat_template_kwargs`, e.g. `enable_thinking`).
    pub variables: &'a [(String, serde_json::Value)],
    /// The time `strftime_now` sees (Unix seconds); `None`: the clock's.
    pub now: Option<u64>,
}

/// Variables the renderer sets itself, which a request may not override.
pub const RESERVED_VARIABLES: [&str; 5] = ["messages", "tools", "add_generation_prompt", "bos_token", "eos_token"];

#[derive(Debug, thiserror::Error)]
pub enum ChatTemplateError {
    #[error("the model has no chat template (`{CHAT_TEMPLATE_KEY}` is missing)")]
    Missing,
    #[error("reading the chat template: {0}")]
    Gguf(#[from] GgufError),
    #[error("the chat template is {size} bytes; at most {MAX_SOURCE_BYTES} are accepted")]
    TooLarge { size: usize },
    #[error("the chat template does not compile: {0}")]
    Syntax(String),
    /// The template rejected the conversation (e.g. roles not alternating): a client error.
    #[error("the chat template rejected the conversation: {0}")]
    Rejected(String),
    #[error("the chat template exceeded its time/memory budget")]
    OutOfFuel,
    #[error("rendering the chat template failed: {0}")]
    Render(String),
}

/// A compiled chat template plus the special-token strings it may reference.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
    /// The template renders `tools` itself (else they are written into the turns).
    takes_tools: bool,
    tool_call_format: ToolCallFormat,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate").field("bos_token", &self.bos_token).field("eos_token", &self.eos_token).finish_non_exhaustive()
    }
}

impl ChatTemplate {
    /// The model's template, with `bos_token`/`eos_token` taken from its vocabulary (empty
    /// strings when the model has none).
    pub fn from_gguf(gguf: &GgufFile) -> Result<ChatTemplate, ChatTemplateError> {
        let source = gguf.get_str(CHAT_TEMPLATE_KEY)?.ok_or(ChatTemplateError::Missing)?;
        let tokens = gguf.get_str_array("tokenizer.ggml.tokens")?.unwrap_or_default();
        let token = |key: &str| -> Result<String, ChatTemplateError> {
            let id = gguf.get_u64(key)?;
            Ok(id.and_then(|id| tokens.get(id as usize)).map(|t| t.to_string()).unwrap_or_default())
        };
        ChatTemplate::new(
            source,
            token("tokenizer.ggml.bos_token_id")?,
            token("tokenizer.ggml.eos_token_id")?,
        )
    }

    /// Compiles `source`; syntax errors surface here, not at the first request.
    pub fn new(
        source: &str,
        bos_token: impl Into<String>,
        eos_token: impl Into<String>,
    ) -> Result<ChatTemplate, ChatTemplateError> {
        if source.len() > MAX_SOURCE_BYTES {
            return Err(ChatTemplateError::TooLarge { size: source.len() });
        }
        let mut env = Environment::new();
        let syntax = SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| ChatTemplateError::Syntax(e.to_string()))?;
        env.set_syntax(syntax);
        env.set_fuel(Some(RENDER_FUEL));
        env.set_recursion_limit(RECURSION_LIMIT);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_filter("tojson", python_json::tojson);
        env.add_function("strftime_now", strftime::strftime_now);
        env.add_template_owned(TEMPLATE_NAME, source.to_string())
            .map_err(|e| ChatTemplateError::Syntax(describe(&e)))?;
        let takes_tools = env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| ChatTemplateError::Syntax(describe(&e)))?
            .undeclared_variables(false)
            .contains("tools");
        let tool_call_format = if takes_tools { ToolCallFormat::of_template(source) } else { ToolCallFormat::Hermes };
        Ok(ChatTemplate { env, bos_token: bos_token.into(), eos_token: eos_token.into(), takes_tools, tool_call_format })
    }

    /// Renders the conversation. `add_generation_prompt` appends the assistant header the
    /// model continues from; leave it off to render a finished transcript.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, ChatTemplateError> {
        self.render_with(messages, &RenderOptions { add_generation_prompt, ..RenderOptions::default() })
    }

    /// Renders the conversation with tools and extra variables.
    pub fn render_with(&self, messages: &[ChatMessage], options: &RenderOptions) -> Result<String, ChatTemplateError> {
        // Without tools or calls a `tool` turn renders as the template says (as llama.cpp does).
        let has_calls = messages.iter().any(|m| !m.tool_calls.is_empty());
        let inlined;
        let (messages, tools) = if !self.takes_tools && (!options.tools.is_empty() || has_calls) {
            inlined = tools::inline_hermes(messages, options.tools);
            (&inlined[..], &[][..])
        } else {
            (messages, options.tools)
        };
        let mut ctx: Vec<(&str, Value)> = options
            .variables
            .iter()
            .filter(|(k, _)| !RESERVED_VARIABLES.contains(&k.as_str()))
            .map(|(k, v)| (k.as_str(), python_json::to_template_value(v)))
            .collect();
        ctx.push(("messages", messages.iter().map(ChatMessage::to_template_value).collect()));
        if !tools.is_empty() {
            ctx.push(("tools", tools.iter().map(python_json::to_template_value).collect()));
        }
        ctx.push(("add_generation_prompt", Value::from(options.add_generation_prompt)));
        if let Some(now) = options.now {
            ctx.push((strftime::NOW_VARIABLE, Value::from(now)));
        }
        ctx.push(("bos_token", Value::from(self.bos_token.as_str())));
        ctx.push(("eos_token", Value::from(self.eos_token.as_str())));
        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| ChatTemplateError::Render(describe(&e)))?;
        template.render(Value::from_pairs(ctx)).map_err(classify)
    }

    /// How this model writes tool calls: its template's format, or Hermes where rill writes the
    /// tools into the prompt itself.
    pub fn tool_call_format(&self) -> ToolCallFormat {
        self.tool_call_format
    }

    /// Whether the template renders `tools` itself.
    pub fn takes_tools(&self) -> bool {
        self.takes_tools
    }

    pub fn bos_token(&self) -> &str {
        &self.bos_token
    }

    pub fn eos_token(&self) -> &str {
        &self.eos_token
    }
}

/// `raise_exception(msg)`: Hugging Face's way for a template to refuse its input.
fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, format!("{RAISED_PREFIX}{message}")))
}

fn classify(e: Error) -> ChatTemplateError {
    if e.kind() == ErrorKind::OutOfFuel {
        return ChatTemplateError::OutOfFuel;
    }
    if let Some(message) = e.detail().and_then(|d| d.strip_prefix(RAISED_PREFIX)) {
        return ChatTemplateError::Rejected(message.to_string());
    }
    ChatTemplateError::Render(describe(&e))
}

/// The error with its template line, which is what a model author needs to fix it.
fn describe(e: &Error) -> String {
    match e.line() {
        Some(line) => format!("{e} (line {line})"),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    fn render(source: &str, messages: &[ChatMessage]) -> Result<String, ChatTemplateError> {
        ChatTemplate::new(source, "<s>", "</s>")?.render(messages, true)
    }

    #[test]
    fn renders_chatml_with_and_without_generation_prompt() {
        let t = ChatTemplate::new(CHATML, "", "<|im_end|>").unwrap();
        let msgs = [ChatMessage::new("user", "Hi ✓")];
        assert_eq!(
            t.render(&msgs, true).unwrap(),
            "<|im_start|>user\nHi ✓<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(t.render(&msgs, false).unwrap(), "<|im_start|>user\nHi ✓<|im_end|>\n");
    }

    #[test]
    fn python_string_methods_and_special_tokens_work() {
        let src = "{{ bos_token }}{% for m in messages %}{{ m.content.strip().upper() }}\
                   {% if m.role.startswith('us') %}!{% endif %}{% endfor %}{{ eos_token }}";
        assert_eq!(render(src, &[ChatMessage::new("user", "  hi  ")]).unwrap(), "<s>HI!</s>");
    }

    #[test]
    fn block_whitespace_is_trimmed_like_hugging_face() {
        let src = "{% for m in messages %}\n    {% if true %}\n{{ m.content }}\n    {% endif %}\n{% endfor %}\n";
        assert_eq!(render(src, &[ChatMessage::new("user", "a")]).unwrap(), "a\n");
    }

    #[test]
    fn raise_exception_is_a_rejection_with_the_templates_message() {
        let src = "{% if messages[0].role != 'system' %}{{ raise_exception('need a system turn') }}{% endif %}";
        match render(src, &[ChatMessage::new("user", "x")]) {
            Err(ChatTemplateError::Rejected(m)) => assert_eq!(m, "need a system turn"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn runaway_templates_are_stopped() {
        let looping =
            "{% for a in range(10000) %}{% for b in range(10000) %}{{ b }}{% endfor %}{% endfor %}";
        assert!(matches!(render(looping, &[]), Err(ChatTemplateError::OutOfFuel)));
        let recursive = "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}";
        assert!(matches!(render(recursive, &[]), Err(ChatTemplateError::Render(_))));
    }

    #[test]
    fn no_file_access_size_cap_and_syntax_errors() {
        assert!(matches!(
            render("{% include '/etc/passwd' %}", &[]),
            Err(ChatTemplateError::Render(_))
        ));
        let huge = "x".repeat(MAX_SOURCE_BYTES + 1);
        assert!(matches!(
            ChatTemplate::new(&huge, "", ""),
            Err(ChatTemplateError::TooLarge { .. })
        ));
        match ChatTemplate::new("{% for %}", "", "") {
            Err(ChatTemplateError::Syntax(m)) => assert!(m.contains("line 1"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn messages_round_trip_through_serde() {
        let m: ChatMessage = serde_json::from_str(r#"{"role":"user","content":"hé"}"#).unwrap();
        assert_eq!(m, ChatMessage::new("user", "hé"));
        assert_eq!(serde_json::to_string(&m).unwrap(), r#"{"role":"user","content":"hé"}"#);
    }
}
