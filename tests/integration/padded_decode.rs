//! Decode steps padded to a bucket size (what a recorded GPU step runs) give the same logits as
//! the unpadded step: padding rows write only the spare KV block and sample nothing real.

use rill_engine::ForwardBatch;

use crate::common::default_model;

#[test]
fn padding_rows_change_no_logits() {
    let mut model = default_model().transformer;
    let (block_size, vocab) = (model.kv_layout().block_size, model.config().vocab_size);
    let prompts: [&[u32]; 3] = [&[1, 504, 3458, 282, 4649, 314], &[1, 28, 9], &[1, 2000, 77, 5, 901, 44, 18, 1500, 3, 64, 1200, 9000, 12, 13, 14, 15, 16, 17]];
    // Each sequence gets its own blocks, in reverse order to exercise the tables.
    let tables: Vec<Vec<u32>> = (0..3).map(|s| vec![10 + 2 * s as u32 + 1, 10 + 2 * s as u32]).collect();
    let width = 4;
    let mut prefill = ForwardBatch::new(block_size, width);
    for (p, t) in prompts.iter().zip(&tables) {
        prefill.push_sequence(p, 0, t, true).unwrap();
    }
    let next: Vec<u32> = model.forward(&prefill).unwrap().chunks_exact(vocab).map(argmax).collect();
    let mut decode = ForwardBatch::new(block_size, width);
    for ((p, t), &tok) in prompts.iter().zip(&tables).zip(&next) {
        decode.push_sequence(&[tok], p.len(), t, true).unwrap();
    }
    let plain = model.forward(&decode).unwrap().to_vec();
    model.set_padded_decode(true);
    let padded = model.forward(&decode).unwrap().to_vec();
    assert_eq!(plain.len(), 3 * vocab);
    assert!(plain.iter().all(|v| v.is_finite()));
    assert_eq!(plain, padded, "padding a decode step of 3 to 4 rows changed the logits");
    // A single sequence pads to itself (bucket 1) and still matches.
    let mut one = ForwardBatch::new(block_size, width);
    one.push_sequence(&[next[1]], prompts[1].len(), &tables[1], true).unwrap();
    assert_eq!(model.forward(&one).unwrap(), &plain[vocab..2 * vocab]);
}

fn argmax(row: &[f32]) -> u32 {
    row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i as u32).unwrap()
}
