//! Client authentication: the JWT in a client's hello, checked against `[auth]`
//! (signature, `exp`, `nbf`, issuer, audience), and what it proves: the identity the
//! games see and the channels the connection may join ([`Grant`]).

use std::fmt;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use centrum_config::{AuthConfig, Config, FieldError, JwtAlgorithm, MIN_HMAC_SECRET};
use centrum_protocol::Identity;
use tracing::debug;

use crate::close::End;
use crate::hub::Hub;

/// The subject and claims passed on take at most this many bytes (MessagePack): they
/// travel with every join and are journaled with it.
pub(crate) const MAX_IDENTITY_BYTES: usize = 4096;

/// Checks client tokens, with the keys read when the front started.
pub(crate) struct Verifier {
    keys: Keys,
    validation: Validation,
    claims: Vec<String>,
    channels_claim: String,
    /// Whether some channel takes clients without a token; if none does, a hello
    /// without one is refused at once.
    anonymous_channels: bool,
}

enum Keys {
    One(DecodingKey),
    /// From a JWKS, by `kid`. A key without a `kid` is used for tokens without one,
    /// when it is the set's only usable key.
    Set(Vec<(Option<String>, DecodingKey)>),
}

/// What a connection's hello token grants: the channels it may join, the identity its
/// joins carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Grant {
    /// No `[auth]`: every channel, no identity.
    Open,
    /// No token: the channels with `anonymous = true` only.
    Anonymous,
    /// A verified token.
    Token {
        identity: Identity,
        /// Its channel patterns; `None`: the token does not limit channels.
        channels: Option<Vec<String>>,
    },
}

/// Why a token was refused. The message never quotes the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AuthFailure {
    Missing,
    Malformed,
    Signature,
    Algorithm,
    UnknownKey,
    Expired,
    NotYetValid,
    Issuer,
    Audience,
    Claims(String),
}

impl AuthFailure {
    /// Every `reason` label of `centrum_front_auth_failures_total`, in [`AuthFailure::index`] order.
    pub(crate) const LABELS: [&'static str; 10] = [
        "missing",
        "malformed",
        "signature",
        "algorithm",
        "key",
        "expired",
        "not_yet_valid",
        "issuer",
        "audience",
        "claims",
    ];

    pub(crate) fn index(&self) -> usize {
        match self {
            Self::Missing => 0,
            Self::Malformed => 1,
            Self::Signature => 2,
            Self::Algorithm => 3,
            Self::UnknownKey => 4,
            Self::Expired => 5,
            Self::NotYetValid => 6,
            Self::Issuer => 7,
            Self::Audience => 8,
            Self::Claims(_) => 9,
        }
    }

    /// The `Error` message a client gets: `<reason>: <what failed>`.
    pub(crate) fn message(&self) -> String {
        let what = match self {
            Self::Missing => "this cluster requires a token in the hello".to_owned(),
            Self::Malformed => "the token is not a well-formed JWT".to_owned(),
            Self::Signature => "the token's signature does not verify".to_owned(),
            Self::Algorithm => "the token is signed with another algorithm".to_owned(),
            Self::UnknownKey => "the token's kid names no key of this cluster".to_owned(),
            Self::Expired => "the token has expired (exp)".to_owned(),
            Self::NotYetValid => "the token is not valid yet (nbf)".to_owned(),
            Self::Issuer => "the token's issuer (iss) is not the one expected".to_owned(),
            Self::Audience => "the token's audience (aud) is not this cluster".to_owned(),
            Self::Claims(why) => why.clone(),
        };
        format!("{}: {what}", Self::LABELS[self.index()])
    }

    fn from_jwt(e: &jsonwebtoken::errors::Error) -> Self {
        match e.kind() {
            ErrorKind::InvalidSignature => Self::Signature,
            ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => Self::Algorithm,
            ErrorKind::ExpiredSignature => Self::Expired,
            ErrorKind::ImmatureSignature => Self::NotYetValid,
            ErrorKind::InvalidIssuer => Self::Issuer,
            ErrorKind::InvalidAudience => Self::Audience,
            ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
                "iss" => Self::Issuer,
                "aud" => Self::Audience,
                _ => Self::Claims(format!("the token has no `{claim}` claim")),
            },
            ErrorKind::InvalidClaimFormat(claim) => {
                Self::Claims(format!("the token's `{claim}` claim is malformed"))
            }
            // A public key that does not fit the algorithm is refused when the front
            // starts; what is left is a token that does not decode.
            _ => Self::Malformed,
        }
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("algorithms", &self.validation.algorithms)
            .field("claims", &self.claims)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// The verifier of `config`'s `[auth]`, with its key read, or `None` without one.
    ///
    /// # Errors
    /// A [`FieldError`] naming the `auth` field whose key cannot be read or used.
    pub(crate) fn from_config(config: &Config) -> Result<Option<Self>, FieldError> {
        let Some(auth) = &config.auth else {
            return Ok(None);
        };
        let algorithm = algorithm(auth.algorithm);
        let keys = if auth.algorithm.is_hmac() {
            Keys::One(DecodingKey::from_secret(&hmac_secret(auth)?))
        } else if let Some(path) = &auth.public_key_file {
            let pem = read("public_key_file", path)?;
            let key = match auth.algorithm {
                JwtAlgorithm::ES256 | JwtAlgorithm::ES384 => DecodingKey::from_ec_pem(&pem),
                JwtAlgorithm::EdDSA => DecodingKey::from_ed_pem(&pem),
                _ => DecodingKey::from_rsa_pem(&pem),
            };
            let key = key.map_err(|e| {
                field(
                    "public_key_file",
                    format!(
                        "{}: not a PEM public key for {:?} ({e})",
                        path.display(),
                        auth.algorithm
                    ),
                )
            })?;
            Keys::One(key)
        } else if let Some(path) = &auth.jwks_file {
            Keys::Set(jwks(path, algorithm)?)
        } else {
            // Validation requires one of the key settings for every algorithm.
            return Err(field("algorithm", "no key is set".into()));
        };
        let mut validation = Validation::new(algorithm);
        validation.leeway = u64::from(auth.leeway_s);
        validation.validate_nbf = true;
        // Without `aud` in the required claims a token lacking one would pass an
        // audience check; the same for `iss`.
        let mut required = vec!["exp", "sub"];
        validation.validate_aud = auth.audience.is_some();
        if let Some(audience) = &auth.audience {
            validation.set_audience(&[audience]);
            required.push("aud");
        }
        if let Some(issuer) = &auth.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        let anonymous_channels = config
            .backs
            .iter()
            .flat_map(|b| &b.channels)
            .any(|c| c.anonymous);
        Ok(Some(Self {
            keys,
            validation,
            claims: auth.claims.clone(),
            channels_claim: auth.channels_claim.clone(),
            anonymous_channels,
        }))
    }

    /// What a hello with `token` (empty: none) may do.
    ///
    /// # Errors
    /// [`AuthFailure`] for a token that does not verify, or none where one is required.
    pub(crate) fn admit(&self, token: &str) -> Result<Grant, AuthFailure> {
        if token.is_empty() {
            return if self.anonymous_channels {
                Ok(Grant::Anonymous)
            } else {
                Err(AuthFailure::Missing)
            };
        }
        let key = match &self.keys {
            Keys::One(key) => key,
            Keys::Set(keys) => {
                let header =
                    jsonwebtoken::decode_header(token).map_err(|e| AuthFailure::from_jwt(&e))?;
                match (header.kid, keys.as_slice()) {
                    (Some(kid), keys) => keys
                        .iter()
                        .find(|(k, _)| k.as_deref() == Some(kid.as_str()))
                        .map(|(_, key)| key)
                        .ok_or(AuthFailure::UnknownKey)?,
                    (None, [(None, key)]) => key,
                    (None, _) => return Err(AuthFailure::UnknownKey),
                }
            }
        };
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, key, &self.validation)
            .map_err(|e| AuthFailure::from_jwt(&e))?
            .claims;
        self.access(&claims)
    }

    /// The identity and channel patterns of verified `claims`.
    fn access(&self, claims: &Map<String, Value>) -> Result<Grant, AuthFailure> {
        let Some(Value::String(subject)) = claims.get("sub") else {
            return Err(AuthFailure::Claims(
                "the token's `sub` must be a string".into(),
            ));
        };
        let mut identity = Identity::new(subject.as_str());
        for name in &self.claims {
            if let Some(value) = claims.get(name) {
                identity = identity.with_claim(name, value);
            }
        }
        let size = rmp_serde::to_vec(&identity).map_or(usize::MAX, |b| b.len());
        if size > MAX_IDENTITY_BYTES {
            return Err(AuthFailure::Claims(format!(
                "the subject and claims passed on take {size} bytes, more than {MAX_IDENTITY_BYTES}"
            )));
        }
        let channels = match claims.get(&self.channels_claim) {
            None => None,
            Some(Value::Array(patterns)) => Some(
                patterns
                    .iter()
                    .map(|p| p.as_str().map(str::to_owned))
                    .collect::<Option<Vec<String>>>()
                    .ok_or_else(|| self.bad_channels())?,
            ),
            Some(_) => return Err(self.bad_channels()),
        };
        Ok(Grant::Token { identity, channels })
    }

    fn bad_channels(&self) -> AuthFailure {
        AuthFailure::Claims(format!(
            "the token's `{}` claim must be a list of strings",
            self.channels_claim
        ))
    }
}

impl Grant {
    /// The identity the games see, if any.
    pub(crate) fn identity(&self) -> Option<&Identity> {
        match self {
            Grant::Token { identity, .. } => Some(identity),
            Grant::Open | Grant::Anonymous => None,
        }
    }

    /// Why this connection may not join `channel` (`anonymous`: open to clients
    /// without a token), as the `Rejected` reason; `None` if it may.
    pub(crate) fn refusal(&self, channel: &str, anonymous: bool) -> Option<Refused> {
        match self {
            Grant::Open => None,
            _ if anonymous => None,
            Grant::Anonymous => Some(Refused::Unauthorized),
            Grant::Token { channels: None, .. } => None,
            Grant::Token {
                channels: Some(patterns),
                ..
            } => (!patterns.iter().any(|p| matches(p, channel))).then_some(Refused::Forbidden),
        }
    }
}

/// Why a join was refused by the front, before its back saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The channel needs a token and the connection has none.
    Unauthorized = 0,
    /// The token's channel claim does not list the channel.
    Forbidden = 1,
}

impl Refused {
    /// Every `reason` label of `centrum_front_joins_refused_total`, by discriminant.
    pub(crate) const LABELS: [&'static str; 2] = ["unauthorized", "forbidden"];

    /// The `Rejected` reason: the code, a colon, and what it means.
    pub(crate) fn reason(self, channel: &str) -> String {
        match self {
            Refused::Unauthorized => {
                format!("unauthorized: channel {channel:?} needs a token")
            }
            Refused::Forbidden => {
                format!("forbidden: the token does not allow channel {channel:?}")
            }
        }
    }
}

/// Whether `name` matches `pattern`, where `*` stands for any run of characters
/// (none included) and every other character for itself. Linear in practice: on a
/// mismatch it goes back to the last `*` only.
pub(crate) fn matches(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ni));
            pi += 1;
        } else if pi < p.len() && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

fn algorithm(a: JwtAlgorithm) -> Algorithm {
    match a {
        JwtAlgorithm::HS256 => Algorithm::HS256,
        JwtAlgorithm::HS384 => Algorithm::HS384,
        JwtAlgorithm::HS512 => Algorithm::HS512,
        JwtAlgorithm::RS256 => Algorithm::RS256,
        JwtAlgorithm::RS384 => Algorithm::RS384,
        JwtAlgorithm::RS512 => Algorithm::RS512,
        JwtAlgorithm::ES256 => Algorithm::ES256,
        JwtAlgorithm::ES384 => Algorithm::ES384,
        JwtAlgorithm::EdDSA => Algorithm::EdDSA,
    }
}

fn field(name: &str, reason: String) -> FieldError {
    FieldError {
        field: format!("auth.{name}"),
        reason,
    }
}

fn read(name: &str, path: &Path) -> Result<Vec<u8>, FieldError> {
    std::fs::read(path).map_err(|e| field(name, format!("cannot read {}: {e}", path.display())))
}

/// The HMAC secret from `secret`, `secret_env` or `secret_file`.
fn hmac_secret(auth: &AuthConfig) -> Result<Vec<u8>, FieldError> {
    let (name, secret) = if let Some(secret) = &auth.secret {
        ("secret", secret.expose().as_bytes().to_vec())
    } else if let Some(var) = &auth.secret_env {
        let value = std::env::var(var)
            .map_err(|e| field("secret_env", format!("environment variable {var}: {e}")))?;
        ("secret_env", value.into_bytes())
    } else if let Some(path) = &auth.secret_file {
        let mut bytes = read("secret_file", path)?;
        while bytes.last().is_some_and(|b| matches!(b, b'\n' | b'\r')) {
            bytes.pop();
        }
        ("secret_file", bytes)
    } else {
        return Err(field("algorithm", "no secret is set".into()));
    };
    if secret.len() < MIN_HMAC_SECRET {
        return Err(field(
            name,
            format!("the secret must be at least {MIN_HMAC_SECRET} bytes"),
        ));
    }
    Ok(secret)
}

/// The keys of the JWKS at `path` that fit `algorithm`.
fn jwks(
    path: &Path,
    algorithm: Algorithm,
) -> Result<Vec<(Option<String>, DecodingKey)>, FieldError> {
    let text = read("jwks_file", path)?;
    let bad = |why: String| field("jwks_file", format!("{}: {why}", path.display()));
    let set: JwkSet =
        serde_json::from_slice(&text).map_err(|e| bad(format!("not a JWKS ({e})")))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        // A set may hold keys for other uses; those of another family are skipped.
        let Ok(key) = DecodingKey::from_jwk(jwk) else {
            continue;
        };
        if key.family() == algorithm.family() {
            keys.push((jwk.common.key_id.clone(), key));
        }
    }
    if keys.is_empty() {
        return Err(bad(format!("no key for {algorithm:?}")));
    }
    Ok(keys)
}

/// What the hello's `token` allows on `hub`'s front, counted in its metrics.
///
/// # Errors
/// The `unauthorized` error and close 1008 for a token that does not verify, or none
/// where one is required.
pub(crate) fn admit(hub: &Hub, token: &str) -> Result<Grant, End> {
    let Some(verifier) = &hub.auth else {
        return Ok(Grant::Open);
    };
    let metrics = &hub.metrics;
    match verifier.admit(token) {
        Ok(access) => {
            if matches!(access, Grant::Token { .. }) {
                metrics.auth_verified.fetch_add(1, Relaxed);
            }
            Ok(access)
        }
        Err(failure) => {
            metrics.auth_failures[failure.index()].fetch_add(1, Relaxed);
            debug!(
                reason = AuthFailure::LABELS[failure.index()],
                "token refused"
            );
            Err(End::Close {
                code: 1008,
                error: Some(("unauthorized", failure.message())),
            })
        }
    }
}

/// Reads and checks the key material of `config`'s `[auth]`, as a front does when it
/// starts; for `centrum check`.
///
/// # Errors
/// A [`FieldError`] naming the `auth` field whose key cannot be read or used.
pub fn check(config: &Config) -> Result<(), FieldError> {
    Verifier::from_config(config).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_whole_names_with_stars_for_any_run() {
        for (pattern, name) in [
            ("arena", "arena"),
            ("match-*", "match-7"),
            ("match-*", "match-"),
            ("*", "anything"),
            ("*-eu", "match-7-eu"),
            ("a*b*c", "aXbYbZc"),
            ("**", ""),
        ] {
            assert!(matches(pattern, name), "{pattern} ~ {name}");
        }
        for (pattern, name) in [
            ("arena", "arena-2"),
            ("match-*", "arena"),
            ("match-*", "match"),
            ("*-eu", "match-7-us"),
            ("a*b*c", "aXbYbZ"),
            ("", "x"),
        ] {
            assert!(!matches(pattern, name), "{pattern} !~ {name}");
        }
    }

    #[test]
    fn access_decides_channel_by_channel() {
        let token = |channels: Option<&[&str]>| Grant::Token {
            identity: Identity::new("ann"),
            channels: channels.map(|c| c.iter().map(|s| (*s).to_owned()).collect()),
        };
        assert_eq!(Grant::Open.refusal("arena", false), None);
        assert_eq!(Grant::Anonymous.refusal("lobby", true), None);
        assert_eq!(
            Grant::Anonymous.refusal("arena", false),
            Some(Refused::Unauthorized)
        );
        assert_eq!(token(None).refusal("arena", false), None);
        let limited = token(Some(&["match-*"]));
        assert_eq!(limited.refusal("match-7", false), None);
        assert_eq!(limited.refusal("arena", false), Some(Refused::Forbidden));
        assert_eq!(limited.refusal("lobby", true), None, "open to anyone");
        assert!(
            Refused::Forbidden
                .reason("arena")
                .starts_with("forbidden: ")
        );
    }

    fn with_auth(auth: AuthConfig) -> Config {
        let mut config = Config::embedded_default();
        config.auth = Some(auth);
        config
    }

    fn hs256() -> AuthConfig {
        AuthConfig {
            algorithm: JwtAlgorithm::HS256,
            secret: Some(centrum_config::Secret::new("k".repeat(32))),
            secret_env: None,
            secret_file: None,
            public_key_file: None,
            jwks_file: None,
            issuer: None,
            audience: None,
            leeway_s: 30,
            claims: vec!["name".into(), "team".into()],
            channels_claim: "rooms".into(),
        }
    }

    #[test]
    fn outcomes_are_counted_and_the_identity_carries_the_claims_asked_for() {
        let config = with_auth(hs256());
        let verifier = Verifier::from_config(&config).unwrap();
        let hub = Hub::new("front-1", std::sync::Arc::new(config), verifier);
        let exp = jsonwebtoken::get_current_timestamp() + 60;
        let claims = serde_json::json!({
            "sub": "ann", "exp": exp, "name": "Ann", "email": "not passed on", "rooms": ["a-*"]
        });
        let key = jsonwebtoken::EncodingKey::from_secret("k".repeat(32).as_bytes());
        let token = jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap();
        let Ok(access) = admit(&hub, &token) else {
            panic!("refused")
        };
        let identity = access.identity().unwrap();
        assert_eq!(identity.subject, "ann");
        assert_eq!(identity.claim::<String>("name").as_deref(), Some("Ann"));
        assert_eq!(
            identity.claims.len(),
            1,
            "email is not asked for, team not there"
        );
        assert_eq!(access.refusal("a-1", false), None);
        assert_eq!(access.refusal("b", false), Some(Refused::Forbidden));
        assert!(matches!(
            admit(&hub, "garbage"),
            Err(End::Close {
                code: 1008,
                error: Some(("unauthorized", _))
            })
        ));
        assert!(admit(&hub, "").is_err(), "no channel is anonymous");
        let m = &hub.metrics;
        assert_eq!(m.auth_verified.load(Relaxed), 1);
        assert_eq!(
            m.auth_failures[AuthFailure::Malformed.index()].load(Relaxed),
            1
        );
        assert_eq!(
            m.auth_failures[AuthFailure::Missing.index()].load(Relaxed),
            1
        );
        let names: Vec<String> = m
            .metrics(0, true)
            .iter()
            .filter(|x| x.name.starts_with("centrum_front_auth"))
            .map(|x| format!("{}{:?}={}", x.name, x.labels, x.value))
            .collect();
        assert!(
            names.contains(
                &"centrum_front_auth_failures_total[(\"reason\", \"malformed\")]=1".to_owned()
            ),
            "{names:?}"
        );
    }

    #[test]
    fn key_material_that_cannot_be_read_or_used_is_named_by_its_field() {
        let missing = AuthConfig {
            algorithm: JwtAlgorithm::EdDSA,
            secret: None,
            public_key_file: Some("/nonexistent/key.pem".into()),
            ..hs256()
        };
        let e = Verifier::from_config(&with_auth(missing)).unwrap_err();
        assert_eq!(e.field, "auth.public_key_file");
        assert!(
            e.reason.starts_with("cannot read /nonexistent/key.pem"),
            "{e}"
        );
        // An EC key where an Ed25519 key is expected.
        let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/jwt/");
        let wrong = AuthConfig {
            algorithm: JwtAlgorithm::EdDSA,
            secret: None,
            public_key_file: Some(format!("{fixtures}es256.pub.pem").into()),
            ..hs256()
        };
        let e = Verifier::from_config(&with_auth(wrong)).unwrap_err();
        assert_eq!(e.field, "auth.public_key_file");
        let unset = AuthConfig {
            secret: None,
            secret_env: Some("CENTRUM_TEST_UNSET_JWT_SECRET".into()),
            ..hs256()
        };
        let e = Verifier::from_config(&with_auth(unset)).unwrap_err();
        assert_eq!(e.field, "auth.secret_env");
        let jwks = AuthConfig {
            algorithm: JwtAlgorithm::ES256,
            secret: None,
            jwks_file: Some(format!("{fixtures}es256.pub.pem").into()),
            ..hs256()
        };
        let e = Verifier::from_config(&with_auth(jwks)).unwrap_err();
        assert!(
            e.to_string().starts_with("auth.jwks_file: ") && e.reason.contains("not a JWKS"),
            "{e}"
        );
    }
}
