//! [`RedisStore`]: a back's channels on a Redis server, so that a replacement back on
//! another host recovers them, with a lease and a fencing token that keep each back id
//! to one writing process at a time.
//!
//! # Keys
//!
//! With `store.prefix` `P` and back id `B`, every key of a back carries the hash tag
//! `{B}` (one slot, should the server ever be a cluster):
//!
//! - `P:{B}:lease`: the lease, holding its holder's fencing token; it expires after
//!   `store.lease_ms` unless renewed.
//! - `P:{B}:token`: the fencing counter, INCRed by every process that takes the lease;
//!   never deleted, so no two holders ever had the same token.
//! - `P:{B}:format`: the format version of what is kept ([`crate::FORMAT_VERSION`]).
//! - `P:{B}:channels`: a set of the back's channel names.
//! - `P:{B}:C:journal`: channel `C`'s journal, a sorted set: score the step, member the
//!   record framed as in journal files (length, CRC-32 of step and payload, step,
//!   payload), so that a damaged value reads as [`StoreError::Corrupt`].
//! - `P:{B}:C:snaps`: its snapshots, a hash from the step (decimal) to the bytes of a
//!   snapshot file (header, then the one record of its step).
//! - `P:{B}:C:damaged`: snapshots recovery could not read, set aside (a hash as above).
//!
//! Every change is one Lua script, which Redis runs whole: an append adds its record
//! (dropping any at or after its step: a superseded tail); a snapshot is added, all but
//! the two newest go, and so does the journal up to the older of the two, in the same
//! script; a channel is removed with its three keys at once. [`Journal::cut`] writes
//! nothing: the journal is not in segments, and a snapshot drops records by step.
//!
//! # Fencing
//!
//! Opening the store takes the lease: only when it is free (released, or not renewed
//! for `lease_ms`), INCRing the counter for this process's token. A thread renews it
//! every `lease_ms / 3`. Every script that writes first checks that the lease holds
//! this process's token, with nothing between the check and the write. That is why a
//! partitioned old back cannot write after its replacement took over: the replacement
//! took the lease with a token no earlier holder had, so from then on every write of
//! an earlier holder fails its check however late it arrives, and it gets
//! [`StoreError::Fenced`]. No clock is trusted for this; clocks only decide when a
//! lease is free. A process that cannot renew its lease in time also fences itself:
//! its lease ends on its own clock `lease_ms` after it last asked for a renewal, which
//! is before the server's (which starts counting when it gets the request), and from
//! then on it writes nothing and [`Store::health`] fails, so its back stops instead of
//! serving from memory. It could not acknowledge anything meanwhile anyway: a back
//! acknowledges a tick's inputs only once its append returned, after Redis replied.
//!
//! # Durability
//!
//! An append returns once Redis replied, whatever `durable` says. With
//! `appendonly yes` and `appendfsync always`, Redis replies to a write only after its
//! append-only file was fsynced, which is what [`SyncPolicy::EveryRecord`] promises:
//! [`RedisStore::new`] refuses it on a server configured otherwise (docs/STORAGE.md).

#[cfg(any(test, feature = "test-server"))]
pub(crate) mod server;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, LazyLock, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use redis::{Connection, RedisError, Script, Value};
use tracing::{debug, error, info, warn};

use crate::file::{HEADER_LEN, Magic, check_header, header, read_records, record};
use crate::{
    FORMAT_VERSION, Journal, Opened, Record, Recovered, Snapshot, Snapshots, Store, StoreError,
    SyncPolicy,
};

/// The largest record or snapshot kept: Redis takes values of at most 512 MiB, and a
/// record's framing and a snapshot's header come on top.
const MAX_VALUE: usize = (512 << 20) - 64;

/// Connections kept open between calls; more are opened when blocking threads need
/// them at once, and closed after their call when this many are idle already.
const IDLE_CONNECTIONS: usize = 8;

/// Where the store is and what for.
#[derive(Clone)]
pub struct RedisOptions {
    /// `redis://[[user]:password@]host[:port][/db]` or `redis+unix:///path`: may hold
    /// a password, so it is never printed.
    pub url: String,
    /// The first part of every key.
    pub prefix: String,
    /// The back whose channels these are, and whose lease this process takes.
    pub back: String,
    /// How long the lease lasts without a renewal.
    pub lease: Duration,
    /// What the server must guarantee ([`SyncPolicy::EveryRecord`]: an fsync of every
    /// write before its reply).
    pub sync: SyncPolicy,
}

impl fmt::Debug for RedisOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisOptions")
            .field("url", &"<redacted>")
            .field("prefix", &self.prefix)
            .field("back", &self.back)
            .field("lease", &self.lease)
            .field("sync", &self.sync)
            .finish()
    }
}

/// A back's channels on a Redis server, held under a lease for as long as the store,
/// or a journal or snapshot writer of it, lives.
#[derive(Debug, Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

/// What the store, its writers and its renewal thread share.
struct Inner {
    client: redis::Client,
    /// The server and the back's keys, without credentials: `redis://host:6379/0 centrum:{back-1}`.
    shown: String,
    back: String,
    /// `P:{B}`, the start of every key.
    base: String,
    lease_key: String,
    /// This process's fencing token, as stored.
    token: String,
    lease: Duration,
    /// Connect, read and write timeout of every call.
    io_timeout: Duration,
    state: Mutex<Lease>,
    idle: Mutex<Vec<Connection>>,
    failures: AtomicU64,
    renewer: Arc<Renewer>,
    /// Tests stop renewals to let the lease run out.
    #[cfg(test)]
    paused: std::sync::atomic::AtomicBool,
}

/// The lease as this process sees it.
#[derive(Debug)]
struct Lease {
    /// When it ends unless renewed: `lease` after the last successful request was sent.
    ends: Instant,
    /// Why it is lost, once it is: for good.
    lost: Option<String>,
}

/// Wakes the renewal thread to stop.
#[derive(Debug, Default)]
struct Renewer {
    stop: Mutex<bool>,
    wake: Condvar,
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the client: its connection info holds the password.
        f.debug_struct("RedisStore")
            .field("store", &self.shown)
            .field("token", &self.token)
            .field("lease", &self.state.lock())
            .finish_non_exhaustive()
    }
}

/// Every write starts by checking the lease (KEYS[1]) holds this process's token
/// (ARGV[1]); when it does not, the script answers who holds it (nil: nobody).
macro_rules! fenced_script {
    ($body:literal) => {
        concat!(
            "local holder = redis.call('GET', KEYS[1])\n",
            "if holder ~= ARGV[1] then return holder end\n",
            $body,
            "\nreturn 1"
        )
    };
}

/// KEYS: lease, counter, format. ARGV: lease ms, format version. Answers
/// `{1, token, 0}` (taken), `{-1, holder, ms left}` or `{-2, format found, 0}`.
static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local found = redis.call('GET', KEYS[3])
if found and found ~= ARGV[2] then return {-2, found, 0} end
local holder = redis.call('GET', KEYS[1])
if holder then return {-1, holder, redis.call('PTTL', KEYS[1])} end
local token = tostring(redis.call('INCR', KEYS[2]))
redis.call('SET', KEYS[1], token, 'PX', ARGV[1])
redis.call('SET', KEYS[3], ARGV[2])
return {1, token, 0}",
    )
});

/// KEYS: lease. ARGV: token, lease ms.
static RENEW: LazyLock<Script> =
    LazyLock::new(|| Script::new(fenced_script!("redis.call('PEXPIRE', KEYS[1], ARGV[2])")));

/// KEYS: lease.
static RELEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(fenced_script!("redis.call('DEL', KEYS[1])")));

/// KEYS: lease, channels. ARGV: token, channel.
static OPEN: LazyLock<Script> =
    LazyLock::new(|| Script::new(fenced_script!("redis.call('SADD', KEYS[2], ARGV[2])")));

/// KEYS: lease, journal. ARGV: token, step, record.
static APPEND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(fenced_script!(
        "redis.call('ZREMRANGEBYSCORE', KEYS[2], ARGV[2], '+inf')
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])"
    ))
});

/// KEYS: lease, snapshots, journal. ARGV: token, step, snapshot.
static SNAPSHOT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(fenced_script!(
        "redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
local steps = redis.call('HKEYS', KEYS[2])
table.sort(steps, function(a, b) return tonumber(a) > tonumber(b) end)
for i = 3, #steps do redis.call('HDEL', KEYS[2], steps[i]) end
if #steps >= 2 then redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', steps[2]) end"
    ))
});

/// KEYS: lease, snapshots, damaged. ARGV: token, step.
static SET_ASIDE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(fenced_script!(
        "local bytes = redis.call('HGET', KEYS[2], ARGV[2])
if bytes then
  redis.call('HSET', KEYS[3], ARGV[2], bytes)
  redis.call('HDEL', KEYS[2], ARGV[2])
end"
    ))
});

/// KEYS: lease, channels, journal, snapshots, damaged. ARGV: token, channel.
static REMOVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(fenced_script!(
        "redis.call('DEL', KEYS[3], KEYS[4], KEYS[5])
redis.call('SREM', KEYS[2], ARGV[2])"
    ))
});

/// The keys of one channel.
#[derive(Debug, Clone)]
struct ChannelKeys {
    journal: String,
    snaps: String,
    damaged: String,
}

impl ChannelKeys {
    fn new(base: &str, channel: &str) -> Self {
        Self {
            journal: format!("{base}:{channel}:journal"),
            snaps: format!("{base}:{channel}:snaps"),
            damaged: format!("{base}:{channel}:damaged"),
        }
    }
}

impl RedisStore {
    /// Connects to the server, checks that it keeps writes as `options.sync` needs,
    /// and takes the lease on `options.back` (then renewed by a thread until the store
    /// and all its writers are dropped, and released then).
    ///
    /// # Errors
    /// [`StoreError::Url`] for a URL that does not parse; [`StoreError::Unreachable`]
    /// when the server does not answer; [`StoreError::Durability`] for
    /// [`SyncPolicy::EveryRecord`] on a server that does not fsync every write;
    /// [`StoreError::Leased`] while another process holds the lease;
    /// [`StoreError::Version`] for keys of another format version.
    pub fn new(options: RedisOptions) -> Result<Self, StoreError> {
        let client = redis::Client::open(options.url.as_str()).map_err(|_| StoreError::Url {
            // Not the parser's words: they may quote the URL, password and all.
            why: "not a Redis URL: expected redis://[[user]:password@]host[:port][/db] or redis+unix:///path".into(),
        })?;
        let info = client.get_connection_info();
        let base = format!("{}:{{{}}}", options.prefix, options.back);
        let shown = match info.addr() {
            redis::ConnectionAddr::Unix(path) => {
                format!("redis+unix://{} {base}", path.display())
            }
            addr => format!("redis://{addr}/{} {base}", info.redis_settings().db()),
        };
        let renewer = Arc::new(Renewer::default());
        let mut inner = Inner {
            client,
            shown,
            back: options.back.clone(),
            lease_key: format!("{base}:lease"),
            base,
            token: String::new(),
            lease: options.lease,
            io_timeout: (options.lease / 3).max(Duration::from_millis(500)),
            state: Mutex::new(Lease {
                ends: Instant::now(),
                lost: None,
            }),
            idle: Mutex::new(Vec::new()),
            failures: AtomicU64::new(0),
            renewer: renewer.clone(),
            #[cfg(test)]
            paused: std::sync::atomic::AtomicBool::new(false),
        };
        inner.check_durability(options.sync)?;
        inner.acquire()?;
        let inner = Arc::new(inner);
        let weak = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name(format!("lease {}", options.back))
            .spawn(move || renew(&weak, &renewer))
            .map_err(|e| StoreError::Io {
                path: "a thread to renew the store's lease".into(),
                source: e,
            })?;
        info!(store = %inner.shown, token = %inner.token, lease_ms = options.lease.as_millis() as u64, "store lease taken");
        Ok(Self { inner })
    }

    /// This process's fencing token.
    pub fn token(&self) -> &str {
        &self.inner.token
    }

    /// Stops (or resumes) renewing the lease, for tests of what happens when it ends.
    #[cfg(test)]
    pub(crate) fn pause_renewal(&self, paused: bool) {
        self.inner.paused.store(paused, Relaxed);
    }
}

impl Inner {
    /// Reads the server's append-only settings: refuses `EveryRecord` on a server that
    /// does not fsync every write before replying; warns where it cannot tell.
    fn check_durability(&self, sync: SyncPolicy) -> Result<(), StoreError> {
        let read = self.call("CONFIG GET append*", |c| {
            redis::cmd("CONFIG")
                .arg("GET")
                .arg("append*")
                .query::<HashMap<String, String>>(c)
        });
        let settings = match read {
            Ok(settings) => settings,
            Err(e @ StoreError::Unreachable { .. }) => return Err(e),
            Err(e) => {
                // A managed server may have CONFIG renamed or forbidden.
                warn!(store = %self.shown, error = %e, "cannot read the server's appendonly and appendfsync settings; with store.fsync = \"tick\" it must run with appendonly yes and appendfsync always, or a crash of its machine may lose acknowledged inputs");
                return Ok(());
            }
        };
        // Evicted keys would be a channel's journal gone without a word.
        let policy = self.call("CONFIG GET maxmemory-policy", |c| {
            redis::cmd("CONFIG")
                .arg("GET")
                .arg("maxmemory-policy")
                .query::<HashMap<String, String>>(c)
        });
        if let Some(policy) = policy
            .ok()
            .and_then(|mut p| p.remove("maxmemory-policy"))
            .filter(|p| p != "noeviction")
        {
            warn!(store = %self.shown, "the server runs with maxmemory-policy {policy}: when full, it may evict a channel's journal or snapshots; set maxmemory-policy noeviction (then a full server refuses writes, and the channels wait)");
        }
        let setting = |name: &str| settings.get(name).map_or("(unset)", String::as_str);
        let (only, fsync) = (setting("appendonly"), setting("appendfsync"));
        match sync {
            SyncPolicy::EveryRecord if only != "yes" || fsync != "always" => {
                Err(StoreError::Durability {
                    store: self.shown.clone(),
                    what: format!(
                        "store.fsync = \"tick\" acknowledges inputs only once they are on disk, but this server runs with appendonly {only} and appendfsync {fsync}: set `appendonly yes` and `appendfsync always` in its configuration (redis.conf, or CONFIG SET and CONFIG REWRITE), or set store.fsync = \"interval\" (docs/STORAGE.md says what each guarantees)"
                    ),
                })
            }
            SyncPolicy::Interval(_) | SyncPolicy::Never if only != "yes" => {
                warn!(store = %self.shown, "the server runs with appendonly {only}: a restart of the server loses every change since its last RDB save, acknowledged inputs included");
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Takes the lease, with a new token.
    fn acquire(&mut self) -> Result<(), StoreError> {
        let sent = Instant::now();
        let counter = format!("{}:token", self.base);
        let format = format!("{}:format", self.base);
        // Not through `call`: its retry could take two tokens, the first one lost.
        let what = "take the lease";
        let mut con = self.connect(what)?;
        let (code, value, ms): (i64, String, i64) = ACQUIRE
            .key(&self.lease_key)
            .key(&counter)
            .key(&format)
            .arg(self.lease.as_millis() as u64)
            .arg(FORMAT_VERSION)
            .invoke(&mut con)
            .map_err(|e| self.error(what, &e))?;
        self.put_back(con);
        match code {
            1 => {
                self.token = value;
                self.state.get_mut().ends = sent + self.lease;
                Ok(())
            }
            -1 => Err(StoreError::Leased {
                store: self.shown.clone(),
                back: self.back.clone(),
                token: value,
                ends_in_ms: ms,
            }),
            _ => Err(StoreError::Version {
                path: format!("{} ({format})", self.shown),
                found: value.parse().unwrap_or(u32::MAX),
            }),
        }
    }

    /// Runs `f` on a connection from the idle ones, or a new one.
    fn call<T>(
        &self,
        what: &str,
        f: impl FnMut(&mut Connection) -> redis::RedisResult<T>,
    ) -> Result<T, StoreError> {
        let pooled = self.idle.lock().pop();
        let was_idle = pooled.is_some();
        let mut con = match pooled {
            Some(con) => con,
            None => self.connect(what)?,
        };
        let mut f = f;
        let mut result = f(&mut con);
        // An idle connection may have been closed under it (a restarted server): one
        // more try on a new one. Every script is safe to run twice: each sets what it
        // sets, adds nothing twice, and takes no new token.
        if was_idle && result.as_ref().is_err_and(unreachable) {
            con = self.connect(what)?;
            result = f(&mut con);
        }
        match result {
            Ok(value) => {
                self.put_back(con);
                Ok(value)
            }
            Err(e) => {
                // A connection that failed mid-call may hold half a reply: it goes.
                if !unreachable(&e) {
                    self.put_back(con);
                }
                Err(self.error(what, &e))
            }
        }
    }

    fn connect(&self, what: &str) -> Result<Connection, StoreError> {
        let con = self
            .client
            .get_connection_with_timeout(self.io_timeout)
            .map_err(|e| self.error(what, &e))?;
        con.set_read_timeout(Some(self.io_timeout))
            .and_then(|()| con.set_write_timeout(Some(self.io_timeout)))
            .map_err(|e| self.error(what, &e))?;
        Ok(con)
    }

    fn put_back(&self, con: Connection) {
        let mut idle = self.idle.lock();
        if idle.len() < IDLE_CONNECTIONS {
            idle.push(con);
        }
    }

    fn error(&self, what: &str, e: &RedisError) -> StoreError {
        if unreachable(e) {
            self.failures.fetch_add(1, Relaxed);
            StoreError::Unreachable {
                store: self.shown.clone(),
                detail: format!("{what}: {e}"),
            }
        } else {
            StoreError::Server {
                store: self.shown.clone(),
                detail: format!("{what}: {e}"),
            }
        }
    }

    /// Whether this process may still write: the lease is not known lost, and has not
    /// ended by this process's clock.
    fn writable(&self) -> Result<(), StoreError> {
        let mut lease = self.state.lock();
        if lease.lost.is_none() && Instant::now() >= lease.ends {
            let why = format!(
                "the store's lease ended before it could be renewed (the store did not answer for store.lease_ms = {} ms)",
                self.lease.as_millis()
            );
            error!(store = %self.shown, "{why}; this process writes nothing more for the back, which stops");
            lease.lost = Some(why);
        }
        match &lease.lost {
            Some(why) => Err(self.fenced(why.clone())),
            None => Ok(()),
        }
    }

    fn fenced(&self, why: String) -> StoreError {
        StoreError::Fenced {
            store: self.shown.clone(),
            back: self.back.clone(),
            why,
        }
    }

    /// Loses the lease for good, saying why once.
    fn lose(&self, why: String) -> StoreError {
        let mut lease = self.state.lock();
        if lease.lost.is_none() {
            error!(store = %self.shown, "{why}; this process writes nothing more for the back, which stops");
            lease.lost = Some(why.clone());
        }
        self.fenced(why)
    }

    /// Why a fenced script refused: the holder it answered.
    fn taken_over(&self, holder: Value) -> StoreError {
        let why = match holder {
            Value::BulkString(token) => format!(
                "another process took the back over (its lease token is {}, this process had {})",
                String::from_utf8_lossy(&token),
                self.token
            ),
            _ => {
                "the store's lease ended and is held by nobody (it was not renewed in time)".into()
            }
        };
        self.lose(why)
    }

    /// Runs a fenced script built by `script` on the keys and arguments it is given
    /// after the lease and the token.
    fn write(
        &self,
        what: &str,
        script: &Script,
        keys: &[&str],
        args: &[&[u8]],
    ) -> Result<(), StoreError> {
        self.writable()?;
        let answer: Value = self.call(what, |c| {
            let mut call = script.key(&self.lease_key);
            for key in keys {
                call.key(*key);
            }
            call.arg(&self.token);
            for arg in args {
                call.arg(*arg);
            }
            call.invoke(c)
        })?;
        match answer {
            Value::Int(1) => Ok(()),
            holder => Err(self.taken_over(holder)),
        }
    }

    /// A place in the store, for messages.
    fn at(&self, key: &str) -> String {
        format!("{} {key}", self.shown)
    }
}

impl Drop for Inner {
    /// Stops the renewals and gives the lease up, so that a restarted back need not
    /// wait for it to end.
    fn drop(&mut self) {
        *self.renewer.stop.lock() = true;
        self.renewer.wake.notify_all();
        // Not taken (a failed open), or lost: nothing to give up.
        if !self.token.is_empty() && self.state.get_mut().lost.is_none() {
            let released = self.call("release the lease", |c| {
                RELEASE
                    .key(&self.lease_key)
                    .arg(&self.token)
                    .invoke::<Value>(c)
            });
            match released {
                Ok(_) => debug!(store = %self.shown, "store lease released"),
                Err(e) => {
                    warn!(store = %self.shown, error = %e, "cannot release the store's lease; it ends by itself")
                }
            }
        }
    }
}

/// Renews the lease every third of its length (every tenth after a failure) until
/// the store is dropped or the lease is lost.
fn renew(weak: &Weak<Inner>, renewer: &Renewer) {
    let mut failing = false;
    loop {
        let Some(lease) = weak.upgrade().map(|inner| inner.lease) else {
            return;
        };
        let wait = if failing { lease / 10 } else { lease / 3 };
        {
            let mut stop = renewer.stop.lock();
            if !*stop {
                renewer.wake.wait_for(&mut stop, wait);
            }
            if *stop {
                return;
            }
        }
        let Some(inner) = weak.upgrade() else {
            return;
        };
        #[cfg(test)]
        if inner.paused.load(Relaxed) {
            continue;
        }
        if inner.writable().is_err() {
            return;
        }
        let sent = Instant::now();
        let renewed = inner.call("renew the lease", |c| {
            RENEW
                .key(&inner.lease_key)
                .arg(&inner.token)
                .arg(inner.lease.as_millis() as u64)
                .invoke::<Value>(c)
        });
        match renewed {
            Ok(Value::Int(1)) => {
                inner.state.lock().ends = sent + inner.lease;
                if std::mem::take(&mut failing) {
                    info!(store = %inner.shown, "the store answers again; its lease is renewed");
                }
            }
            Ok(holder) => {
                inner.taken_over(holder);
                return;
            }
            Err(e) => {
                let left = inner
                    .state
                    .lock()
                    .ends
                    .saturating_duration_since(Instant::now());
                // Said once; the end of the lease, if it comes, is an error of its own.
                if !std::mem::replace(&mut failing, true) {
                    warn!(store = %inner.shown, error = %e, left_ms = left.as_millis() as u64, "cannot renew the store's lease; the back stops when it ends unless the store answers first");
                } else {
                    debug!(store = %inner.shown, error = %e, left_ms = left.as_millis() as u64, "cannot renew the store's lease");
                }
            }
        }
    }
}

/// Whether the server could not be reached (or is not ready), as opposed to refusing.
fn unreachable(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || matches!(
            e.code(),
            Some("LOADING" | "BUSY" | "TRYAGAIN" | "MASTERDOWN")
        )
}

fn too_large(at: String, len: usize) -> Result<(), StoreError> {
    if len > MAX_VALUE {
        return Err(StoreError::TooLarge { path: at, len });
    }
    Ok(())
}

impl Store for RedisStore {
    fn describe(&self) -> String {
        self.inner.shown.clone()
    }

    fn health(&self) -> Result<(), StoreError> {
        self.inner.writable()
    }

    fn failures(&self) -> u64 {
        self.inner.failures.load(Relaxed)
    }

    fn channels(&self) -> Result<Vec<String>, StoreError> {
        let key = format!("{}:channels", self.inner.base);
        self.inner.call("list the channels", |c| {
            redis::cmd("SMEMBERS").arg(&key).query(c)
        })
    }

    fn remove(&self, channel: &str) -> Result<(), StoreError> {
        let inner = &self.inner;
        let keys = ChannelKeys::new(&inner.base, channel);
        let channels = format!("{}:channels", inner.base);
        inner.write(
            "remove a channel",
            &REMOVE,
            &[&channels, &keys.journal, &keys.snaps, &keys.damaged],
            &[channel.as_bytes()],
        )
    }

    fn open(&self, channel: &str) -> Result<Opened, StoreError> {
        let inner = &self.inner;
        let keys = ChannelKeys::new(&inner.base, channel);
        let channels = format!("{}:channels", inner.base);
        inner.write("open a channel", &OPEN, &[&channels], &[channel.as_bytes()])?;
        let mut repairs = Vec::new();
        let snapshot = self.newest_snapshot(&keys, &mut repairs)?;
        let after = snapshot.as_ref().map_or(0, |s| s.step);
        let records = self.records(&keys.journal, after)?;
        let last = records.last().map_or(after, |r| r.step);
        Ok(Opened {
            recovered: Recovered {
                snapshot,
                records,
                repairs,
            },
            journal: Box::new(RedisJournal {
                inner: inner.clone(),
                key: keys.journal.clone(),
                next: last + 1,
                buf: Vec::new(),
            }),
            snapshots: Box::new(RedisSnapshots {
                inner: inner.clone(),
                keys,
            }),
        })
    }
}

impl RedisStore {
    /// The newest snapshot that reads whole; a damaged one is set aside (and said so)
    /// for the one before it. One of another format version stops recovery.
    fn newest_snapshot(
        &self,
        keys: &ChannelKeys,
        repairs: &mut Vec<String>,
    ) -> Result<Option<Snapshot>, StoreError> {
        let inner = &self.inner;
        let fields: Vec<(String, Vec<u8>)> = inner.call("read the snapshots", |c| {
            redis::cmd("HGETALL").arg(&keys.snaps).query(c)
        })?;
        let mut snapshots = Vec::with_capacity(fields.len());
        for (field, bytes) in fields {
            let Ok(step) = field.parse::<u64>() else {
                return Err(StoreError::Corrupt {
                    path: inner.at(&keys.snaps),
                    what: format!("a snapshot under {field:?}, which is not a step"),
                });
            };
            snapshots.push((step, bytes));
        }
        snapshots.sort_by_key(|s| std::cmp::Reverse(s.0));
        for (step, bytes) in snapshots {
            let shown = format!("{} step {step}", inner.at(&keys.snaps));
            let damage = match check_header(&bytes, Magic::Snapshot, &shown) {
                Err(e @ StoreError::Version { .. }) => return Err(e),
                Err(e) => e.to_string(),
                Ok(()) => {
                    let read = read_records(&bytes[HEADER_LEN..]);
                    match &read.records[..] {
                        [(at, _)] if *at == step && read.stopped.is_none() => {
                            let body = read.records.into_iter().next().map(|(_, b)| b);
                            return Ok(body.map(|bytes| Snapshot {
                                step,
                                bytes,
                                source: shown,
                            }));
                        }
                        _ => format!(
                            "{shown}: damaged ({})",
                            read.stopped
                                .as_deref()
                                .unwrap_or("not one record of its step")
                        ),
                    }
                }
            };
            inner.write(
                "set a damaged snapshot aside",
                &SET_ASIDE,
                &[&keys.snaps, &keys.damaged],
                &[step.to_string().as_bytes()],
            )?;
            repairs.push(format!(
                "{damage}; set aside in {}, falling back to the snapshot before it",
                keys.damaged
            ));
        }
        Ok(None)
    }

    /// Every journal record after step `after`, checking that each reads whole and
    /// that steps follow each other. Writes are whole, so there is no torn tail to
    /// cut: any damage stops recovery.
    fn records(&self, key: &str, after: u64) -> Result<Vec<Record>, StoreError> {
        let inner = &self.inner;
        let members: Vec<Vec<u8>> = inner.call("read the journal", |c| {
            redis::cmd("ZRANGEBYSCORE")
                .arg(key)
                .arg(format!("({after}"))
                .arg("+inf")
                .query(c)
        })?;
        let mut records = Vec::with_capacity(members.len());
        let mut last = after;
        for member in members {
            let read = read_records(&member);
            let step = match &read.records[..] {
                [(step, _)] if read.stopped.is_none() => *step,
                _ => {
                    return Err(StoreError::Corrupt {
                        path: inner.at(key),
                        what: format!(
                            "the record after step {last} does not read whole ({}); remove it (ZREM) and those after it to start from what precedes it",
                            read.stopped.as_deref().unwrap_or("more than one record")
                        ),
                    });
                }
            };
            if step != last + 1 {
                return Err(StoreError::Gap {
                    path: inner.at(key),
                    what: format!(
                        "the journal goes from step {last} to step {step}; the records between are missing"
                    ),
                });
            }
            last = step;
            let bytes = read.records.into_iter().next().map(|(_, b)| b);
            records.push(Record {
                step,
                bytes: bytes.unwrap_or_default(),
            });
        }
        Ok(records)
    }
}

/// A channel's journal.
#[derive(Debug)]
struct RedisJournal {
    inner: Arc<Inner>,
    key: String,
    next: u64,
    /// Reused for each record's bytes.
    buf: Vec<u8>,
}

impl Journal for RedisJournal {
    fn append(&mut self, step: u64, payload: &[u8], _durable: bool) -> Result<(), StoreError> {
        if step != self.next {
            return Err(StoreError::Gap {
                path: self.inner.at(&self.key),
                what: format!("step {step} appended where step {} was due", self.next),
            });
        }
        too_large(self.inner.at(&self.key), payload.len())?;
        self.buf.clear();
        record(&mut self.buf, step, payload);
        self.inner.write(
            "append to the journal",
            &APPEND,
            &[&self.key],
            &[step.to_string().as_bytes(), &self.buf],
        )?;
        self.next += 1;
        Ok(())
    }

    fn cut(&mut self, step: u64) -> Result<(), StoreError> {
        if step + 1 != self.next {
            return Err(StoreError::Gap {
                path: self.inner.at(&self.key),
                what: format!(
                    "cut at step {step}, but the last record is of step {}",
                    self.next - 1
                ),
            });
        }
        // Nothing to write: records are dropped by step when a snapshot is.
        self.inner.writable()
    }
}

/// A channel's snapshots.
#[derive(Debug)]
struct RedisSnapshots {
    inner: Arc<Inner>,
    keys: ChannelKeys,
}

impl Snapshots for RedisSnapshots {
    fn write(&mut self, step: u64, snapshot: &[u8]) -> Result<(), StoreError> {
        too_large(self.inner.at(&self.keys.snaps), snapshot.len())?;
        let mut bytes = header(Magic::Snapshot).to_vec();
        record(&mut bytes, step, snapshot);
        self.inner.write(
            "write a snapshot",
            &SNAPSHOT,
            &[&self.keys.snaps, &self.keys.journal],
            &[step.to_string().as_bytes(), &bytes],
        )
    }
}

#[cfg(test)]
mod tests;
