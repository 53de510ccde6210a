//! The process-wide Prometheus recorder that `/metrics` renders: engine and request metrics
//! recorded through the `metrics` facade land here, with histogram buckets fitted to them.

/// Seconds buckets for latency histograms (1 ms to 2 min), token-count buckets for step sizes.
const SECONDS_BUCKETS: [f64; 16] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];
const TOKEN_BUCKETS: [f64; 14] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0];
/// Mean token logprob buckets (nats per token).
const NATS_BUCKETS: [f64; 10] = [-8.0, -4.0, -2.0, -1.5, -1.0, -0.75, -0.5, -0.25, -0.1, 0.0];

/// Installs the process-wide Prometheus recorder that `/metrics` renders.
pub fn metrics_recorder() -> Result<metrics_exporter_prometheus::PrometheusHandle, String> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_tokens".into()), &TOKEN_BUCKETS))
        .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_nats".into()), &NATS_BUCKETS))
        .and_then(|b| b.install_recorder())
        .map_err(|e| format!("cannot install the metrics recorder: {e}"))
}
