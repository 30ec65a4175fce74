//! The one error type of the client library: every way connecting, joining, sending
//! or reading can fail, with the server's own words where it gave any.

/// Any cause a connection error can carry (a WebSocket, TCP or HTTP failure).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server could not be reached, or the WebSocket upgrade failed.
    #[error("cannot connect to {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: BoxError,
    },
    /// The function of [`Token::fetch`](crate::Token::fetch) failed; nothing was sent.
    #[error("cannot get a token: {0}")]
    Token(String),
    /// The front refused the hello (for example code `version`, or `unauthorized` for
    /// a token it does not accept), or answered it with something other than a
    /// welcome it could accept.
    #[error("the front refused the hello ({code}): {message}")]
    Handshake { code: String, message: String },
    /// The master's gate answered with an error (`status` 404, 400, 503, ...) or with a
    /// reply that is not a gate answer.
    #[error("the gate answered {status}: {message}")]
    Gate { status: u16, message: String },
    /// The master's matchmaker refused (`code`: `room_full`, `unknown_type`, ...; the
    /// list is in PROTOCOL.md), or could not be understood (`code` empty).
    #[error("matchmaker: {status} {code}: {message}")]
    Matchmaker {
        status: u16,
        code: String,
        message: String,
    },
    /// The channel refused the join.
    #[error("join of channel {channel:?} rejected: {reason}")]
    Rejected { channel: String, reason: String },
    /// `join` for a channel this client is already in; nothing was sent.
    #[error("already in channel {0:?}")]
    AlreadyJoined(String),
    /// The connection has ended; the reason says how.
    #[error("connection closed: {0}")]
    Closed(String),
    /// The named step took longer than the options allow.
    #[error("{0} timed out")]
    Timeout(&'static str),
    /// The server sent something this client cannot understand: an undecodable or
    /// text message, or a state or patch that does not fit the channel's mirror. The
    /// connection stays open.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A game's data did not decode as the type asked for
    /// ([`Event::message`](crate::Event::message)): the game and this client disagree
    /// on its shape. The connection is not affected.
    #[error("the game's data does not decode as the type asked for: {0}")]
    Decode(#[source] centrum_protocol::DecodeError),
    /// A value could not be encoded as MessagePack
    /// ([`Client::join_value`](crate::Client::join_value),
    /// [`Client::send_value`](crate::Client::send_value)); nothing was sent.
    #[error("cannot encode the game's data: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    /// Writing to the socket failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}
