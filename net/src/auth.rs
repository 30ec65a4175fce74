//! Cluster authentication: each end of a link (front ↔ back, node ↔ master) proves it
//! holds the cluster secret with an HMAC-SHA256 over both ends' ids and fresh nonces.
//! The secret never crosses the wire, and a proof recorded on one link is worth nothing
//! on another, since the other end's nonce is new each time.

use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use centrum_protocol::NONCE_BYTES;

/// What a proof is for; part of what is signed, so that a proof made for one purpose
/// (a back answering a front) cannot be replayed for another (a front answering a back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// A back to the front that opened a link.
    Back,
    /// A front to the back it links to.
    Front,
    /// The master to a registering node.
    Master,
    /// A registering node to the master.
    Node,
}

impl Proof {
    fn label(self) -> &'static [u8] {
        match self {
            Proof::Back => b"centrum link: back",
            Proof::Front => b"centrum link: front",
            Proof::Master => b"centrum register: master",
            Proof::Node => b"centrum register: node",
        }
    }
}

/// Who the two ends of a link are and what each brought, in a fixed order: the end
/// that opened the link first. Both ends build the same one.
#[derive(Debug, Clone, Copy)]
pub struct Handshake<'a> {
    /// The id of the end that connected (a front, or a registering node).
    pub opener: &'a str,
    /// The id of the end that accepted (a back; for the master, its role `"master"`).
    pub acceptor: &'a str,
    pub opener_nonce: &'a [u8],
    pub acceptor_nonce: &'a [u8],
}

/// The cluster secret, ready to sign and check proofs. Its `Debug` shows nothing.
#[derive(Clone)]
pub struct ClusterKey {
    mac: Hmac<Sha256>,
}

impl ClusterKey {
    /// A key from the cluster secret's bytes (any length; the config asks for 16 or more).
    pub fn new(secret: &[u8]) -> Self {
        // HMAC takes a key of any length.
        let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
        Self { mac }
    }

    /// This end's proof, for `purpose`, over `handshake`.
    pub fn prove(&self, purpose: Proof, handshake: &Handshake<'_>) -> Bytes {
        Bytes::copy_from_slice(&self.mac_of(purpose, handshake).finalize().into_bytes())
    }

    /// Whether `proof` is the other end's proof for `purpose` over `handshake`, compared
    /// in constant time. A nonce of the wrong length never verifies.
    pub fn verify(&self, purpose: Proof, handshake: &Handshake<'_>, proof: &[u8]) -> bool {
        handshake.opener_nonce.len() == NONCE_BYTES
            && handshake.acceptor_nonce.len() == NONCE_BYTES
            && self.mac_of(purpose, handshake).verify_slice(proof).is_ok()
    }

    /// An HMAC over `parts` (each length-prefixed) for a purpose other than a
    /// handshake, named by `label`.
    pub(crate) fn mac_parts(&self, label: &[u8], parts: &[&[u8]]) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        for part in std::iter::once(label).chain(parts.iter().copied()) {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac
    }

    fn mac_of(&self, purpose: Proof, h: &Handshake<'_>) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        // Each part is length-prefixed, so no two different handshakes sign the same bytes.
        for part in [
            purpose.label(),
            h.opener.as_bytes(),
            h.acceptor.as_bytes(),
            h.opener_nonce,
            h.acceptor_nonce,
        ] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac
    }
}

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterKey(<redacted>)")
    }
}

/// Fresh random bytes for one handshake.
///
/// # Errors
/// When the operating system has no random source to give (it always has on the
/// platforms centrum runs on); a handshake without a fresh nonce must not go on.
pub fn nonce() -> Result<Bytes, std::io::Error> {
    let mut bytes = [0u8; NONCE_BYTES];
    getrandom::fill(&mut bytes)
        .map_err(|e| std::io::Error::other(format!("no random source: {e}")))?;
    Ok(Bytes::copy_from_slice(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handshake<'a>(a: &'a [u8], b: &'a [u8]) -> Handshake<'a> {
        Handshake {
            opener: "front-1",
            acceptor: "back-1",
            opener_nonce: a,
            acceptor_nonce: b,
        }
    }

    #[test]
    fn a_proof_verifies_only_with_the_same_secret_purpose_ids_and_nonces() {
        let key = ClusterKey::new(b"a cluster secret of some length");
        let (a, b) = (nonce().unwrap(), nonce().unwrap());
        let h = handshake(&a, &b);
        let proof = key.prove(Proof::Back, &h);
        assert!(key.verify(Proof::Back, &h, &proof));

        let other_key = ClusterKey::new(b"another cluster secret entirely");
        assert!(!other_key.verify(Proof::Back, &h, &proof), "another secret");
        assert!(
            !key.verify(Proof::Front, &h, &proof),
            "a back's proof is no front's"
        );
        let c = nonce().unwrap();
        assert!(
            !key.verify(Proof::Back, &handshake(&a, &c), &proof),
            "a fresh nonce"
        );
        let renamed = Handshake {
            acceptor: "back-2",
            ..h
        };
        assert!(
            !key.verify(Proof::Back, &renamed, &proof),
            "another back's id"
        );
        assert!(!key.verify(Proof::Back, &h, &proof[..31]), "a cut proof");
        assert!(!key.verify(Proof::Back, &h, b""), "no proof");
    }

    #[test]
    fn short_nonces_never_verify() {
        let key = ClusterKey::new(b"a cluster secret of some length");
        let h = handshake(b"", b"");
        let proof = key.prove(Proof::Node, &h);
        assert!(!key.verify(Proof::Node, &h, &proof));
    }

    #[test]
    fn the_key_does_not_print() {
        let key = ClusterKey::new(b"hunter2hunter2hunter2");
        assert!(!format!("{key:?}").contains("hunter2"));
    }
}
