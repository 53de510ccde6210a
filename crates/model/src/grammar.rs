//! Constrained decoding: a request's output held to a JSON Schema, any JSON object, a regex or a
//! Lark grammar by `llguidance` (the grammar engine behind vLLM's and llama.cpp's guidance
//! backends). [`Grammars`] is built once per model from its vocabulary; it compiles a request's
//! [`GrammarSpec`] once (a bad schema is an error naming the problem, before any token is
//! generated) into a [`Constraint`], which each step gives the tokens that may come next and is
//! told the one that did.

use std::sync::{mpsc, Arc, Mutex};

use llguidance::api::TopLevelGrammar;
use llguidance::{Matcher, ParserFactory};
use rill_engine::{ConstraintState, TokenConstraint};
use toktrie::{TokEnv, TokRxInfo, TokTrie, TokenId, TokenizerEnv};

use crate::tokenizer::Tokenizer;

/// What a request's output must match.
#[derive(Debug, Clone, PartialEq)]
pub enum GrammarSpec {
    /// A JSON value valid against this JSON Schema.
    JsonSchema(serde_json::Value),
    /// Any JSON object (`response_format: json_object`).
    JsonObject,
    /// Text matching this regular expression (whole).
    Regex(String),
    /// Text in this Lark grammar's language.
    Lark(String),
}

#[derive(Debug, thiserror::Error)]
pub enum GrammarError {
    /// The spec cannot be compiled: an unsupported schema keyword, a bad regex, a Lark error.
    #[error("invalid {kind}: {detail}")]
    Invalid { kind: &'static str, detail: String },
    /// The vocabulary could not be turned into llguidance's token trie.
    #[error("constrained decoding is unavailable for this model: {0}")]
    Unavailable(String),
}

/// A model's grammar compiler: its vocabulary as llguidance's token trie, shared by every
/// request.
pub struct Grammars {
    factory: Arc<ParserFactory>,
    tokenizer: Arc<Tokenizer>,
}

impl std::fmt::Debug for Grammars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Grammars")
    }
}

/// The vocabulary as llguidance sees it: each token's bytes (special tokens as the trie's marker
/// byte then their text, so no grammar can spell them out of ordinary text), and rill's own
/// tokenizer for the text a grammar forces.
struct Vocab {
    trie: TokTrie,
    tokenizer: Arc<Tokenizer>,
}

impl TokenizerEnv for Vocab {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        self.tokenizer.encode(&String::from_utf8_lossy(s), false).unwrap_or_default()
    }
}

impl Grammars {
    /// Builds the token trie of `tokenizer` (end of generation: its EOS).
    pub fn new(tokenizer: Arc<Tokenizer>) -> Result<Grammars, GrammarError> {
        let vocab = tokenizer.vocab_size();
        let words: Vec<Vec<u8>> = (0..vocab as u32)
            .map(|id| {
                let piece = tokenizer.token_to_piece(id).unwrap_or_default();
                if tokenizer.is_special(id) {
                    let mut w = vec![TokTrie::SPECIAL_TOKEN_MARKER];
                    w.extend_from_slice(piece);
                    w
                } else {
                    piece.to_vec()
                }
            })
            .collect();
        let eos = tokenizer.eos_id().or_else(|| tokenizer.eos_token_ids().first().copied());
        let eos = eos.ok_or_else(|| GrammarError::Unavailable("the vocabulary has no end-of-sequence token".into()))?;
        let info = TokRxInfo { tok_bos: tokenizer.bos_id(), ..TokRxInfo::new(vocab as u32, eos) };
        let trie = TokTrie::from(&info, &words);
        let env: TokEnv = Arc::new(Vocab { trie, tokenizer: tokenizer.clone() });
        let mut factory = ParserFactory::new_simple(&env).map_err(|e| GrammarError::Unavailable(e.to_string()))?;
        // Warnings and errors come back as values; nothing on stderr.
        factory.set_stderr_log_level(0);
        Ok(Grammars { factory: Arc::new(factory), tokenizer })
    }

    /// `text` as a Lark grammar literal: a reference to the special token that spells it where
    /// the vocabulary has one (a grammar cannot spell special tokens out of text), else a string.
    pub fn lark_literal(&self, text: &str) -> String {
        match self.tokenizer.token_id(text) {
            Some(id) if self.tokenizer.is_special(id) => format!("<[{id}]>"),
            _ => serde_json::to_string(text).unwrap_or_default(),
        }
    }

    /// Compiles `spec`; errors name what is wrong with it.
    pub fn compile(&self, spec: &GrammarSpec) -> Result<Constraint, GrammarError> {
        let (kind, grammar) = match spec {
            GrammarSpec::JsonSchema(schema) => ("JSON schema", TopLevelGrammar::from_json_schema(bounded_whitespace(schema.clone()))),
            GrammarSpec::JsonObject => ("JSON object", TopLevelGrammar::from_json_schema(bounded_whitespace(serde_json::json!({ "type": "object" })))),
            GrammarSpec::Regex(rx) => ("regex", TopLevelGrammar::from_regex(rx)),
            GrammarSpec::Lark(lark) => ("Lark grammar", TopLevelGrammar::from_lark(lark.clone())),
        };
        let parser = self.factory.create_parser(grammar).map_err(|e| GrammarError::Invalid { kind, detail: e.to_string() })?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            return Err(GrammarError::Invalid { kind, detail: e });
        }
        Ok(Constraint { matcher })
    }
}

/// JSON between tokens as llama.cpp's schema grammars allow it: nothing, a space, or one or two
/// newlines and up to 20 spaces or tabs. (llguidance's default, any whitespace, lets a model pad
/// forever.) A schema that sets its own `x-guidance` options keeps them.
pub(crate) fn bounded_whitespace(mut schema: serde_json::Value) -> serde_json::Value {
    if let Some(obj) = schema.as_object_mut() {
        obj.entry("x-guidance").or_insert_with(|| serde_json::json!({ "whitespace_pattern": "( |\\n{1,2}[ \\t]{0,20})?" }));
    }
    schema
}

/// One sequence's position in its grammar.
pub struct Constraint {
    matcher: Matcher,
}

impl std::fmt::Debug for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Constraint").field("stopped", &self.matcher.is_stopped()).finish()
    }
}

impl Constraint {
    /// The tokens that may come next (only end of sequence once the grammar is complete).
    pub fn allowed(&mut self) -> Result<Vec<u32>, GrammarError> {
        let mask = self.matcher.compute_mask_or_eos().map_err(|e| GrammarError::Invalid { kind: "constrained step", detail: e.to_string() })?;
        Ok(mask.to_list())
    }

    /// Advances past `token` (one of [`Constraint::allowed`]). End of sequence after a complete
    /// match changes nothing (a request that ignores EOS keeps getting only EOS allowed).
    pub fn accept(&mut self, token: u32) -> Result<(), GrammarError> {
        if self.matcher.is_stopped() && self.matcher.tok_env().is_ok_and(|env| env.tok_trie().eos_token() == token) {
            return Ok(());
        }
        self.matcher.consume_token(token).map_err(|e| GrammarError::Invalid { kind: "constrained step", detail: e.to_string() })
    }

    /// The output so far is a complete match (end of sequence may come now).
    pub fn is_complete(&mut self) -> bool {
        self.matcher.is_accepting().unwrap_or(false) || self.matcher.is_stopped()
    }
}

/// A compiled grammar as a request's constraint: every choice starts from a copy of its start.
pub struct GrammarConstraint {
    start: Mutex<Constraint>,
}

impl GrammarConstraint {
    pub fn new(start: Constraint) -> GrammarConstraint {
        GrammarConstraint { start: Mutex::new(start) }
    }
}

impl TokenConstraint for GrammarConstraint {
    fn start(&self) -> Box<dyn ConstraintState> {
        let start = self.start.lock().unwrap_or_else(|p| p.into_inner());
        Box::new(Prefetching::new(Constraint { matcher: start.matcher.deep_clone() }))
    }
}

/// One choice's constraint with each next mask computed off the engine thread: `accept` hands
/// the token to a helper thread, which advances the grammar and computes the next mask while the
/// engine runs the forward pass; `allowed` then only waits for what is left of it. The helper
/// exits when the choice's state is dropped.
struct Prefetching {
    tokens: mpsc::Sender<u32>,
    masks: mpsc::Receiver<Result<Vec<u32>, String>>,
    /// The mask for the current position, once received (asked for again without an `accept`).
    current: Option<Result<Vec<u32>, String>>,
}

impl Prefetching {
    fn new(mut constraint: Constraint) -> Prefetching {
        let (tokens, token_rx) = mpsc::channel::<u32>();
        let (mask_tx, masks) = mpsc::channel();
        let spawned = std::thread::Builder::new().name("rill-grammar".into()).spawn(move || {
            let mut mask = constraint.allowed().map_err(|e| e.to_string());
            loop {
                if mask_tx.send(mask).is_err() {
                    return;
                }
                let Ok(token) = token_rx.recv() else { return };
                mask = constraint.accept(token).and_then(|()| constraint.allowed()).map_err(|e| e.to_string());
            }
        });
        let current = spawned.err().map(|e| Err(format!("starting the grammar thread: {e}")));
        Prefetching { tokens, masks, current }
    }
}

impl ConstraintState for Prefetching {
    fn allowed(&mut self) -> Result<Vec<u32>, String> {
        if self.current.is_none() {
            self.current = Some(self.masks.recv().unwrap_or_else(|_| Err("the grammar thread stopped".into())));
        }
        self.current.clone().unwrap_or_else(|| Err("no mask".into()))
    }

    /// Errors in advancing show in the next `allowed`.
    fn accept(&mut self, token: u32) -> Result<(), String> {
        if self.current.is_none() {
            // The mask for this position was never asked for: take it, so the next is next.
            let _ = self.masks.recv();
        }
        self.current = None;
        self.tokens.send(token).map_err(|_| "the grammar thread stopped".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::GgufFile;

    fn tokenizer() -> Arc<Tokenizer> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/models/qwen3.Q8_0.gguf");
        Arc::new(Tokenizer::from_gguf(&GgufFile::open(std::path::Path::new(path)).unwrap()).unwrap())
    }

    /// A walk through the grammar by seeded random choices among the allowed tokens (as a
    /// sampler would make them), ending where end of sequence is allowed.
    fn walk(grammars: &Grammars, spec: &GrammarSpec, tok: &Tokenizer, seed: u64) -> String {
        let mut c = grammars.compile(spec).unwrap();
        let eos = tok.eos_id().unwrap();
        let mut state = seed;
        let mut out = Vec::new();
        for _ in 0..400 {
            let allowed = c.allowed().unwrap();
            assert!(!allowed.is_empty());
            if allowed.contains(&eos) {
                break;
            }
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let t = allowed[(state >> 33) as usize % allowed.len()];
            c.accept(t).unwrap();
            out.push(t);
        }
        assert!(c.is_complete(), "walk did not finish: {:?}", tok.decode(&out, false));
        tok.decode(&out, false)
    }

    #[test]
    fn regex_output_matches_the_regex() {
        let tok = tokenizer();
        let g = Grammars::new(tok.clone()).unwrap();
        let re = fancy_regex::Regex::new("^(yes|no) [0-9]{3}$").unwrap();
        for seed in 0..5 {
            let text = walk(&g, &GrammarSpec::Regex("(yes|no) [0-9]{3}".into()), &tok, seed);
            assert!(re.is_match(&text).unwrap(), "{text:?}");
        }
    }

    #[test]
    fn json_schema_output_validates_and_bad_schemas_are_errors() {
        let tok = tokenizer();
        let g = Grammars::new(tok.clone()).unwrap();
        let schema = serde_json::json!({
            "type": "object",
            "properties": { "name": { "type": "string", "maxLength": 8 }, "age": { "type": "integer", "minimum": 0, "maximum": 150 } },
            "required": ["name", "age"],
            "additionalProperties": false
        });
        for seed in 0..5 {
            let text = walk(&g, &GrammarSpec::JsonSchema(schema.clone()), &tok, seed);
            let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            let (name, age) = (v["name"].as_str().unwrap(), v["age"].as_i64().unwrap());
            assert!(name.chars().count() <= 8 && (0..=150).contains(&age) && v.as_object().unwrap().len() == 2, "{v}");
        }
        let bad = g.compile(&GrammarSpec::JsonSchema(serde_json::json!({ "type": "object", "properties": { "x": { "type": "frobnicate" } } })));
        assert!(matches!(bad, Err(GrammarError::Invalid { .. })), "{bad:?}");
        assert!(g.compile(&GrammarSpec::Regex("(unclosed".into())).is_err());
    }

    #[test]
    fn a_token_outside_the_mask_is_refused() {
        let tok = tokenizer();
        let g = Grammars::new(tok.clone()).unwrap();
        let mut c = g.compile(&GrammarSpec::Regex("[0-9]+".into())).unwrap();
        let allowed = c.allowed().unwrap();
        let letter = tok.encode("x", false).unwrap()[0];
        assert!(!allowed.contains(&letter));
        assert!(c.accept(letter).is_err());
    }

    /// The prefetching state a request's choices use gives the masks the grammar gives, position
    /// by position (asked for once, twice, or not at all before a token), and reports a refused
    /// token at the next mask.
    #[test]
    fn prefetched_masks_equal_the_grammars() {
        let tok = tokenizer();
        let g = Grammars::new(tok.clone()).unwrap();
        let spec = GrammarSpec::JsonSchema(serde_json::json!({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}));
        let mut direct = g.compile(&spec).unwrap();
        let mut prefetching = GrammarConstraint::new(g.compile(&spec).unwrap()).start();
        let mut state = 7u64;
        for step in 0..30 {
            let want = direct.allowed().unwrap();
            if want.contains(&tok.eos_id().unwrap()) {
                break;
            }
            if step % 3 != 2 {
                assert_eq!(prefetching.allowed().unwrap(), want, "step {step}");
            }
            if step % 3 == 1 {
                assert_eq!(prefetching.allowed().unwrap(), want, "step {step}, asked twice");
            }
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let t = want[(state >> 33) as usize % want.len()];
            direct.accept(t).unwrap();
            prefetching.accept(t).unwrap();
        }
        let letter = tok.encode("x", false).unwrap()[0];
        let mut digits = GrammarConstraint::new(g.compile(&GrammarSpec::Regex("[0-9]+".into())).unwrap()).start();
        digits.accept(letter).unwrap();
        assert!(digits.allowed().is_err());
    }
}
