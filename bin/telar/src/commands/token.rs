//! `telar token issue|inspect`.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use telar_auth::Claims;
use telar_identity::IdentityConfig;
use telar_sql::Db;

use crate::cli::TokenCommand;
use crate::commands::CommandError;
use crate::commands::dlq::print_json;
use crate::settings::Settings;

pub async fn run(file: Option<&Path>, command: TokenCommand) -> Result<(), CommandError> {
    match command {
        TokenCommand::Issue(args) => {
            let settings = Settings::load(file).map_err(|e| CommandError::Usage(e.to_string()))?;
            let db = Db::connect(&settings.database, telar_identity::NAME)
                .await
                .map_err(|e| anyhow::anyhow!("cannot open the identity database: {e}"))?;
            let configured = &settings.services.identity.settings;
            let config = IdentityConfig {
                issuer: args.issuer.unwrap_or_else(|| configured.issuer.clone()),
                audience: args.audience.unwrap_or_else(|| configured.audience.clone()),
                keys_secret: std::env::var("TELAR_IDENTITY_KEYS_SECRET").ok(),
                ..IdentityConfig::default()
            };
            let claims = Claims {
                sub: args.sub,
                roles: args.roles,
                permissions: args.permissions,
                org_id: args.org,
                iss: String::new(),
                aud: String::new(),
                exp: 0,
                iat: 0,
                jti: String::new(),
            };
            if args.ttl <= 0 {
                return Err(CommandError::Usage("--ttl must be positive".into()));
            }
            let token = telar_identity::issue_token(db, &config, claims, args.ttl)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            if args.json {
                return print_json(
                    &serde_json::json!({"access_token": token, "token_type": "Bearer", "expires_in": args.ttl}),
                );
            }
            println!("{token}");
            Ok(())
        }
        TokenCommand::Inspect(args) => {
            let mut parts = args.token.split('.');
            let decode =
                |part: Option<&str>, what: &str| -> Result<serde_json::Value, CommandError> {
                    let bytes = URL_SAFE_NO_PAD
                        .decode(part.unwrap_or_default())
                        .map_err(|_| {
                            CommandError::Usage(format!("the token's {what} is not base64url"))
                        })?;
                    serde_json::from_slice(&bytes)
                        .map_err(|_| CommandError::Usage(format!("the token's {what} is not JSON")))
                };
            let header = decode(parts.next(), "header")?;
            let claims = decode(parts.next(), "payload")?;
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            let expires_in = claims["exp"].as_i64().map(|exp| exp - now);
            if args.json {
                return print_json(&serde_json::json!({
                    "header": header, "claims": claims, "expires_in": expires_in, "verified": false,
                }));
            }
            println!("header: {header}");
            println!(
                "claims: {}",
                serde_json::to_string_pretty(&claims).unwrap_or_default()
            );
            match expires_in {
                Some(left) if left > 0 => println!("expires in {left} s"),
                Some(left) => println!("EXPIRED {} s ago", -left),
                None => println!("no exp claim"),
            }
            println!("(decoded only: not verified)");
            Ok(())
        }
    }
}
