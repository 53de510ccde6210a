//! `ApiError`: the body shape, each constructor's status/type/code, and where `param` comes from.

use serde_json::json;

use super::error::{parse_json, ApiError};
use super::types::CompletionRequest;

#[test]
fn body_is_exactly_openais_shape_with_nulls() {
    let e = ApiError::new(400, "invalid_request_error", "bad");
    assert_eq!(e.to_json(), json!({"error": {"message": "bad", "type": "invalid_request_error", "param": null, "code": null}}));
    let e = ApiError::invalid("top_p", "top_p must be in (0, 1], got 1.5");
    assert_eq!(
        e.to_json(),
        json!({"error": {"message": "top_p must be in (0, 1], got 1.5", "type": "invalid_request_error", "param": "top_p", "code": null}})
    );
    assert_eq!(e.status, 400);
    assert_eq!(e.to_string(), "400 (invalid_request_error): top_p must be in (0, 1], got 1.5");
}

#[test]
fn constructors_set_status_type_and_code() {
    let cases = [
        (ApiError::not_found_model("gpt-9"), 404, "invalid_request_error", Some("model_not_found")),
        (ApiError::not_found("no such route"), 404, "invalid_request_error", None),
        (ApiError::method_not_allowed(), 405, "invalid_request_error", None),
        (ApiError::unsupported_media(), 415, "invalid_request_error", Some("unsupported_media_type")),
        (ApiError::too_large(), 413, "invalid_request_error", Some("request_too_large")),
        (ApiError::overloaded(3), 503, "server_error", Some("overloaded")),
        (ApiError::internal("boom"), 500, "server_error", Some("internal_error")),
        (ApiError::context_length_exceeded(2048, 2000, Some(100)), 400, "invalid_request_error", Some("context_length_exceeded")),
    ];
    for (e, status, kind, code) in cases {
        assert_eq!((e.status, e.kind, e.code.as_deref()), (status, kind, code), "{e}");
        assert_eq!(e.to_json()["error"]["type"], kind);
    }
    assert_eq!(ApiError::overloaded(3).retry_after_secs, Some(3));
    assert_eq!(ApiError::internal("boom").retry_after_secs, None);
    let e = ApiError::not_found_model("gpt-9");
    assert_eq!(e.message, "The model `gpt-9` does not exist.");
    assert_eq!(e.param.as_deref(), Some("model"));
}

#[test]
fn context_length_message_states_the_numbers() {
    let e = ApiError::context_length_exceeded(2048, 2000, Some(100));
    assert!(e.message.contains("maximum context length is 2048 tokens"), "{}", e.message);
    assert!(e.message.contains("requested 2100 tokens (2000 in the prompt, 100 for the completion)"), "{}", e.message);
    let e = ApiError::context_length_exceeded(2048, 3000, None);
    assert!(e.message.contains("the prompt has 3000 tokens"), "{}", e.message);
    // Absurd max_tokens do not overflow the sum.
    let e = ApiError::context_length_exceeded(2048, 10, Some(usize::MAX));
    assert!(e.message.contains(&usize::MAX.to_string()));
}

#[test]
fn sampling_errors_keep_their_param() {
    let err = rill_engine::SamplingParams { top_p: 2.0, ..Default::default() }.validate(10).unwrap_err();
    let e = ApiError::from(err);
    assert_eq!((e.status, e.param.as_deref()), (400, Some("top_p")));
    assert_eq!(e.message, "top_p must be in (0, 1], got 2");
}

#[test]
fn axum_rejection_text_gives_the_path_as_param() {
    let e = ApiError::invalid_body(
        "Failed to deserialize the JSON body into the target type: messages[0].content: invalid type: integer `5`, \
         expected a string at line 1 column 40",
    );
    assert_eq!((e.status, e.param.as_deref()), (400, Some("messages[0].content")));
    assert!(e.message.starts_with("Invalid request body: messages[0].content: invalid type"), "{}", e.message);
    let e = ApiError::invalid_body(
        "Failed to deserialize the JSON body into the target type: temperature: invalid type: string \"hot\", expected f32",
    );
    assert_eq!(e.param.as_deref(), Some("temperature"));
    let e = ApiError::invalid_body("Failed to deserialize the JSON body into the target type: missing field `model` at line 1 column 2");
    assert_eq!(e.param.as_deref(), Some("model"));
    let e = ApiError::invalid_body("Failed to parse the request body as JSON: expected value at line 1 column 1");
    assert_eq!(e.param, None);
    assert_eq!(e.message, "Invalid request body: expected value at line 1 column 1");
    // A message whose text before ": " is not a path is not mistaken for one.
    assert_eq!(ApiError::invalid_body("invalid type: null, expected a string").param, None);
}

#[test]
fn serde_json_errors_become_400s() {
    let err = serde_json::from_str::<serde_json::Value>("{").unwrap_err();
    let e = ApiError::from_json_error(&err, None);
    assert_eq!((e.status, e.param.clone()), (400, None));
    assert!(e.message.starts_with("Invalid request body: EOF while parsing"), "{}", e.message);
    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Needs {
        model: String,
    }
    let err = serde_json::from_str::<Needs>("{}").unwrap_err();
    assert_eq!(ApiError::from_json_error(&err, None).param.as_deref(), Some("model"));
}

#[test]
fn parse_json_rejects_non_objects_and_bad_json() {
    for body in ["", "nul", "{\"prompt\": \"x\"", "[1, 2]", "\"text\"", "null"] {
        let e = parse_json::<CompletionRequest>(body.as_bytes()).unwrap_err();
        assert_eq!((e.status, e.kind, e.param.clone()), (400, "invalid_request_error", None), "{body:?}: {e}");
    }
}
