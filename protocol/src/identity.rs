//! Who a client is, as its verified token says: the subject and the claims the cluster
//! passes on. A front makes it at the client's hello, it travels with every join to the
//! back, which journals it, and the game reads it.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A client's verified identity: its token's `sub`, and those of the claims named in
/// the front's `auth.claims` that the token has. Claims keep their JSON value, as
/// MessagePack.
///
/// ```
/// use centrum_protocol::Identity;
///
/// let ann = Identity::new("user-17").with_claim("name", &"ann");
/// assert_eq!(ann.subject, "user-17");
/// assert_eq!(ann.claim::<String>("name").as_deref(), Some("ann"));
/// assert_eq!(ann.claim::<u32>("name"), None, "not a number");
/// assert_eq!(ann.claim::<String>("email"), None, "not passed on");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The token's `sub` claim.
    pub subject: String,
    /// Claim values by name, each one MessagePack.
    pub claims: BTreeMap<String, Bytes>,
}

impl Identity {
    /// An identity with `subject` and no claims.
    pub fn new(subject: impl Into<String>) -> Self {
        Self {
            subject: subject.into(),
            claims: BTreeMap::new(),
        }
    }

    /// With claim `name` set to `value` (left out if it does not encode).
    #[must_use]
    pub fn with_claim<T: Serialize + ?Sized>(mut self, name: &str, value: &T) -> Self {
        if let Ok(bytes) = rmp_serde::to_vec_named(value) {
            self.claims.insert(name.to_owned(), Bytes::from(bytes));
        }
        self
    }

    /// Claim `name` as a `T`; `None` when the identity does not carry it or it is not
    /// a `T`.
    pub fn claim<T: DeserializeOwned>(&self, name: &str) -> Option<T> {
        rmp_serde::from_slice(self.claims.get(name)?).ok()
    }
}
