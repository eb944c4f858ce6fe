use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Histogram buckets (seconds) for request and call durations: 1 ms to 30 s.
const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide Prometheus recorder once; later calls are no-ops. Every service of
/// the process records into it, distinguished by the `service` label.
pub fn install_metrics() {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("duration".to_owned()), DURATION_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Suffix("latency".to_owned()), DURATION_BUCKETS)
            });
        let handle = match builder {
            Ok(builder) => builder.install_recorder().ok(),
            Err(_) => None,
        };
        if let Some(handle) = &handle {
            spawn_upkeep(handle.clone());
        }
        crate::catalog::describe_all();
        handle
    });
}

/// How often histogram samples are folded into their buckets between scrapes.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Histograms keep every sample until they are folded into buckets — at a scrape, or here. A
/// process nobody scrapes (a laptop, `telar up`) would otherwise keep 8 bytes per request per
/// histogram for ever (measured: +40 MiB in a minute of gateway load).
fn spawn_upkeep(handle: PrometheusHandle) {
    let _ = std::thread::Builder::new()
        .name("telar-metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_EVERY);
                handle.run_upkeep();
            }
        });
}

/// The Prometheus text exposition of every metric recorded in this process.
pub fn render_metrics() -> String {
    install_metrics();
    match HANDLE.get() {
        Some(Some(handle)) => crate::catalog::counters_with_total(&handle.render()),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_metrics_are_rendered_with_histogram_buckets() {
        install_metrics();
        metrics::counter!("telemetry_test_total", "service" => "t").increment(3);
        metrics::histogram!("telemetry_test_duration", "service" => "t").record(0.02);
        let text = render_metrics();
        assert!(
            text.contains("telemetry_test_total{service=\"t\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("telemetry_test_duration_bucket{service=\"t\",le=\"0.025\"} 1"),
            "{text}"
        );
    }
}
