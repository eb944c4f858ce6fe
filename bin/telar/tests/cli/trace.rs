//! One trace per request (issue 11): `telar up` exports spans over OTLP/HTTP to a receiver in
//! this test; a document is signed through the gateway with a client `traceparent`, and the
//! spans that come back must form one tree — the gateway under the client, the signature
//! service under the gateway, every outbound call under its caller and above its callee, the
//! published event under the request that published it and every consumer under that — and
//! the log lines of every service on the way carry the trace id.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

use super::{citizen_token, embedded_in, start, terminate};

type Spans = Arc<Mutex<Vec<Span>>>;

/// An OTLP/HTTP (protobuf) trace receiver on a free port; returns its endpoint.
async fn receiver(spans: Spans) -> String {
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let spans = spans.clone();
            async move {
                let Ok(request) = ExportTraceServiceRequest::decode(body) else {
                    return (axum::http::StatusCode::BAD_REQUEST, Vec::new());
                };
                let mut spans = spans.lock().expect("spans");
                for resource in request.resource_spans {
                    for scope in resource.scope_spans {
                        spans.extend(scope.spans);
                    }
                }
                (
                    axum::http::StatusCode::OK,
                    ExportTraceServiceResponse::default().encode_to_vec(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}/v1/traces")
}

fn attribute<'a>(span: &'a Span, key: &str) -> Option<&'a str> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| match &v.value {
            Some(AnyValue::StringValue(text)) => Some(text.as_str()),
            _ => None,
        })
}

/// A citizen with one confirmed document; returns (token, document id).
async fn citizen_with_a_document(
    client: &reqwest::Client,
    gateway: &str,
    data: &std::path::Path,
) -> (String, String) {
    let token = citizen_token(data, "1032456711");
    let registered = client
        .post(format!("{gateway}/citizens"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"id": "1032456711", "name": "Marta Ruiz", "address": "Calle 3", "email": "marta@correo.co"}))
        .send()
        .await
        .expect("register");
    assert_eq!(registered.status(), 201);
    let bytes = b"%PDF-1.4 certificado laboral".to_vec();
    let ticket: serde_json::Value = client
        .post(format!("{gateway}/documents"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"owner": "1032456711", "title": "Certificado", "filename": "cert.pdf",
                                  "content_type": "application/pdf", "size": bytes.len()}))
        .send()
        .await
        .expect("upload-url")
        .json()
        .await
        .expect("ticket");
    let put = client
        .put(ticket["upload"]["url"].as_str().expect("url"))
        .header("content-type", "application/pdf")
        .body(bytes.clone())
        .send()
        .await
        .expect("put");
    assert_eq!(put.status(), 201);
    let id = ticket["document"]["id"].as_str().expect("id").to_owned();
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&bytes))
    };
    let confirmed = client
        .post(format!("{gateway}/documents/{id}/confirm"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"sha256": sha, "size": bytes.len()}))
        .send()
        .await
        .expect("confirm");
    assert_eq!(confirmed.status(), 200);
    (token, id)
}

/// The spans of one trace, by span id, with a way to walk up.
struct Tree {
    spans: HashMap<Vec<u8>, Span>,
}

impl Tree {
    fn parent(&self, span: &Span) -> Option<&Span> {
        self.spans.get(&span.parent_span_id)
    }

    fn descends_from(&self, span: &Span, ancestor: &Span) -> bool {
        let mut current = self.parent(span);
        while let Some(step) = current {
            if step.span_id == ancestor.span_id {
                return true;
            }
            current = self.parent(step);
        }
        false
    }

    fn children<'a>(&'a self, parent: &'a Span) -> impl Iterator<Item = &'a Span> + 'a {
        self.spans
            .values()
            .filter(move |s| s.parent_span_id == parent.span_id)
    }

    fn describe(&self) -> String {
        let mut lines: Vec<String> = self
            .spans
            .values()
            .map(|s| {
                format!(
                    "{} {} parent={} service={:?} topic={:?}",
                    hex::encode(&s.span_id),
                    s.name,
                    hex::encode(&s.parent_span_id),
                    attribute(s, "service"),
                    attribute(s, "messaging.destination.name"),
                )
            })
            .collect();
        lines.sort();
        lines.join("\n")
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_trace_follows_a_signing_through_gateway_services_bus_and_consumers() {
    let spans: Spans = Arc::default();
    let endpoint = receiver(spans.clone()).await;
    let dir = tempfile::tempdir().expect("dir");
    let mut env = embedded_in(dir.path());
    env.extend([
        ("TELAR_TELEMETRY__OTLP__ENABLED", "true".to_owned()),
        ("TELAR_TELEMETRY__OTLP__ENDPOINT", endpoint),
        // Export every 100 ms instead of every 5 s.
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
    ]);
    let (mut child, urls, rest) = start(&["up"], &env);
    let gateway = urls["gateway"].clone();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    let (token, document) = citizen_with_a_document(&client, &gateway, dir.path()).await;

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let client_span = "00f067aa0ba902b7";
    let signed = client
        .post(format!("{gateway}/signatures"))
        .bearer_auth(&token)
        .header("traceparent", format!("00-{trace_id}-{client_span}-01"))
        .json(&serde_json::json!({"document_id": document}))
        .send()
        .await
        .expect("sign");
    assert_eq!(signed.status(), 201);

    // Wait until the notification service's consumer of the authenticated event has exported
    // its span (the last hop of the flow), then take the whole trace.
    let trace = hex::decode(trace_id).expect("hex");
    let deadline = Instant::now() + Duration::from_secs(30);
    let tree = loop {
        let tree = Tree {
            spans: spans
                .lock()
                .expect("spans")
                .iter()
                .filter(|s| s.trace_id == trace)
                .map(|s| (s.span_id.clone(), s.clone()))
                .collect(),
        };
        let notified = tree.spans.values().any(|s| {
            attribute(s, "messaging.destination.name") == Some("carpeta.document.authenticated")
                && attribute(s, "messaging.consumer.group.name") == Some("notification")
        });
        if notified {
            break tree;
        }
        if Instant::now() >= deadline {
            let consumers: Vec<String> = spans
                .lock()
                .expect("spans")
                .iter()
                .filter(|s| s.name.ends_with(" process"))
                .map(|s| {
                    format!(
                        "{} trace={} parent={}",
                        s.name,
                        hex::encode(&s.trace_id),
                        hex::encode(&s.parent_span_id)
                    )
                })
                .collect();
            panic!(
                "the notification consumer's span never arrived:\n{}\nconsumer spans: {consumers:#?}",
                tree.describe()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let all = tree.describe();

    // One connected tree under the client's span: no span of this trace hangs from nowhere.
    for span in tree.spans.values() {
        let parent = hex::encode(&span.parent_span_id);
        assert!(
            parent == client_span || tree.spans.contains_key(&span.parent_span_id),
            "span {} has a parent outside the trace:\n{all}",
            span.name
        );
    }
    let gateway_span = tree
        .spans
        .values()
        .find(|s| s.name == "gateway POST")
        .unwrap_or_else(|| panic!("no gateway span:\n{all}"));
    assert_eq!(hex::encode(&gateway_span.parent_span_id), client_span);
    let service_span = |service: &str| {
        tree.spans
            .values()
            .find(|s| attribute(s, "service") == Some(service) && s.name.contains(' '))
            .unwrap_or_else(|| panic!("no server span of {service}:\n{all}"))
    };
    let signature = service_span("signature");
    assert_eq!(signature.name, "POST /signatures");
    assert_eq!(
        signature.parent_span_id, gateway_span.span_id,
        "signature under the gateway:\n{all}"
    );
    // Outbound calls: a client span under the caller, the callee's server span under it.
    for (caller, callee) in [
        (signature, "iam"),
        (signature, "hub-client"),
        (service_span("hub-client"), "hub-sim"),
    ] {
        let callee_span = service_span(callee);
        let call = tree
            .parent(callee_span)
            .unwrap_or_else(|| panic!("{callee} has no parent:\n{all}"));
        assert!(
            attribute(call, "server.address").is_some(),
            "{callee} is called through a client span, not {}:\n{all}",
            call.name
        );
        assert!(
            tree.descends_from(call, caller),
            "the call to {callee} is under its caller:\n{all}"
        );
    }
    // The event: published under the signing request, consumed under the publish.
    let publish = tree
        .spans
        .values()
        .find(|s| {
            s.name == "carpeta.document.authenticated publish" && tree.descends_from(s, signature)
        })
        .unwrap_or_else(|| panic!("no publish span under the signing request:\n{all}"));
    let consumers: Vec<&Span> = tree
        .children(publish)
        .filter(|s| s.name == "carpeta.document.authenticated process")
        .collect();
    let groups: Vec<&str> = consumers
        .iter()
        .filter_map(|s| attribute(s, "messaging.consumer.group.name"))
        .collect();
    assert!(
        groups.contains(&"notification"),
        "the notification consumer is a child of the publish: {groups:?}\n{all}"
    );

    terminate(&child);
    assert!(child.wait().expect("wait").success());
    let output = rest.join().unwrap_or_default();
    let mut services_logging: BTreeMap<String, usize> = BTreeMap::new();
    for line in output
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| line["trace_id"] == trace_id)
    {
        if let Some(service) = line["service"].as_str() {
            *services_logging.entry(service.to_owned()).or_default() += 1;
        }
    }
    for service in ["gateway", "signature", "iam", "hub-client", "hub-sim"] {
        assert!(
            services_logging.contains_key(service),
            "{service} logs the trace id; services that did: {services_logging:?}"
        );
    }
}
