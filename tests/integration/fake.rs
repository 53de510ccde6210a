//! A fake `Executor` for the HTTP protocol tests: no weights, the byte-level tokenizer of dummy
//! models (one token per byte), and a continuation fixed in advance, so SSE framing, errors,
//! stop strings, `n`, logprobs and usage are checked against known text in milliseconds. What
//! a real model says is tested on the real model.

use std::time::Duration;

use rill_engine::{Engine, ExecuteError, Executor, ForwardBatch, SampledToken, SamplingParams, SchedulerConfig, SpeculationConfig};
use rill_model::chat_template::ChatTemplate;
use rill_model::dummy::{byte_tokenizer, DUMMY_EOS};
use rill_server::app::ServedModel;

/// What a request generates, one byte per token, followed by end-of-sequence (and, with
/// `ignore_eos`, the same again). A request with a `seed` starts at an offset drawn from each
/// choice's seed instead, so the choices of one request differ and the request repeats.
pub const SCRIPT: &str = "Paris is the capital of France.\nIt is on the Seine.";

/// Prompt plus completion, in tokens (bytes).
pub const MAX_MODEL_LEN: usize = 4096;

const VOCAB_SIZE: usize = 260;
const BLOCK_SIZE: usize = 16;

/// `<role>content` lines, then `<assistant>` when a reply is wanted.
const CHAT_TEMPLATE: &str = "{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}";

pub struct FakeExecutor {
    /// Slows each step down, for tests that need a request to be still running.
    pub step_delay: Duration,
}

pub struct FakeSeq {
    prompt_len: usize,
    offset: usize,
    logprobs: Option<usize>,
}

/// The token a request generates `i`-th (from 0), starting `offset` into the script.
pub fn script_token(i: usize, offset: usize) -> u32 {
    let script = SCRIPT.as_bytes();
    match (offset + i) % (script.len() + 1) {
        at if at == script.len() => DUMMY_EOS,
        at => u32::from(script[at]),
    }
}

/// Where a sequence of a seeded request starts in the script (`seed`: the choice's).
pub fn sampled_offset(seed: u64) -> usize {
    (seed % SCRIPT.len() as u64) as usize
}

/// The text of the first `tokens` tokens generated from `offset` (end-of-sequence shows as
/// nothing, as the detokenizer skips special tokens).
pub fn script_text(tokens: usize, offset: usize) -> String {
    let bytes: Vec<u8> = (0..tokens).map(|i| script_token(i, offset)).filter(|&t| t < 256).map(|t| t as u8).collect();
    String::from_utf8(bytes).expect("the script is ASCII")
}

impl Executor for FakeExecutor {
    type SeqState = FakeSeq;

    fn start_sequence(&mut self, params: &SamplingParams, seed: u64, prompt: &[u32]) -> FakeSeq {
        let offset = if params.seed.is_some() { sampled_offset(seed) } else { 0 };
        FakeSeq { prompt_len: prompt.len(), offset, logprobs: params.logprobs }
    }

    fn execute(&mut self, batch: &ForwardBatch, samplers: &mut [&mut FakeSeq]) -> Result<Vec<SampledToken>, ExecuteError> {
        std::thread::sleep(self.step_delay);
        let sample = |(&row, seq): (&u32, &&mut FakeSeq)| {
            // The token sampled after position `pos` is the request's `pos + 1 - prompt_len`-th.
            let generated = batch.positions[row as usize] as usize + 1 - seq.prompt_len;
            let token = script_token(generated, seq.offset);
            // The chosen token first, then made-up alternatives, each less likely.
            let top_logprobs = (0..seq.logprobs.unwrap_or(0)).map(|k| ((token + k as u32) % 256, -0.5 - k as f32)).collect();
            SampledToken { token, logprob: seq.logprobs.map(|_| -0.5), top_logprobs }
        };
        Ok(batch.verify(|seq, row| sample((&batch.logits_rows[row], &samplers[seq]))))
    }

    fn eos_token_ids(&self) -> &[u32] {
        &[DUMMY_EOS]
    }

    fn max_model_len(&self) -> usize {
        MAX_MODEL_LEN
    }
}

/// A model named `name` on the fake executor, with room for several full contexts of KV.
pub fn served_model(name: &str, max_queue: usize, step_delay: Duration) -> ServedModel {
    let cfg = SchedulerConfig { max_num_batched_tokens: 256, max_num_seqs: 16, block_size: BLOCK_SIZE, num_blocks: 4 * MAX_MODEL_LEN / BLOCK_SIZE, kv_window: None, speculation: SpeculationConfig::default() };
    let engine = Engine::start(FakeExecutor { step_delay }, cfg, 0, name);
    let tokenizer = byte_tokenizer(VOCAB_SIZE).expect("byte tokenizer");
    let template = ChatTemplate::new(CHAT_TEMPLATE, "<s>", "</s>").expect("chat template");
    ServedModel::with_queue(name.into(), engine, tokenizer, Some(template), MAX_MODEL_LEN, max_queue)
}

#[test]
fn the_script_ends_with_eos_and_repeats() {
    assert_eq!(script_text(SCRIPT.len(), 0), SCRIPT);
    assert_eq!(script_token(SCRIPT.len(), 0), DUMMY_EOS);
    assert_eq!(script_token(SCRIPT.len() + 1, 0), script_token(0, 0));
    assert_eq!(script_token(0, 3), script_token(3, 0));
}
