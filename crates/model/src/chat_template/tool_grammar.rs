//! The grammar that makes a model call a tool: `tool_choice` `required` or a named function holds
//! the output to well-formed calls in the model's own format, each call's arguments valid against
//! its function's `parameters` (JSON Schema), so a forced call always parses and validates. With
//! `auto` and a `response_format`, the output is either calls or the formatted answer.

use super::tools::ToolCallFormat;

/// A function the output may call.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolFunction {
    pub name: String,
    /// The JSON Schema of the arguments (`{"type": "object"}` when the tool gave none).
    pub parameters: serde_json::Value,
}

/// A Lark grammar (llguidance's dialect) for one or more calls (`parallel`) of `functions`,
/// or, with `answer`, that JSON value instead. `literal` writes a marker string (a special
/// token's reference where the vocabulary has one, else a quoted string).
pub fn tool_call_lark(format: ToolCallFormat, functions: &[ToolFunction], parallel: bool, answer: Option<&serde_json::Value>, literal: impl Fn(&str) -> String) -> String {
    let args_key = match format {
        ToolCallFormat::Llama3 => "parameters",
        ToolCallFormat::Hermes | ToolCallFormat::Mistral | ToolCallFormat::MistralArgs => "arguments",
    };
    let mut lark = String::new();
    let (call, calls) = match format {
        ToolCallFormat::Hermes => {
            let block = format!("{} \"\\n\" fn_call \"\\n\" {}", literal("<tool_call>"), literal("</tool_call>"));
            (block, "call (\"\\n\" call)*")
        }
        ToolCallFormat::Llama3 => ("fn_call".to_string(), "call (\"; \" call)*"),
        ToolCallFormat::Mistral => ("fn_call".to_string(), "call (\", \" call)*"),
        ToolCallFormat::MistralArgs => (format!("{} fn_call", literal("[TOOL_CALLS]")), "call+"),
    };
    let body = if parallel { calls } else { "call" };
    let calls = match format {
        ToolCallFormat::Mistral => format!("{} \"[\" {body} \"]\"", literal("[TOOL_CALLS]")),
        _ => body.to_string(),
    };
    match answer {
        Some(schema) => lark.push_str(&format!("start: calls | answer\nanswer: %json {}\n", bounded(schema.clone()))),
        None => lark.push_str("start: calls\n"),
    }
    lark.push_str(&format!("calls: {calls}\ncall: {call}\n"));
    let alternatives: Vec<String> = (0..functions.len()).map(|i| format!("fn_{i}")).collect();
    lark.push_str(&format!("fn_call: {}\n", alternatives.join(" | ")));
    for (i, f) in functions.iter().enumerate() {
        if format == ToolCallFormat::MistralArgs {
            let name = serde_json::to_string(&f.name).unwrap_or_default();
            lark.push_str(&format!("fn_{i}: {name} {} %json {}\n", literal("[ARGS]"), bounded(f.parameters.clone())));
            continue;
        }
        let schema = serde_json::json!({
            "type": "object",
            "properties": { "name": { "const": f.name }, args_key: f.parameters },
            "required": ["name", args_key],
            "additionalProperties": false,
        });
        lark.push_str(&format!("fn_{i}: %json {}\n", bounded(schema)));
    }
    lark
}

/// Whitespace inside the JSON as the constrained JSON of `response_format` allows it.
fn bounded(schema: serde_json::Value) -> String {
    crate::grammar::bounded_whitespace(schema).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quoted(s: &str) -> String {
        serde_json::to_string(s).unwrap()
    }

    #[test]
    fn hermes_calls_one_or_many() {
        let f = [ToolFunction { name: "get_weather".into(), parameters: serde_json::json!({"type": "object"}) }];
        let one = tool_call_lark(ToolCallFormat::Hermes, &f, false, None, quoted);
        assert!(one.starts_with("start: calls\ncalls: call\ncall: \"<tool_call>\" \"\\n\" fn_call \"\\n\" \"</tool_call>\"\nfn_call: fn_0\nfn_0: %json {"), "{one}");
        assert!(one.contains(r#""name":{"const":"get_weather"}"#), "{one}");
        let many = tool_call_lark(ToolCallFormat::Mistral, &f, true, Some(&serde_json::json!({"type": "object"})), |s| format!("<{s}>"));
        assert!(many.starts_with("start: calls | answer\nanswer: %json {"), "{many}");
        assert!(many.contains("calls: <[TOOL_CALLS]> \"[\" call (\", \" call)* \"]\""), "{many}");
        let args = tool_call_lark(ToolCallFormat::MistralArgs, &f, true, None, quoted);
        assert!(args.contains("calls: call+\ncall: \"[TOOL_CALLS]\" fn_call\n"), "{args}");
        assert!(args.contains("fn_0: \"get_weather\" \"[ARGS]\" %json {"), "{args}");
    }
}
