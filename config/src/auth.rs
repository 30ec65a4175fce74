//! The `[auth]` section: how fronts verify the JWT a client presents in its hello, and
//! what of it reaches the games. Only its shape and ranges are checked here; the key
//! material is read and parsed by a front when it starts.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::Secret;

/// Client authentication with JSON Web Tokens. Without this section tokens are ignored
/// and every channel is open to every client.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// The one algorithm tokens must be signed with; others are refused.
    pub algorithm: JwtAlgorithm,
    /// The HMAC secret itself (HS* algorithms). Never logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Secret>,
    /// The environment variable holding the HMAC secret, read when a front starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
    /// A file holding the HMAC secret (trailing newlines are not part of it); relative
    /// to the config file's folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
    /// The PEM public key tokens are verified with (RS*, ES*, EdDSA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_file: Option<PathBuf>,
    /// A JWKS (JSON Web Key Set) file: the key of each token is the one its `kid` names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_file: Option<PathBuf>,
    /// When set, tokens must carry this `iss`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// When set, tokens must carry this `aud` (or a list with it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    #[serde(default = "default_leeway")]
    pub leeway_s: u32,
    /// Claims passed on to the games with the subject, when the token has them.
    #[serde(default)]
    pub claims: Vec<String>,
    /// The claim listing the channels a client may join (patterns, `*` for any
    /// characters). A token without it may join every channel.
    #[serde(default = "default_channels_claim")]
    pub channels_claim: String,
}

/// A signing algorithm of tokens, as the JWT header names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum JwtAlgorithm {
    HS256,
    HS384,
    HS512,
    RS256,
    RS384,
    RS512,
    ES256,
    ES384,
    EdDSA,
}

impl JwtAlgorithm {
    /// Whether tokens are signed with a shared secret (HMAC) rather than a key pair.
    pub fn is_hmac(self) -> bool {
        matches!(self, Self::HS256 | Self::HS384 | Self::HS512)
    }
}

/// Bounds of `auth.leeway_s`.
const MAX_LEEWAY_S: u32 = 600;
/// At most this many claims are passed on, each name at most this long.
const MAX_CLAIMS: usize = 32;
const MAX_CLAIM_NAME: usize = 64;
/// An HMAC secret shorter than the hash is guessable offline from one token.
pub const MIN_HMAC_SECRET: usize = 32;

fn default_leeway() -> u32 {
    30
}

fn default_channels_claim() -> String {
    "channels".into()
}

impl AuthConfig {
    /// Every rule the section breaks, as `(field, reason)`.
    pub(crate) fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut push = |field: &str, reason: String| out.push((format!("auth.{field}"), reason));
        let secrets = [
            ("secret", self.secret.is_some()),
            ("secret_env", self.secret_env.is_some()),
            ("secret_file", self.secret_file.is_some()),
        ];
        let keys = [
            ("public_key_file", self.public_key_file.is_some()),
            ("jwks_file", self.jwks_file.is_some()),
        ];
        let (wanted, unwanted) = if self.algorithm.is_hmac() {
            (&secrets[..], &keys[..])
        } else {
            (&keys[..], &secrets[..])
        };
        let given: Vec<&str> = wanted.iter().filter(|w| w.1).map(|w| w.0).collect();
        let names: Vec<&str> = wanted.iter().map(|w| w.0).collect();
        let algorithm = format!("{:?}", self.algorithm);
        if given.len() != 1 {
            push(
                "algorithm",
                format!(
                    "{algorithm} needs exactly one of {} (got {})",
                    names.join(", "),
                    if given.is_empty() {
                        "none".into()
                    } else {
                        given.join(", ")
                    }
                ),
            );
        }
        for (name, set) in unwanted {
            if *set {
                push(name, format!("is not used with algorithm {algorithm}"));
            }
        }
        if let Some(secret) = &self.secret
            && secret.expose().len() < MIN_HMAC_SECRET
        {
            push(
                "secret",
                format!("must be at least {MIN_HMAC_SECRET} bytes"),
            );
        }
        if let Some(var) = &self.secret_env
            && (var.is_empty() || var.contains(['=', '\0']))
        {
            push(
                "secret_env",
                "must be an environment variable's name".into(),
            );
        }
        for (name, path) in [
            ("secret_file", &self.secret_file),
            ("public_key_file", &self.public_key_file),
            ("jwks_file", &self.jwks_file),
        ] {
            if path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
                push(name, "must not be empty".into());
            }
        }
        for (name, value) in [("issuer", &self.issuer), ("audience", &self.audience)] {
            if value.as_ref().is_some_and(String::is_empty) {
                push(name, "must not be empty when set".into());
            }
        }
        if self.leeway_s > MAX_LEEWAY_S {
            push("leeway_s", format!("must be between 0 and {MAX_LEEWAY_S}"));
        }
        if self.claims.len() > MAX_CLAIMS {
            push("claims", format!("must name at most {MAX_CLAIMS} claims"));
        }
        for (i, claim) in self.claims.iter().enumerate() {
            if claim.is_empty() || claim.len() > MAX_CLAIM_NAME {
                push(
                    &format!("claims[{i}]"),
                    format!("must be 1-{MAX_CLAIM_NAME} characters"),
                );
            }
        }
        if self.channels_claim.is_empty() || self.channels_claim.len() > MAX_CLAIM_NAME {
            push(
                "channels_claim",
                format!("must be 1-{MAX_CLAIM_NAME} characters"),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hs256() -> AuthConfig {
        AuthConfig {
            algorithm: JwtAlgorithm::HS256,
            secret: Some(Secret::new("x".repeat(32))),
            secret_env: None,
            secret_file: None,
            public_key_file: None,
            jwks_file: None,
            issuer: None,
            audience: None,
            leeway_s: 30,
            claims: Vec::new(),
            channels_claim: "channels".into(),
        }
    }

    fn problems(auth: &AuthConfig) -> Vec<String> {
        auth.problems()
            .into_iter()
            .map(|(field, reason)| format!("{field}: {reason}"))
            .collect()
    }

    #[test]
    fn a_key_that_fits_the_algorithm_and_values_in_range_are_valid() {
        assert!(problems(&hs256()).is_empty());
        let es256 = AuthConfig {
            algorithm: JwtAlgorithm::ES256,
            secret: None,
            jwks_file: Some("keys.json".into()),
            issuer: Some("https://auth.example.com".into()),
            leeway_s: 600,
            claims: vec!["name".into()],
            ..hs256()
        };
        assert!(problems(&es256).is_empty());
    }

    #[test]
    fn each_bad_value_is_named_by_its_field() {
        let bad = AuthConfig {
            secret: Some(Secret::new("short")),
            secret_env: Some("A=B".into()),
            public_key_file: Some("key.pem".into()),
            issuer: Some(String::new()),
            leeway_s: 601,
            claims: vec![String::new()],
            channels_claim: String::new(),
            ..hs256()
        };
        assert_eq!(
            problems(&bad),
            [
                "auth.algorithm: HS256 needs exactly one of secret, secret_env, secret_file (got secret, secret_env)",
                "auth.public_key_file: is not used with algorithm HS256",
                "auth.secret: must be at least 32 bytes",
                "auth.secret_env: must be an environment variable's name",
                "auth.issuer: must not be empty when set",
                "auth.leeway_s: must be between 0 and 600",
                "auth.claims[0]: must be 1-64 characters",
                "auth.channels_claim: must be 1-64 characters",
            ]
        );
        let keyless = AuthConfig {
            algorithm: JwtAlgorithm::EdDSA,
            secret: None,
            ..hs256()
        };
        assert_eq!(
            problems(&keyless),
            ["auth.algorithm: EdDSA needs exactly one of public_key_file, jwks_file (got none)"]
        );
    }
}
