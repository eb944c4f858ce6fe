//! Every metric telar exports: name, type, labels and meaning, in one table. The recorder is
//! given each description (Prometheus `# HELP`), `docs/metrics.md` lists the same table (a test
//! keeps them equal), and labels are bounded by construction: route templates or prefixes, never
//! raw paths; roles, never users; topics and groups, never message ids.
//!
//! Counters are exported with the `_total` suffix Prometheus expects (`http_server_request_count`
//! is scraped as `http_server_request_count_total`), as OpenTelemetry's Prometheus exporter does.

/// What a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

#[derive(Debug, Clone, Copy)]
pub struct MetricInfo {
    pub name: &'static str,
    pub kind: Kind,
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

const fn metric(
    kind: Kind,
    name: &'static str,
    labels: &'static [&'static str],
    help: &'static str,
) -> MetricInfo {
    MetricInfo {
        name,
        kind,
        labels,
        help,
    }
}

use Kind::{Counter, Gauge, Histogram};

const HTTP: &[&str] = &["service", "method", "route", "status"];

pub const CATALOG: &[MetricInfo] = &[
    metric(
        Counter,
        "http_server_request_count",
        HTTP,
        "HTTP requests answered, by route template (the gateway: route prefix).",
    ),
    metric(
        Histogram,
        "http_server_request_duration",
        HTTP,
        "Time to answer an HTTP request, in seconds.",
    ),
    metric(
        Counter,
        "http_server_error_count",
        HTTP,
        "HTTP requests answered with a 5xx status.",
    ),
    metric(
        Counter,
        "queue_message_published",
        &["topic"],
        "Messages published on the bus.",
    ),
    metric(
        Counter,
        "queue_message_consumed",
        &["topic", "group"],
        "Messages a consumer group settled with Ack.",
    ),
    metric(
        Counter,
        "queue_message_failed",
        &["topic", "group"],
        "Deliveries that failed (retried or dead-lettered).",
    ),
    metric(
        Gauge,
        "queue_dlq_length",
        &["group"],
        "Dead letters waiting in a consumer group.",
    ),
    metric(
        Histogram,
        "queue_processing_duration",
        &["topic", "group"],
        "Time a handler took for one delivery, in seconds.",
    ),
    metric(
        Counter,
        "store_relay_published",
        &[],
        "Events the event-store relay published on the bus.",
    ),
    metric(
        Gauge,
        "projection_position",
        &["projection"],
        "Global position a projection has applied.",
    ),
    metric(
        Gauge,
        "projection_stopped",
        &["projection"],
        "1 while a projection is stopped on a bad event.",
    ),
    metric(
        Counter,
        "projection_skipped_events",
        &["projection"],
        "Events a projection skipped (OnError::Skip).",
    ),
    metric(
        Counter,
        "saga_started",
        &["saga"],
        "Orchestrated sagas started.",
    ),
    metric(
        Counter,
        "saga_completed",
        &["saga"],
        "Sagas that completed.",
    ),
    metric(
        Counter,
        "saga_compensated",
        &["saga"],
        "Sagas that failed and were compensated.",
    ),
    metric(
        Counter,
        "saga_parked",
        &["saga"],
        "Sagas parked as NeedsAttention.",
    ),
    metric(
        Counter,
        "saga_compensation_executed",
        &["saga", "step"],
        "Compensations that ran.",
    ),
    metric(
        Histogram,
        "saga_step_duration",
        &["saga", "step"],
        "Time a saga step took, in seconds.",
    ),
    metric(
        Counter,
        "saga_transition_violations",
        &["saga"],
        "Choreography events that broke the rule table.",
    ),
    metric(
        Gauge,
        "saga_stuck",
        &[],
        "Choreographed sagas with no event for longer than allowed.",
    ),
    metric(
        Gauge,
        "circuit_breaker_state",
        &["breaker"],
        "Circuit breaker state: 0 closed, 1 open, 2 half-open.",
    ),
    metric(
        Counter,
        "retry_attempts",
        &[],
        "Retries made (not first attempts).",
    ),
    metric(
        Counter,
        "bulkhead_rejected",
        &["bulkhead"],
        "Calls refused by a full bulkhead.",
    ),
    metric(
        Counter,
        "rate_limit_bans",
        &[],
        "Keys banned for repeated limit violations.",
    ),
    metric(
        Counter,
        "cache_hits",
        &["cache"],
        "Cache reads that found a value.",
    ),
    metric(
        Counter,
        "cache_misses",
        &["cache"],
        "Cache reads that found nothing.",
    ),
    metric(
        Counter,
        "cache_evictions",
        &["cache"],
        "Entries evicted from a bounded memory cache.",
    ),
    metric(
        Counter,
        "gateway_upstream_failures",
        &["upstream", "kind"],
        "Upstream calls that failed: connect, timeout, protocol, status.",
    ),
    metric(
        Counter,
        "gateway_retries",
        &["upstream"],
        "Requests the gateway sent again to an upstream.",
    ),
    metric(
        Counter,
        "gateway_rate_limited",
        &["bucket", "kind"],
        "Requests refused at the gateway by role bucket: limited or banned.",
    ),
    metric(
        Counter,
        "gateway_limit_store_errors",
        &[],
        "Limit checks let through because the limits store did not answer.",
    ),
    metric(
        Counter,
        "audit_records_appended",
        &[],
        "Records appended to the audit chain.",
    ),
    metric(
        Counter,
        "documents_signed",
        &[],
        "Documents signed with the operator's key and authenticated at the hub.",
    ),
    metric(
        Counter,
        "hub_calls",
        &["endpoint", "outcome"],
        "Calls to the hub by endpoint: success, refused, failed, deferred, queued, cached.",
    ),
    metric(
        Histogram,
        "hub_latency",
        &["endpoint"],
        "Time the hub took to answer, in seconds.",
    ),
    metric(
        Counter,
        "hub_status_codes",
        &["endpoint", "code"],
        "Hub answers by status code (timeout and unreachable when none came).",
    ),
    metric(
        Counter,
        "hub_rate_limit_exceeded",
        &["endpoint"],
        "Hub calls held back because the endpoint's call budget was spent.",
    ),
    metric(
        Gauge,
        "hub_rate_limit_remaining",
        &["endpoint"],
        "Calls to the hub endpoint still allowed in the current window.",
    ),
    metric(
        Gauge,
        "hub_cb_open",
        &["endpoint"],
        "1 while the hub endpoint's circuit breaker is open.",
    ),
    metric(
        Gauge,
        "hub_queue_length",
        &[],
        "Hub calls queued for a later attempt.",
    ),
    metric(
        Counter,
        "notification_deliveries",
        &["channel", "status"],
        "Notification attempts: sent, failed or skipped.",
    ),
];

/// Gives the installed recorder every description.
pub(crate) fn describe_all() {
    for metric in CATALOG {
        match metric.kind {
            Kind::Counter => metrics::describe_counter!(metric.name, metric.help),
            Kind::Gauge => metrics::describe_gauge!(metric.name, metric.help),
            Kind::Histogram => metrics::describe_histogram!(metric.name, metric.help),
        }
    }
}

/// The exposition with `_total` on counter names that lack it.
pub(crate) fn counters_with_total(text: &str) -> String {
    let counters: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .filter(|name| !name.ends_with("_total"))
        .collect();
    if counters.is_empty() {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + counters.len() * 24);
    for line in text.lines() {
        let renamed = counters.iter().find_map(|name| {
            for prefix in ["# HELP ", "# TYPE ", ""] {
                if let Some(rest) = line.strip_prefix(prefix).and_then(|l| l.strip_prefix(name))
                    && (rest.starts_with(' ') || rest.starts_with('{'))
                {
                    return Some(format!("{prefix}{name}_total{rest}"));
                }
            }
            None
        });
        match renamed {
            Some(line) => out.push_str(&line),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_gain_total_and_nothing_else_changes() {
        let text = "# HELP a_count Requests.\n# TYPE a_count counter\na_count{x=\"1\"} 3\na_count_other 1\n# TYPE b gauge\nb 2\n# TYPE c_total counter\nc_total 1\n";
        let out = counters_with_total(text);
        assert_eq!(
            out,
            "# HELP a_count_total Requests.\n# TYPE a_count_total counter\na_count_total{x=\"1\"} 3\na_count_other 1\n# TYPE b gauge\nb 2\n# TYPE c_total counter\nc_total 1\n"
        );
    }

    /// Every metric a dashboard or alert queries is one the services export.
    #[test]
    fn dashboards_and_alerts_query_exported_metrics() {
        let files = [
            include_str!("../../../deploy/prometheus/alerts.yaml"),
            include_str!("../../../deploy/prometheus/alerts.test.yaml"),
            include_str!("../../../deploy/grafana/api-latency.json"),
            include_str!("../../../deploy/grafana/gateway-protection.json"),
            include_str!("../../../deploy/grafana/queue-health.json"),
            include_str!("../../../deploy/grafana/transfers-saga.json"),
            include_str!("../../../deploy/grafana/cache-efficiency.json"),
            include_str!("../../../deploy/grafana/hub-protection.json"),
        ];
        let exported: Vec<String> = CATALOG
            .iter()
            .flat_map(|m| match m.kind {
                Kind::Counter => vec![format!("{}_total", m.name)],
                Kind::Gauge => vec![m.name.to_owned()],
                Kind::Histogram => ["_bucket", "_sum", "_count"]
                    .iter()
                    .map(|s| format!("{}{s}", m.name))
                    .collect(),
            })
            .collect();
        let mut queried = 0;
        for file in files {
            // A metric in PromQL is an identifier followed by `{` or `[` (a selector or range).
            let bytes = file.as_bytes();
            let mut start = None;
            for (i, b) in bytes.iter().enumerate() {
                let word =
                    b.is_ascii_lowercase() || *b == b'_' || (start.is_some() && b.is_ascii_digit());
                match (word, start) {
                    (true, None) => start = Some(i),
                    (false, Some(s)) => {
                        let name = &file[s..i];
                        if (*b == b'{' || *b == b'[')
                            && name.contains('_')
                            && !name.starts_with('_')
                        {
                            queried += 1;
                            assert!(
                                exported.iter().any(|e| e == name),
                                "`{name}` is not exported"
                            );
                        }
                        start = None;
                    }
                    _ => {}
                }
            }
        }
        assert!(
            queried > 30,
            "only {queried} metrics found: the scan is broken"
        );
    }

    #[test]
    fn the_documented_table_lists_every_metric() {
        let doc = include_str!("../../../docs/metrics.md");
        for metric in CATALOG {
            let exported = match metric.kind {
                Kind::Counter => format!("`{}_total`", metric.name),
                _ => format!("`{}`", metric.name),
            };
            assert!(
                doc.contains(&exported),
                "docs/metrics.md does not list {exported}"
            );
        }
    }
}
