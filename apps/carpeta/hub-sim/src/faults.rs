//! Fault injection for hub calls: error rate, added latency, 503 windows and the next N calls
//! failing. Held in memory: a restart of the simulator clears faults, never state.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;

/// The faults to apply to hub calls (`PUT /control/faults`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Faults {
    /// Fraction of hub calls answered with 500, from 0.0 to 1.0.
    pub error_rate: f64,
    /// Milliseconds added before every hub call is handled.
    pub latency_ms: u64,
    /// Answer 503 to every hub call for this many milliseconds from now (the real hub went 503
    /// for stretches).
    pub unavailable_for_ms: u64,
    /// The next N hub calls fail with `fail_status`.
    pub fail_next: u32,
    /// Status for `fail_next` (500–599).
    pub fail_status: u16,
    /// Hub endpoints the faults apply to (`registerCitizen`, `getOperators`, ...); empty: all.
    pub endpoints: Vec<String>,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            error_rate: 0.0,
            latency_ms: 0,
            unavailable_for_ms: 0,
            fail_next: 0,
            fail_status: 503,
            endpoints: Vec::new(),
        }
    }
}

/// The hub endpoints faults can be limited to.
pub(crate) const ENDPOINTS: &[&str] = &[
    "validateCitizen",
    "registerCitizen",
    "unregisterCitizen",
    "authenticateDocument",
    "registerOperator",
    "registerTransferEndPoint",
    "getOperators",
];

/// Names the first invalid field.
pub(crate) fn validate(
    faults: &Faults,
    request_timeout_ms: u64,
) -> Result<(), (&'static str, String)> {
    if let Some(unknown) = faults
        .endpoints
        .iter()
        .find(|e| !ENDPOINTS.iter().any(|k| k.eq_ignore_ascii_case(e)))
    {
        return Err((
            "endpoints",
            format!(
                "`{unknown}` is not a hub endpoint; use one of {}",
                ENDPOINTS.join(", ")
            ),
        ));
    }
    if faults.latency_ms >= request_timeout_ms {
        return Err((
            "latency_ms",
            format!("must be below the request timeout ({request_timeout_ms} ms)"),
        ));
    }
    if !(0.0..=1.0).contains(&faults.error_rate) || faults.error_rate.is_nan() {
        return Err(("error_rate", "must be between 0.0 and 1.0".into()));
    }
    if faults.latency_ms > 60_000 {
        return Err(("latency_ms", "must be at most 60000".into()));
    }
    if faults.unavailable_for_ms > 3_600_000 {
        return Err((
            "unavailable_for_ms",
            "must be at most 3600000 (one hour)".into(),
        ));
    }
    if !(500..=599).contains(&faults.fail_status) {
        return Err(("fail_status", "must be a 5xx status".into()));
    }
    Ok(())
}

#[derive(Debug, Default)]
struct Active {
    faults: Faults,
    unavailable_until: Option<Instant>,
    remaining_failures: u32,
}

#[derive(Debug, Default)]
pub(crate) struct FaultState {
    active: Mutex<Active>,
}

struct Decision {
    latency: Duration,
    fail: Option<StatusCode>,
}

impl FaultState {
    pub fn set(&self, faults: Faults) {
        if let Ok(mut active) = self.active.lock() {
            active.unavailable_until = (faults.unavailable_for_ms > 0)
                .then(|| Instant::now() + Duration::from_millis(faults.unavailable_for_ms));
            active.remaining_failures = faults.fail_next;
            active.faults = faults;
        }
    }

    /// The faults in force now: remaining window and remaining failures.
    pub fn current(&self) -> Faults {
        let Ok(active) = self.active.lock() else {
            return Faults::default();
        };
        let remaining_window = active
            .unavailable_until
            .map(|until| until.saturating_duration_since(Instant::now()).as_millis() as u64)
            .unwrap_or(0);
        Faults {
            unavailable_for_ms: remaining_window,
            fail_next: active.remaining_failures,
            ..active.faults.clone()
        }
    }

    fn decide(&self, endpoint: &str) -> Decision {
        let Ok(mut active) = self.active.lock() else {
            return Decision {
                latency: Duration::ZERO,
                fail: None,
            };
        };
        let applies = active.faults.endpoints.is_empty()
            || active
                .faults
                .endpoints
                .iter()
                .any(|e| e.eq_ignore_ascii_case(endpoint));
        if !applies {
            return Decision {
                latency: Duration::ZERO,
                fail: None,
            };
        }
        let latency = Duration::from_millis(active.faults.latency_ms);
        let fail = if active
            .unavailable_until
            .is_some_and(|until| Instant::now() < until)
        {
            Some(StatusCode::SERVICE_UNAVAILABLE)
        } else if active.remaining_failures > 0 {
            active.remaining_failures -= 1;
            Some(
                StatusCode::from_u16(active.faults.fail_status)
                    .unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            )
        } else if active.faults.error_rate > 0.0 && rand::random::<f64>() < active.faults.error_rate
        {
            Some(StatusCode::INTERNAL_SERVER_ERROR)
        } else {
            None
        };
        Decision { latency, fail }
    }
}

/// Middleware on hub routes: the `Origin` rule first (as the real hub's CORS filter), then faults.
pub(crate) async fn hub_guard(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(origin) = request.headers().get(header::ORIGIN) {
        let allowed = origin
            .to_str()
            .is_ok_and(|o| state.config.allowed_origins.iter().any(|a| a == o));
        if !allowed {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json("Not allowed by CORS"),
            )
                .into_response();
        }
    }
    let endpoint = request
        .uri()
        .path()
        .trim_start_matches("/apis/")
        .split('/')
        .next()
        .unwrap_or("")
        .to_owned();
    let decision = state.faults.decide(&endpoint);
    if !decision.latency.is_zero() {
        tokio::time::sleep(decision.latency).await;
    }
    if let Some(status) = decision.fail {
        tracing::info!(endpoint, status = status.as_u16(), "fault injected");
        let text = status.canonical_reason().unwrap_or("Error");
        return (status, Json(text)).into_response();
    }
    next.run(request).await
}
