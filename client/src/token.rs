//! The token a client presents in its hello: none, a fixed one, or one fetched afresh
//! for every connection (tokens expire, and a reconnect should not present a stale one).

use std::fmt;
use std::sync::Arc;

use futures_util::future::BoxFuture;

use crate::ClientError;

type Fetch = dyn Fn() -> BoxFuture<'static, Result<String, String>> + Send + Sync;

/// What [`ClientOptions::token`](crate::ClientOptions::token) holds. Strings convert
/// into it; an empty one is no token.
///
/// ```
/// use centrum_client::{ClientOptions, Token};
///
/// let fixed = ClientOptions { token: "eyJhbGciOi...".into(), ..ClientOptions::default() };
/// // Asked for a fresh token before every connect (each reconnect is a connect).
/// let fresh = ClientOptions {
///     token: Token::fetch(|| async { Ok::<_, std::io::Error>("eyJhbGciOi...".to_owned()) }),
///     ..ClientOptions::default()
/// };
/// # let _ = (fixed, fresh);
/// ```
#[derive(Clone, Default)]
pub enum Token {
    /// No token: for a cluster without `[auth]`, or channels open to anonymous clients.
    #[default]
    None,
    /// The same token on every connect.
    Fixed(String),
    /// A function called before every connect, whose future gives the token.
    Fetch(Arc<Fetch>),
}

impl Token {
    /// A token fetched by `fetch` before every connect. Its error fails the connect
    /// with [`ClientError::Token`].
    pub fn fetch<F, Fut, E>(fetch: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, E>> + Send + 'static,
        E: fmt::Display,
    {
        Token::Fetch(Arc::new(move || {
            let token = fetch();
            Box::pin(async move { token.await.map_err(|e| e.to_string()) })
        }))
    }

    /// The token to present now: empty for none.
    pub(crate) async fn get(&self) -> Result<String, ClientError> {
        match self {
            Token::None => Ok(String::new()),
            Token::Fixed(token) => Ok(token.clone()),
            Token::Fetch(fetch) => fetch().await.map_err(ClientError::Token),
        }
    }

    /// Whether there is a token to present.
    pub fn is_none(&self) -> bool {
        match self {
            Token::None => true,
            Token::Fixed(token) => token.is_empty(),
            Token::Fetch(_) => false,
        }
    }
}

/// A token is a secret: it is never printed.
impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Token::None => "None",
            Token::Fixed(t) if t.is_empty() => "None",
            Token::Fixed(_) => "Fixed(<redacted>)",
            Token::Fetch(_) => "Fetch(..)",
        })
    }
}

impl From<String> for Token {
    fn from(token: String) -> Self {
        Token::Fixed(token)
    }
}

impl From<&str> for Token {
    fn from(token: &str) -> Self {
        Token::Fixed(token.to_owned())
    }
}
