//! `tools`, `tool_choice` and `parallel_tool_calls` on chat, checked: each tool a function with a
//! name OpenAI would accept and an object schema for its parameters, a named choice one of them.
//! The result says which functions the output may call and whether it must.

use rill_model::chat_template::ToolFunction;
use serde_json::Value;

use super::error::ApiError;

/// OpenAI's cap on tools per request.
pub const MAX_TOOLS: usize = 128;

/// Whether and what the model must call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    /// The model decides: its output is parsed for calls.
    Auto,
    /// At least one call (the grammar forces it).
    Required,
    /// This function, called once.
    Named(String),
}

/// The tools of a request that may call them (`tool_choice` other than `none`).
#[derive(Debug, Clone, PartialEq)]
pub struct ToolUse {
    /// The definitions as sent (rendered into the prompt by the chat template, key order kept).
    pub definitions: Vec<Value>,
    pub functions: Vec<ToolFunction>,
    pub choice: ToolChoice,
    /// More than one call per turn (OpenAI's default).
    pub parallel: bool,
}

impl ToolUse {
    /// The functions a forced call may use: the named one, or all.
    pub fn forced_functions(&self) -> Option<Vec<ToolFunction>> {
        match &self.choice {
            ToolChoice::Auto => None,
            ToolChoice::Required => Some(self.functions.clone()),
            ToolChoice::Named(name) => Some(self.functions.iter().filter(|f| &f.name == name).cloned().collect()),
        }
    }
}

/// `None` when there are no tools or calling is off (`tool_choice: "none"`: the tools are then
/// not shown to the model either).
pub fn tool_use(tools: Option<Vec<Value>>, choice: Option<Value>, parallel: Option<bool>) -> Result<Option<ToolUse>, ApiError> {
    let tools = tools.unwrap_or_default();
    let choice = match choice {
        None | Some(Value::Null) => None,
        Some(c) => Some(tool_choice(c)?),
    };
    if tools.is_empty() {
        return match choice {
            None | Some(None) => Ok(None),
            Some(Some(_)) => Err(ApiError::invalid("tool_choice", "tool_choice is only allowed when tools are specified")),
        };
    }
    if tools.len() > MAX_TOOLS {
        return Err(ApiError::invalid("tools", format!("at most {MAX_TOOLS} tools are allowed, got {}", tools.len())));
    }
    let functions = tools.iter().enumerate().map(|(i, t)| function(i, t)).collect::<Result<Vec<_>, _>>()?;
    for (i, f) in functions.iter().enumerate() {
        if functions[..i].iter().any(|g| g.name == f.name) {
            return Err(ApiError::invalid(format!("tools[{i}].function.name"), format!("the function name {:?} is used twice", f.name)));
        }
    }
    let choice = match choice {
        Some(None) => return Ok(None),
        None => ToolChoice::Auto,
        Some(Some(c)) => c,
    };
    if let ToolChoice::Named(name) = &choice {
        if !functions.iter().any(|f| &f.name == name) {
            return Err(ApiError::invalid("tool_choice", format!("tool_choice names the function {name:?}, which is not in tools")));
        }
    }
    Ok(Some(ToolUse { definitions: tools, functions, choice, parallel: parallel.unwrap_or(true) }))
}

/// `Some(None)` is `"none"`.
fn tool_choice(c: Value) -> Result<Option<ToolChoice>, ApiError> {
    let bad = || ApiError::invalid("tool_choice", "tool_choice must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}");
    match &c {
        Value::String(s) => match s.as_str() {
            "none" => Ok(None),
            "auto" => Ok(Some(ToolChoice::Auto)),
            "required" => Ok(Some(ToolChoice::Required)),
            _ => Err(bad()),
        },
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
            let name = o.get("function").and_then(|f| f.get("name")).and_then(Value::as_str).ok_or_else(bad)?;
            Ok(Some(ToolChoice::Named(name.to_string())))
        }
        _ => Err(bad()),
    }
}

fn function(i: usize, tool: &Value) -> Result<ToolFunction, ApiError> {
    let param = |field: &str| format!("tools[{i}]{field}");
    if tool.get("type").and_then(Value::as_str) != Some("function") {
        return Err(ApiError::invalid(param(".type"), "only tools of type \"function\" are supported"));
    }
    let f = tool.get("function").filter(|f| f.is_object()).ok_or_else(|| ApiError::invalid(param(".function"), "a function tool needs a `function` object"))?;
    let name = f.get("name").and_then(Value::as_str).ok_or_else(|| ApiError::invalid(param(".function.name"), "a function needs a `name` string"))?;
    if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.') {
        let msg = format!("function names are 1 to 64 characters of a-z, A-Z, 0-9, _, - and ., got {name:?}");
        return Err(ApiError::invalid(param(".function.name"), msg));
    }
    let parameters = match f.get("parameters") {
        None | Some(Value::Null) => serde_json::json!({ "type": "object", "properties": {} }),
        Some(p @ Value::Object(_)) => p.clone(),
        Some(_) => return Err(ApiError::invalid(param(".function.parameters"), "parameters must be a JSON Schema object")),
    };
    Ok(ToolFunction { name: name.to_string(), parameters })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn weather() -> Value {
        json!({"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}})
    }

    #[test]
    fn choices_parse_and_default_to_auto_with_parallel_calls() {
        let t = tool_use(Some(vec![weather()]), None, None).unwrap().unwrap();
        assert_eq!((t.choice.clone(), t.parallel), (ToolChoice::Auto, true));
        assert_eq!(t.forced_functions(), None);
        let r = tool_use(Some(vec![weather()]), Some(json!("required")), Some(false)).unwrap().unwrap();
        assert_eq!((r.choice, r.parallel), (ToolChoice::Required, false));
        let named = json!({"type": "function", "function": {"name": "get_weather"}});
        let n = tool_use(Some(vec![weather()]), Some(named), None).unwrap().unwrap();
        assert_eq!(n.forced_functions().unwrap()[0].name, "get_weather");
        assert_eq!(tool_use(Some(vec![weather()]), Some(json!("none")), None).unwrap(), None);
        assert_eq!(tool_use(None, None, None).unwrap(), None);
    }

    #[test]
    fn bad_tools_are_400s_naming_the_field() {
        let param = |r: Result<Option<ToolUse>, ApiError>| r.unwrap_err().param.unwrap();
        assert_eq!(param(tool_use(None, Some(json!("required")), None)), "tool_choice");
        assert_eq!(param(tool_use(Some(vec![weather()]), Some(json!("sometimes")), None)), "tool_choice");
        let other = json!({"type": "function", "function": {"name": "nope"}});
        assert_eq!(param(tool_use(Some(vec![weather()]), Some(other), None)), "tool_choice");
        assert_eq!(param(tool_use(Some(vec![json!({"type": "retrieval"})]), None, None)), "tools[0].type");
        let spaced = json!({"type": "function", "function": {"name": "get weather"}});
        assert_eq!(param(tool_use(Some(vec![spaced]), None, None)), "tools[0].function.name");
        let bad_params = json!({"type": "function", "function": {"name": "f", "parameters": "x"}});
        assert_eq!(param(tool_use(Some(vec![bad_params]), None, None)), "tools[0].function.parameters");
        assert_eq!(param(tool_use(Some(vec![weather(), weather()]), None, None)), "tools[1].function.name");
    }
}
