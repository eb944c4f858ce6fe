//! `POST /token`, `POST /revoke`, `GET /.well-known/openid-configuration`,
//! `GET /.well-known/jwks.json`.

use axum::Json;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Form, State as AxumState};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::Deserialize;
use serde_json::json;
use telar_kit::{OpenApiRouter, routes};
use utoipa::ToSchema;

use crate::State;
use crate::tokens::TokenResponse;

pub(crate) fn routes(state: State) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(token))
        .routes(routes!(revoke))
        .routes(routes!(discovery))
        .routes(routes!(jwks))
        .with_state(state)
}

/// The token request (RFC 6749), form-encoded.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default)]
struct TokenForm {
    /// `password`, `client_credentials` or `refresh_token`.
    grant_type: Option<String>,
    username: Option<String>,
    password: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    refresh_token: Option<String>,
    scope: Option<String>,
}

/// An OAuth error answer (RFC 6749 §5.2).
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        [(http::header::CACHE_CONTROL, "no-store")],
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

/// Too many attempts: the same answer whether the username exists or not.
fn locked(retry_after: std::time::Duration) -> Response {
    let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
    let mut response = oauth_error(
        StatusCode::TOO_MANY_REQUESTS,
        "temporarily_unavailable",
        &format!("too many attempts; retry in {seconds} s"),
    );
    if let Ok(value) = http::HeaderValue::from_str(&seconds.to_string()) {
        response
            .headers_mut()
            .insert(http::header::RETRY_AFTER, value);
    }
    response
}

fn internal(error: telar_sql::Error) -> Response {
    tracing::error!(%error, "token endpoint");
    oauth_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
        "try again",
    )
}

fn granted(response: TokenResponse) -> Response {
    (
        StatusCode::OK,
        [(http::header::CACHE_CONTROL, "no-store")],
        Json(response),
    )
        .into_response()
}

/// The field's value, or the name of the missing field.
fn required<'a>(value: &'a Option<String>, name: &'static str) -> Result<&'a str, &'static str> {
    value.as_deref().filter(|v| !v.is_empty()).ok_or(name)
}

fn missing(name: &str) -> Response {
    oauth_error(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        &format!("`{name}` is required"),
    )
}

/// Issues tokens: password, client-credentials and refresh-token grants.
#[utoipa::path(post, path = "/token", tag = "identity",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, body = TokenResponse), (status = 400, description = "invalid_request, invalid_grant, unsupported_grant_type"),
              (status = 401, description = "invalid_client")))]
async fn token(
    AxumState(state): AxumState<State>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Form(form): Form<TokenForm>,
) -> Response {
    let _ = &form.scope;
    let grant = form.grant_type.as_deref().unwrap_or_default();
    let outcome = match grant {
        "password" => {
            let (username, password) = match (
                required(&form.username, "username"),
                required(&form.password, "password"),
            ) {
                (Ok(u), Ok(p)) => (u, p),
                (Err(name), _) | (_, Err(name)) => return missing(name),
            };
            if let Err(retry_after) = state.login.before(username, peer.ip()).await {
                return locked(retry_after);
            }
            match state.accounts.check("user", username, password).await {
                Err(error) => return internal(error),
                // The same answer for an unknown user and a wrong password.
                Ok(None) => {
                    state.login.failed(username, peer.ip()).await;
                    return oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_grant",
                        "invalid username or password",
                    );
                }
                Ok(Some(account)) => state.tokens.issue(&account, true).await,
            }
        }
        "client_credentials" => {
            let (id, secret) = match (
                required(&form.client_id, "client_id"),
                required(&form.client_secret, "client_secret"),
            ) {
                (Ok(i), Ok(s)) => (i, s),
                (Err(name), _) | (_, Err(name)) => return missing(name),
            };
            match state.accounts.check("client", id, secret).await {
                Err(error) => return internal(error),
                Ok(None) => {
                    return oauth_error(
                        StatusCode::UNAUTHORIZED,
                        "invalid_client",
                        "invalid client credentials",
                    );
                }
                Ok(Some(account)) => state.tokens.issue(&account, false).await,
            }
        }
        "refresh_token" => {
            let token = match required(&form.refresh_token, "refresh_token") {
                Ok(token) => token,
                Err(name) => return missing(name),
            };
            let rotated = match state.tokens.refresh(token).await {
                Err(error) => return internal(error),
                Ok(None) => {
                    return oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_grant",
                        "refresh token invalid, expired, revoked or already used",
                    );
                }
                Ok(Some(rotated)) => rotated,
            };
            let (account_id, next) = rotated;
            match state.accounts.get(&account_id).await {
                Err(error) => return internal(error),
                Ok(None) => {
                    return oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_grant",
                        "the account no longer exists",
                    );
                }
                Ok(Some(account)) => {
                    state
                        .tokens
                        .access_for(&account)
                        .map(|access_token| TokenResponse {
                            access_token,
                            token_type: "Bearer",
                            expires_in: state.tokens.access_ttl(),
                            refresh_token: Some(next),
                        })
                }
            }
        }
        "" => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "`grant_type` is required",
            );
        }
        other => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                &format!(
                    "grant_type `{other}` is not supported (password, client_credentials, refresh_token)"
                ),
            );
        }
    };
    match outcome {
        Ok(response) => granted(response),
        Err(error) => internal(error),
    }
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default)]
struct RevokeForm {
    token: Option<String>,
}

/// Revokes a refresh token and every token rotated from the same login (RFC 7009: always 200).
#[utoipa::path(post, path = "/revoke", tag = "identity",
    request_body(content = RevokeForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "revoked (or unknown)")))]
async fn revoke(AxumState(state): AxumState<State>, Form(form): Form<RevokeForm>) -> Response {
    let Some(token) = form.token.filter(|t| !t.is_empty()) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "`token` is required",
        );
    };
    match state.tokens.revoke(&token).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(error) => internal(error),
    }
}

/// The OpenID Connect discovery document.
#[utoipa::path(get, path = "/.well-known/openid-configuration", tag = "identity",
    responses((status = 200, description = "discovery document")))]
async fn discovery(AxumState(state): AxumState<State>) -> Json<serde_json::Value> {
    let issuer = state.config.issuer.trim_end_matches('/');
    Json(json!({
        "issuer": issuer,
        "token_endpoint": format!("{issuer}/token"),
        "revocation_endpoint": format!("{issuer}/revoke"),
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "grant_types_supported": ["password", "client_credentials", "refresh_token"],
        "token_endpoint_auth_methods_supported": ["client_secret_post"],
        "id_token_signing_alg_values_supported": ["EdDSA"],
        "response_types_supported": ["token"],
        "subject_types_supported": ["public"],
    }))
}

/// The public signing keys (the retired ones until their tokens expire).
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "identity",
    responses((status = 200, description = "JWK set")))]
async fn jwks(AxumState(state): AxumState<State>) -> Json<telar_auth::JwkSet> {
    Json(state.tokens.jwks())
}
