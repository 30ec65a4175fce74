//! The front's side of a link's handshake (PROTOCOL.md section 14): hello, check the
//! back's proof, prove itself, take the welcome, name the sessions it holds there.

use tokio::io::{AsyncRead, AsyncWrite};

use centrum_protocol::{
    BackToFront, CLUSTER_VERSION, FrontToBack, LinkAuth, LinkHello, LinkSession, LinkSessions,
    LinkWelcome,
};

use crate::auth::{ClusterKey, Handshake, Proof, nonce};
use crate::{FrameError, Framed, LinkError, recv, send};

/// Who opens the link, to whom, and with what.
#[derive(Debug)]
pub struct LinkOpener<'a> {
    pub key: &'a ClusterKey,
    pub front: &'a str,
    /// The back's id in the config: a back that proves another id is not taken.
    pub back: &'a str,
    /// Random per front process (see `LinkHello::instance`).
    pub instance: u64,
    /// The frame limit once the back has proved itself; until then frames are
    /// `HANDSHAKE_FRAME_BYTES` at most.
    pub max_frame_bytes: u32,
}

impl LinkOpener<'_> {
    /// Runs the handshake on `link` (already limited to `HANDSHAKE_FRAME_BYTES`). The
    /// sessions are asked for only once the back has proved it belongs to the cluster.
    ///
    /// # Errors
    /// [`LinkError::Refused`] with the back's reason; [`LinkError::Unproven`] when the
    /// back's proof does not verify; others when the link breaks or the back breaks the
    /// protocol.
    pub async fn open<S>(
        &self,
        link: &mut Framed<S>,
        sessions: impl FnOnce() -> Vec<LinkSession>,
    ) -> Result<LinkWelcome, LinkError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mine = nonce().map_err(FrameError::from)?;
        let hello = LinkHello {
            version: CLUSTER_VERSION,
            front: self.front.to_owned(),
            instance: self.instance,
            nonce: mine.clone(),
        };
        send(link, &FrontToBack::Hello(hello)).await?;
        let challenge = match next(link).await? {
            BackToFront::Challenge(c) => c,
            BackToFront::Refused(r) => return Err(LinkError::Refused(r.reason)),
            other => return Err(unexpected("a challenge", &other)),
        };
        let handshake = Handshake {
            opener: self.front,
            acceptor: self.back,
            opener_nonce: &mine,
            acceptor_nonce: &challenge.nonce,
        };
        if !self.key.verify(Proof::Back, &handshake, &challenge.proof) {
            let who = if challenge.back == self.back {
                format!("back {:?}", self.back)
            } else {
                format!(
                    "the back that answered as {:?}, not {:?},",
                    shown(&challenge.back),
                    self.back
                )
            };
            return Err(LinkError::Unproven(who));
        }
        // The back has proved itself: its frames may be as large as the cluster's, the
        // welcome first (it names every channel of the back's config).
        link.codec_mut()
            .set_max_frame_length(self.max_frame_bytes as usize);
        let proof = self.key.prove(Proof::Front, &handshake);
        send(link, &FrontToBack::Auth(LinkAuth { proof })).await?;
        let welcome = match next(link).await? {
            BackToFront::Welcome(w) => w,
            BackToFront::Refused(r) => return Err(LinkError::Refused(r.reason)),
            other => return Err(unexpected("a welcome", &other)),
        };
        let sessions = LinkSessions {
            sessions: sessions(),
        };
        send(link, &FrontToBack::Sessions(sessions)).await?;
        Ok(welcome)
    }
}

async fn next<S: AsyncRead + AsyncWrite + Unpin>(
    link: &mut Framed<S>,
) -> Result<BackToFront, LinkError> {
    recv::<_, BackToFront>(link)
        .await?
        .ok_or_else(|| FrameError::Io(std::io::ErrorKind::UnexpectedEof.into()).into())
}

fn unexpected(expected: &'static str, got: &BackToFront) -> LinkError {
    LinkError::Unexpected {
        expected,
        got: got.name(),
    }
}

/// At most 64 characters of a peer-chosen id, so that a huge one cannot flood a log.
pub fn shown(id: &str) -> &str {
    match id.char_indices().nth(64) {
        Some((end, _)) => &id[..end],
        None => id,
    }
}
