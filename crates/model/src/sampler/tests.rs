//! Every knob of the pipeline has a test that fails when the knob is ignored.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rill_engine::{choice_seed, SamplingParams};

use super::*;

const SEED: u64 = 7;

fn greedy() -> SamplingParams {
    SamplingParams { temperature: 0.0, ..Default::default() }
}

fn sampler(params: &SamplingParams) -> Sampler {
    Sampler::new(params, SEED, &[], &[])
}

/// `draws` tokens from the same logits row.
fn draw(params: &SamplingParams, logits: &[f32], draws: usize) -> Vec<u32> {
    let mut s = sampler(params);
    (0..draws).map(|_| s.sample(logits).token).collect()
}

fn counts(tokens: &[u32], vocab: usize) -> Vec<usize> {
    tokens.iter().fold(vec![0; vocab], |mut c, &t| {
        c[t as usize] += 1;
        c
    })
}

fn softmax(logits: &[f32], temperature: f64) -> Vec<f64> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let e: Vec<f64> = logits.iter().map(|&l| ((l as f64 - max) / temperature).exp()).collect();
    let total: f64 = e.iter().sum();
    e.iter().map(|x| x / total).collect()
}

/// Pearson's chi-square statistic of `observed` against probabilities `expected`.
fn chi_square(observed: &[usize], expected: &[f64]) -> f64 {
    let n: usize = observed.iter().sum();
    observed.iter().zip(expected).map(|(&o, &p)| (o as f64 - n as f64 * p).powi(2) / (n as f64 * p)).sum()
}

/// Logits with a clear order and a long tail, so that a high temperature spreads the draws.
const LOGITS: [f32; 6] = [1.0, 3.0, 2.5, 0.0, -1.0, 2.0];
const ARGMAX: u32 = 1;

#[test]
fn greedy_takes_the_first_maximum_whatever_the_seed() {
    assert_eq!(sampler(&greedy()).sample(&[0.0, 2.0, 2.0, 1.0]).token, 1);
    for seed in 0..4 {
        assert_eq!(Sampler::new(&greedy(), seed, &[], &[]).sample(&LOGITS).token, ARGMAX);
    }
    // Below the greedy threshold counts as greedy too.
    let almost = SamplingParams { temperature: GREEDY_TEMPERATURE / 2.0, ..Default::default() };
    assert!(draw(&almost, &LOGITS, 100).iter().all(|&t| t == ARGMAX));
}

#[test]
fn temperature_one_follows_the_softmax() {
    let params = SamplingParams { temperature: 1.0, ..Default::default() };
    let tokens = draw(&params, &LOGITS, 20_000);
    let chi2 = chi_square(&counts(&tokens, LOGITS.len()), &softmax(&LOGITS, 1.0));
    // 5 degrees of freedom: P(chi2 > 25) ≈ 1e-4; the seed is fixed, so this is deterministic.
    assert!(chi2 < 25.0, "chi-square {chi2}");
}

#[test]
fn temperature_sharpens_and_flattens() {
    for temperature in [0.5, 3.0] {
        let params = SamplingParams { temperature, ..Default::default() };
        let observed = counts(&draw(&params, &LOGITS, 20_000), LOGITS.len());
        let chi2 = chi_square(&observed, &softmax(&LOGITS, temperature as f64));
        assert!(chi2 < 25.0, "T={temperature}: chi-square {chi2}");
        // The temperature-1 distribution is far off at these temperatures.
        assert!(chi_square(&observed, &softmax(&LOGITS, 1.0)) > 200.0, "T={temperature} ignored");
    }
}

#[test]
fn seeded_sampling_is_reproducible_and_choices_differ() {
    let params = SamplingParams::default();
    let run = |seed| {
        let mut s = Sampler::new(&params, seed, &[], &[]);
        (0..200).map(|_| s.sample(&LOGITS).token).collect::<Vec<_>>()
    };
    assert_eq!(run(SEED), run(SEED));
    assert_ne!(run(choice_seed(SEED, 0)), run(choice_seed(SEED, 1)));
    assert_ne!(run(1), run(2));
}

#[test]
fn a_sampler_does_not_depend_on_others_sampling_in_between() {
    let params = SamplingParams::default();
    let alone = draw(&params, &LOGITS, 100);
    let (mut a, mut b) = (sampler(&params), Sampler::new(&params, SEED + 1, &[], &[]));
    let interleaved: Vec<u32> = (0..100)
        .map(|_| {
            b.sample(&LOGITS);
            a.sample(&LOGITS).token
        })
        .collect();
    assert_eq!(alone, interleaved);
}

#[test]
fn top_k_one_is_greedy_even_when_hot() {
    let hot = SamplingParams { temperature: 5.0, ..Default::default() };
    assert!(draw(&hot, &LOGITS, 500).iter().any(|&t| t != ARGMAX), "temperature 5 should spread");
    let top1 = SamplingParams { top_k: 1, ..hot };
    assert!(draw(&top1, &LOGITS, 500).iter().all(|&t| t == ARGMAX));
}

#[test]
fn top_k_keeps_only_the_k_most_likely() {
    let params = SamplingParams { temperature: 5.0, top_k: 3, ..Default::default() };
    let c = counts(&draw(&params, &LOGITS, 2000), LOGITS.len());
    // The three most likely: 1 (3.0), 2 (2.5), 5 (2.0).
    assert!(c[1] > 0 && c[2] > 0 && c[5] > 0, "{c:?}");
    assert_eq!(c[0] + c[3] + c[4], 0, "{c:?}");
    // -1 and 0 are off.
    for top_k in [-1, 0] {
        let params = SamplingParams { temperature: 5.0, top_k, ..Default::default() };
        assert!(counts(&draw(&params, &LOGITS, 2000), LOGITS.len()).iter().all(|&n| n > 0));
    }
}

#[test]
fn small_top_p_keeps_only_the_top_token() {
    let params = SamplingParams { temperature: 5.0, top_p: 0.05, ..Default::default() };
    assert!(draw(&params, &LOGITS, 500).iter().all(|&t| t == ARGMAX));
    // At T=5 the top token holds 0.23 of the mass and the top two 0.43: p = 0.35 keeps 1 and 2.
    let params = SamplingParams { temperature: 5.0, top_p: 0.35, ..Default::default() };
    let c = counts(&draw(&params, &LOGITS, 2000), LOGITS.len());
    assert!(c[1] > 0 && c[2] > 0 && c[1] + c[2] == 2000, "{c:?}");
}

#[test]
fn min_p_drops_unlikely_tokens() {
    // At T=1, p(token)/p(top) = exp(l - 3): 2.5 → 0.61, 2.0 → 0.37, 1.0 → 0.14.
    let params = SamplingParams { min_p: 0.3, ..Default::default() };
    let c = counts(&draw(&params, &LOGITS, 4000), LOGITS.len());
    assert!(c[1] > 0 && c[2] > 0 && c[5] > 0, "{c:?}");
    assert_eq!(c[0] + c[3] + c[4], 0, "{c:?}");
}

#[test]
fn logit_bias_bans_and_forces() {
    let ban = SamplingParams { logit_bias: vec![(ARGMAX, -100.0)], ..Default::default() };
    assert!(draw(&ban, &LOGITS, 2000).iter().all(|&t| t != ARGMAX));
    assert_ne!(sampler(&SamplingParams { temperature: 0.0, ..ban }).sample(&LOGITS).token, ARGMAX);
    let force = SamplingParams { logit_bias: vec![(4, 100.0)], ..Default::default() };
    assert!(draw(&force, &LOGITS, 2000).iter().all(|&t| t == 4));
    assert_eq!(sampler(&SamplingParams { temperature: 0.0, ..force }).sample(&LOGITS).token, 4);
    // A small bias shifts a near tie.
    let nudge = SamplingParams { temperature: 0.0, logit_bias: vec![(2, 0.6)], ..Default::default() };
    assert_eq!(sampler(&nudge).sample(&LOGITS).token, 2);
}

#[test]
fn repetition_penalty_counts_the_prompt() {
    let logits = [2.0, 1.9, 0.0];
    let params = SamplingParams { temperature: 0.0, repetition_penalty: 1.5, ..Default::default() };
    assert_eq!(Sampler::new(&params, SEED, &[2], &[]).sample(&logits).token, 0);
    // 2.0 / 1.5 < 1.9.
    assert_eq!(Sampler::new(&params, SEED, &[0, 2], &[]).sample(&logits).token, 1);
    // Negative logits are multiplied: -1.0 * 1.5 < -1.2.
    assert_eq!(Sampler::new(&params, SEED, &[0], &[]).sample(&[-1.0, -1.2]).token, 1);
    // Generated tokens count too.
    let mut s = Sampler::new(&params, SEED, &[], &[]);
    assert_eq!([s.sample(&logits).token, s.sample(&logits).token], [0, 1]);
}

#[test]
fn presence_penalty_lowers_generated_tokens_once() {
    let logits = [1.0, 0.8];
    let run = |params: &SamplingParams, prompt: &[u32]| {
        let mut s = Sampler::new(params, SEED, prompt, &[]);
        (0..4).map(|_| s.sample(&logits).token).collect::<Vec<_>>()
    };
    assert_eq!(run(&greedy(), &[]), [0, 0, 0, 0]);
    let presence = SamplingParams { presence_penalty: 0.5, ..greedy() };
    // 0 drops to 0.5 after its first use, so 1 comes next; 1 then drops to 0.3 and 0 wins from
    // there on (presence does not grow with repeats).
    assert_eq!(run(&presence, &[]), [0, 1, 0, 0]);
    // The prompt does not count.
    assert_eq!(run(&presence, &[0, 0]), [0, 1, 0, 0]);
    // A negative penalty encourages repeats.
    assert_eq!(run(&SamplingParams { presence_penalty: -0.5, ..greedy() }, &[]), [0, 0, 0, 0]);
}

#[test]
fn frequency_penalty_grows_with_each_repeat() {
    let logits = [1.0, 0.5];
    let run = |params: &SamplingParams| {
        let mut s = sampler(params);
        (0..4).map(|_| s.sample(&logits).token).collect::<Vec<_>>()
    };
    // Presence 0.3 never brings 1.0 below 0.5 …
    assert_eq!(run(&SamplingParams { presence_penalty: 0.3, ..greedy() }), [0, 0, 0, 0]);
    // … frequency 0.3 does on the third step: 1.0 - 2 * 0.3 < 0.5.
    assert_eq!(run(&SamplingParams { frequency_penalty: 0.3, ..greedy() }), [0, 0, 1, 0]);
}

#[test]
fn min_tokens_masks_eos_and_stop_ids_until_reached() {
    // EOS (0) is the most likely, then the stop id 3, then 1.
    let logits = [5.0, 1.0, 0.0, 4.0];
    let run = |params: &SamplingParams| {
        let mut s = Sampler::new(params, SEED, &[], &[0]);
        (0..4).map(|_| s.sample(&logits).token).collect::<Vec<_>>()
    };
    let params = SamplingParams { min_tokens: 2, stop_token_ids: vec![3], ..greedy() };
    assert_eq!(run(&params), [1, 1, 0, 0]);
    assert_eq!(run(&SamplingParams { min_tokens: 0, ..params.clone() }), [0, 0, 0, 0]);
    // With ignore_eos the EOS is not a stop, so it is not masked.
    assert_eq!(run(&SamplingParams { ignore_eos: true, ..params.clone() }), [0, 0, 0, 0]);
    // Sampling (not only greedy) respects it.
    let hot = SamplingParams { temperature: 1.0, min_tokens: 50, stop_token_ids: vec![3], ..Default::default() };
    let mut s = Sampler::new(&hot, SEED, &[], &[0]);
    assert!((0..50).all(|_| ![0, 3].contains(&s.sample(&logits).token)));
}

#[test]
fn logprobs_are_of_the_raw_distribution() {
    let params = SamplingParams {
        temperature: 0.7,
        top_k: 3,
        logit_bias: vec![(4, 3.0)],
        repetition_penalty: 1.3,
        logprobs: Some(3),
        ..Default::default()
    };
    let mut s = Sampler::new(&params, SEED, &[1, 2], &[]);
    let exact: Vec<f64> = softmax(&LOGITS, 1.0).iter().map(|p| p.ln()).collect();
    for _ in 0..20 {
        let sampled = s.sample(&LOGITS);
        let lp = sampled.logprob.expect("logprobs were asked for");
        assert!((lp as f64 - exact[sampled.token as usize]).abs() < 1e-5);
        assert_eq!(sampled.top_logprobs.iter().map(|t| t.0).collect::<Vec<_>>(), vec![1, 2, 5]);
        for &(t, lp) in &sampled.top_logprobs {
            assert!((lp as f64 - exact[t as usize]).abs() < 1e-5);
        }
    }
    let none = sampler(&SamplingParams::default()).sample(&LOGITS);
    assert_eq!((none.logprob, none.top_logprobs.len()), (None, 0));
    let only_chosen = sampler(&SamplingParams { logprobs: Some(0), ..Default::default() }).sample(&LOGITS);
    assert!(only_chosen.logprob.is_some() && only_chosen.top_logprobs.is_empty());
}

#[test]
fn non_finite_logits_never_panic() {
    let rows: [&[f32]; 5] = [
        &[f32::NAN, 1.0, f32::NAN, 0.5],
        &[0.0, f32::INFINITY, 1.0, f32::INFINITY],
        &[f32::NEG_INFINITY, f32::NEG_INFINITY, 2.0],
        &[f32::NAN, f32::NAN],
        &[f32::NEG_INFINITY, f32::NEG_INFINITY],
    ];
    let knobs = [
        greedy(),
        SamplingParams::default(),
        SamplingParams { top_k: 2, top_p: 0.5, min_p: 0.1, logprobs: Some(2), ..Default::default() },
        SamplingParams { repetition_penalty: 1.5, frequency_penalty: 1.0, logit_bias: vec![(0, 5.0)], ..Default::default() },
        SamplingParams { min_tokens: 5, ..Default::default() },
    ];
    for params in &knobs {
        for row in rows {
            let mut s = Sampler::new(params, SEED, &[0, 1], &[0]);
            for _ in 0..20 {
                let sampled = s.sample(row);
                assert!((sampled.token as usize) < row.len());
                assert!(!row[sampled.token as usize].is_nan() || row.iter().all(|l| l.is_nan()), "{params:?} picked NaN in {row:?}");
                assert!(sampled.logprob.is_none_or(|lp| !lp.is_nan()));
            }
        }
    }
    // NaN is never drawn, +inf always is.
    assert!(draw(&SamplingParams::default(), rows[0], 500).iter().all(|&t| t == 1 || t == 3));
    let c = counts(&draw(&SamplingParams::default(), rows[1], 500), 4);
    assert!(c[0] + c[2] == 0 && c[1] > 0 && c[3] > 0, "{c:?}");
}

#[test]
fn unvalidated_parameters_do_not_panic() {
    let odd = [
        SamplingParams { temperature: -1.0, ..Default::default() },
        SamplingParams { temperature: f32::NAN, ..Default::default() },
        SamplingParams { top_p: 0.0, min_p: 2.0, top_k: -7, ..Default::default() },
        SamplingParams { top_p: f32::NAN, min_p: f32::NAN, ..Default::default() },
        SamplingParams { repetition_penalty: 0.0, presence_penalty: f32::INFINITY, ..Default::default() },
        SamplingParams {
            logit_bias: vec![(99, 1.0), (0, f32::NAN)],
            stop_token_ids: vec![99],
            min_tokens: 3,
            repetition_penalty: 1.2,
            ..Default::default()
        },
        SamplingParams { top_k: 1000, ..Default::default() },
    ];
    for params in &odd {
        let mut s = Sampler::new(params, SEED, &[50, 1], &[77]);
        for _ in 0..10 {
            assert!((s.sample(&LOGITS).token as usize) < LOGITS.len(), "{params:?}");
        }
    }
}

/// A vocabulary-sized row checked against a plain full sort: top-k and top-p keep exactly the
/// reference's set.
#[test]
fn large_vocabulary_filters_match_a_full_sort() {
    let vocab = 50_000;
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let logits: Vec<f32> = (0..vocab).map(|_| rng.random::<f32>() * 12.0).collect();
    let mut order: Vec<u32> = (0..vocab as u32).collect();
    order.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]).then(a.cmp(&b)));
    let probs = softmax(&logits, 1.0);

    let top_k = SamplingParams { top_k: 40, ..Default::default() };
    let allowed: Vec<u32> = order[..40].to_vec();
    assert!(draw(&top_k, &logits, 500).iter().all(|t| allowed.contains(t)));

    let top_p = SamplingParams { top_p: 0.5, ..Default::default() };
    let mut cumulative = 0.0;
    let kept = order.iter().take_while(|&&t| {
        let below = cumulative < 0.5;
        cumulative += probs[t as usize];
        below
    });
    let mut allowed: Vec<u32> = kept.copied().collect();
    allowed.sort_unstable();
    assert!(allowed.len() > 100, "the test should need several sorted chunks");
    let drawn = draw(&top_p, &logits, 1000);
    assert!(drawn.iter().all(|t| allowed.binary_search(t).is_ok()));
    // The least likely kept tokens are drawn too (the cut is not too early).
    let tail = &order[allowed.len() - allowed.len() / 4..allowed.len()];
    assert!(drawn.iter().any(|t| tail.contains(t)));
}

#[test]
fn device_params_only_for_what_the_device_does_exactly() {
    let eligible = [
        greedy(),
        SamplingParams::default(),
        SamplingParams { temperature: 0.7, top_k: 40, top_p: 0.9, seed: Some(3), ..Default::default() },
        SamplingParams { min_tokens: 3, ..Default::default() }, // nothing to mask: no stop ids, no EOS given
        SamplingParams { min_p: 0.1, ..Default::default() },
    ];
    for p in &eligible {
        assert!(sampler(p).device_eligible(), "{p:?}");
        assert!(sampler(p).device_params().is_some(), "{p:?}");
    }
    let host_only = [
        SamplingParams { logprobs: Some(0), ..Default::default() },
        SamplingParams { logit_bias: vec![(1, 2.0)], ..greedy() },
        SamplingParams { repetition_penalty: 1.2, ..Default::default() },
        SamplingParams { presence_penalty: 0.5, ..Default::default() },
        SamplingParams { frequency_penalty: 0.5, ..Default::default() },
    ];
    for p in &host_only {
        let mut s = sampler(p);
        assert!(!s.device_eligible(), "{p:?}");
        assert_eq!(s.device_params(), None, "{p:?}");
        assert_eq!(s.generated(), 0);
    }
    // min_tokens masks EOS until it is reached: host until then, the device afterwards.
    let params = SamplingParams { min_tokens: 2, ..Default::default() };
    let mut s = Sampler::new(&params, SEED, &[], &[5]);
    assert!(s.device_params().is_none());
    s.sample(&LOGITS);
    assert!(s.device_params().is_none());
    s.sample(&LOGITS);
    assert!(s.device_params().is_some());
    assert_eq!(s.generated(), 3);
}

#[test]
fn device_params_carry_the_request_and_the_seeded_draws() {
    let params = SamplingParams { temperature: 0.7, top_k: 40, top_p: 0.9, ..Default::default() };
    let mut s = sampler(&params);
    let p = s.device_params().unwrap();
    assert_eq!((p.temperature, p.top_k, p.top_p), (0.7, 40, 0.9));
    assert_eq!(s.generated(), 1);
    // The uniform is the sampler's own f64 draw, as the host path would take it.
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let want: Vec<f32> = (0..50).map(|_| rng.random::<f64>() as f32).collect();
    let mut s = sampler(&params);
    let got: Vec<f32> = (0..50).map(|_| s.device_params().unwrap().uniform).collect();
    assert_eq!(got, want);
    assert!(got.iter().all(|u| (0.0..1.0).contains(u)));
    // Greedy (and top_k = 1) draws nothing: argmax rows.
    for p in [greedy(), SamplingParams { top_k: 1, ..Default::default() }] {
        let mut s = sampler(&p);
        assert_eq!(s.device_params(), Some(DrawParams::GREEDY));
        assert!(s.device_params().unwrap().is_greedy());
    }
    // Off filters stay off: top_p NaN or above 1, top_k 0 or -1.
    let off = sampler(&SamplingParams { top_k: -1, top_p: f32::NAN, ..Default::default() }).device_params().unwrap();
    assert_eq!((off.top_k, off.top_p), (0, 1.0));
}

/// Rows of a vocabulary-sized distribution, different each step.
fn rows(steps: usize, vocab: usize) -> Vec<Vec<f32>> {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    (0..steps).map(|_| (0..vocab).map(|_| rng.random::<f32>() * 8.0).collect()).collect()
}

/// The device path, emulated: `device_params` then the rule on the raw row (what
/// `Backend::sample` computes).
fn device_tokens(params: &SamplingParams, rows: &[Vec<f32>]) -> Vec<u32> {
    let mut s = sampler(params);
    let mut scratch = DrawScratch::default();
    rows.iter().map(|row| draw_token(row, &s.device_params().expect("eligible"), &mut scratch)).collect()
}

fn host_tokens(params: &SamplingParams, rows: &[Vec<f32>]) -> Vec<u32> {
    let mut s = sampler(params);
    rows.iter().map(|row| s.sample(row).token).collect()
}

#[test]
fn one_rule_whichever_path_and_whether_or_not_logprobs_are_asked() {
    let rows = rows(40, 3000);
    for params in [
        SamplingParams::default(),
        SamplingParams { temperature: 0.8, top_k: 50, top_p: 0.9, ..Default::default() },
        SamplingParams { temperature: 1.3, min_p: 0.05, ..Default::default() },
        greedy(),
    ] {
        let device = device_tokens(&params, &rows);
        assert_eq!(host_tokens(&params, &rows), device, "{params:?}");
        assert_eq!(host_tokens(&SamplingParams { logprobs: Some(3), ..params.clone() }, &rows), device, "{params:?} with logprobs");
        // A processor that changes nothing (a zero bias) moves the row to the host chain only.
        let neutral = SamplingParams { logit_bias: vec![(7, 0.0)], ..params.clone() };
        assert!(!sampler(&neutral).device_eligible());
        assert_eq!(host_tokens(&neutral, &rows), device, "{params:?} with a neutral processor");
        // And the draws are real draws: a hot request does not repeat one token.
        if !params.is_greedy() {
            assert!(device.iter().any(|&t| t != device[0]));
        }
    }
}

#[test]
fn the_allowed_mask_narrows_the_draw() {
    let rows = rows(20, 500);
    let mut s = sampler(&SamplingParams::default());
    s.allowed_tokens().allow_only(&[3, 17, 400]);
    assert!(!s.device_eligible());
    for row in &rows {
        assert!([3, 17, 400].contains(&s.sample(row).token));
    }
    s.allowed_tokens().allow_all();
    assert!(s.device_eligible());
}
