//! The master's matchmaker: reserve a seat in a room (join or create one, create one,
//! or join one by id) and list rooms. A reservation names the front to connect to and
//! the seat token [`Client::join_room`](crate::Client::join_room) presents.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ClientError;
use crate::gate::{MAX_REPLY_BYTES, query_escape, request};

/// The largest listing read: thousands of rooms, each with up to 1 KiB of metadata.
const MAX_LISTING_BYTES: usize = 64 << 20;

/// A seat the matchmaker holds for this client in a room, for `expires_in_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SeatReservation {
    /// The room's id: its channel name.
    pub room: String,
    /// The room's type.
    #[serde(rename = "type")]
    pub kind: String,
    /// The WebSocket URL of the front to connect to (any front of the cluster takes
    /// the seat; this one has the fewest clients and reservations).
    pub front: String,
    /// The seat token, good for one join of this room.
    pub seat: String,
    pub expires_in_ms: u64,
}

/// One room in the matchmaker's listing.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RoomListing {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// Members and unexpired reservations.
    pub clients: u32,
    pub max: u32,
    /// What the room's game set as its metadata (JSON), or null.
    pub metadata: Value,
    pub locked: bool,
}

#[derive(Debug, Deserialize)]
struct ErrorReply {
    error: String,
    #[serde(default)]
    message: String,
}

#[derive(Serialize)]
struct Body<'a, O: Serialize + ?Sized, F: Serialize + ?Sized> {
    #[serde(skip_serializing_if = "Option::is_none")]
    options: Option<&'a O>,
    #[serde(skip_serializing_if = "Option::is_none")]
    filter: Option<&'a F>,
}

/// The matchmaker of the master at `master_http` (`host:port`, `http://...` or
/// `https://...`).
#[derive(Debug, Clone)]
pub struct Matchmaker {
    master: String,
    tls_root_pem: Option<String>,
}

impl Matchmaker {
    pub fn new(master_http: &str) -> Self {
        Self {
            master: master_http.to_owned(),
            tls_root_pem: None,
        }
    }

    /// Trusts `pem` (a PEM certificate) besides the usual roots, for an https master.
    pub fn with_tls_root(mut self, pem: impl Into<String>) -> Self {
        self.tls_root_pem = Some(pem.into());
        self
    }

    /// A seat in an open room of type `kind` whose metadata has every field of
    /// `filter` (a map; `()` for any room), or in a new room made with `options`.
    ///
    /// # Errors
    /// [`ClientError::Matchmaker`] with the master's code, or a connection error.
    pub async fn join_or_create<O, F>(
        &self,
        kind: &str,
        options: &O,
        filter: &F,
    ) -> Result<SeatReservation, ClientError>
    where
        O: Serialize + ?Sized,
        F: Serialize + ?Sized,
    {
        let body = Body {
            options: Some(options),
            filter: Some(filter),
        };
        let path = format!("/v1/rooms/{}/join-or-create", query_escape(kind));
        self.seat(&path, &body).await
    }

    /// A seat in a new room of type `kind`, made with `options`.
    ///
    /// # Errors
    /// As [`Matchmaker::join_or_create`].
    pub async fn create<O: Serialize + ?Sized>(
        &self,
        kind: &str,
        options: &O,
    ) -> Result<SeatReservation, ClientError> {
        let body = Body::<O, ()> {
            options: Some(options),
            filter: None,
        };
        let path = format!("/v1/rooms/{}/create", query_escape(kind));
        self.seat(&path, &body).await
    }

    /// A seat in room `room`.
    ///
    /// # Errors
    /// As [`Matchmaker::join_or_create`]: `no_such_room`, `room_full`, `room_locked`.
    pub async fn join_by_id(&self, room: &str) -> Result<SeatReservation, ClientError> {
        let body = Body::<(), ()> {
            options: None,
            filter: None,
        };
        let path = format!("/v1/rooms/{}/join", query_escape(room));
        self.seat(&path, &body).await
    }

    /// The rooms of type `kind` (every type with None).
    ///
    /// # Errors
    /// As [`Matchmaker::join_or_create`].
    pub async fn rooms(&self, kind: Option<&str>) -> Result<Vec<RoomListing>, ClientError> {
        let path = match kind {
            Some(kind) => format!("/v1/rooms?type={}", query_escape(kind)),
            None => "/v1/rooms".to_owned(),
        };
        let (status, body) = request(
            &self.master,
            "GET",
            &path,
            None,
            self.tls_root_pem.as_deref(),
            MAX_LISTING_BYTES,
        )
        .await?;
        answer(status, &body)
    }

    async fn seat<B: Serialize>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<SeatReservation, ClientError> {
        let body = serde_json::to_vec(body).map_err(|e| ClientError::Matchmaker {
            status: 0,
            code: "bad_request".into(),
            message: format!("the options do not encode as JSON: {e}"),
        })?;
        let (status, reply) = request(
            &self.master,
            "POST",
            path,
            Some(body),
            self.tls_root_pem.as_deref(),
            MAX_REPLY_BYTES,
        )
        .await?;
        answer(status, &reply)
    }
}

fn answer<T: serde::de::DeserializeOwned>(status: u16, body: &[u8]) -> Result<T, ClientError> {
    if status != 200 {
        return Err(match serde_json::from_slice::<ErrorReply>(body) {
            Ok(e) => ClientError::Matchmaker {
                status,
                code: e.error,
                message: e.message,
            },
            Err(_) => ClientError::Matchmaker {
                status,
                code: String::new(),
                message: String::from_utf8_lossy(body).trim().to_owned(),
            },
        });
    }
    serde_json::from_slice(body).map_err(|e| ClientError::Matchmaker {
        status,
        code: String::new(),
        message: format!("the answer does not read: {e}"),
    })
}
