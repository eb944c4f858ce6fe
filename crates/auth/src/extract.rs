//! axum extractors: `Authenticated` (any valid token), `RequireRole<R>`, `RequirePermission<P>`.
//! The token is verified by the `authenticate` middleware, which stores the claims in the
//! request; an extractor only reads them, so a route's signature says what it requires.
//!
//! ```ignore
//! struct Operador;
//! impl Role for Operador { const NAME: &'static str = "operador"; }
//! async fn transfer(RequireRole(claims, _): RequireRole<Operador>) -> … { … }
//! let router = router.layer(axum::middleware::from_fn_with_state(verifier, authenticate));
//! ```

use std::marker::PhantomData;

use axum::extract::{FromRequestParts, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use telar_kit::ApiError;
use telar_types::ErrorCode;

use crate::claims::Claims;
use crate::verifier::{AuthError, Verifier};

/// Verifies a `Bearer` token when there is one; a bad token is 401 at once (an absent one is
/// left to the extractors: public routes have none).
pub async fn authenticate(
    State(verifier): State<Verifier>,
    mut request: Request,
    next: Next,
) -> Response {
    let bearer = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    if let Some(token) = bearer {
        match verifier.verify(&token).await {
            Ok(claims) => {
                request.extensions_mut().insert(claims);
            }
            Err(error @ AuthError::Unavailable(_)) => {
                return ApiError::new(ErrorCode::Unavailable, error.to_string()).into_response();
            }
            Err(error) => {
                // The reason is logged, not told: an attacker learns nothing from the answer.
                tracing::info!(%error, "bearer token refused");
                return unauthenticated("invalid or expired token");
            }
        }
    }
    next.run(request).await
}

fn unauthenticated(detail: &str) -> Response {
    let mut response = ApiError::new(ErrorCode::Unauthenticated, detail).into_response();
    response.headers_mut().insert(
        http::header::WWW_AUTHENTICATE,
        http::HeaderValue::from_static("Bearer"),
    );
    response
}

/// Any valid token.
pub struct Authenticated(pub Claims);

impl<S: Send + Sync> FromRequestParts<S> for Authenticated {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Claims>()
            .cloned()
            .map(Authenticated)
            .ok_or_else(|| unauthenticated("a bearer token is required"))
    }
}

/// A role name, as a type (so a handler's signature names it).
pub trait Role: Send + Sync + 'static {
    const NAME: &'static str;
}

/// A permission name, as a type.
pub trait Permission: Send + Sync + 'static {
    const NAME: &'static str;
}

/// A valid token whose `roles` include `R::NAME` (else 403).
pub struct RequireRole<R: Role>(pub Claims, pub PhantomData<R>);

impl<S: Send + Sync, R: Role> FromRequestParts<S> for RequireRole<R> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Authenticated(claims) = Authenticated::from_request_parts(parts, state).await?;
        if claims.has_role(R::NAME) {
            Ok(RequireRole(claims, PhantomData))
        } else {
            Err(forbidden(&format!("role `{}` required", R::NAME)))
        }
    }
}

/// A valid token whose `permissions` include `P::NAME` (else 403).
pub struct RequirePermission<P: Permission>(pub Claims, pub PhantomData<P>);

impl<S: Send + Sync, P: Permission> FromRequestParts<S> for RequirePermission<P> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Authenticated(claims) = Authenticated::from_request_parts(parts, state).await?;
        if claims.has_permission(P::NAME) {
            Ok(RequirePermission(claims, PhantomData))
        } else {
            Err(forbidden(&format!("permission `{}` required", P::NAME)))
        }
    }
}

fn forbidden(detail: &str) -> Response {
    ApiError::new(ErrorCode::Forbidden, detail).into_response()
}
