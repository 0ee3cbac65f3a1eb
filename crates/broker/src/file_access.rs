//! Access by Mosquitto's files: `allow_anonymous`, `password_file` and `acl_file`, decided
//! the way Mosquitto 2.0 decides them, behind the core's access seam.
//!
//! [`FileAccess`] is both the [`Authenticator`] and the [`Authorizer`]; clone it to install
//! it as both (clones share rules and caches).
//!
//! # Who may connect (Mosquitto 2.0's rules)
//!
//! | CONNECT | no password file | password file |
//! |---|---|---|
//! | no username | `allow_anonymous` decides | `allow_anonymous` decides |
//! | username | `allow_anonymous` decides (the username names the ACL block) | the password must verify |
//! | username from the TLS certificate (`use_identity_as_username`...) | accepted | accepted, no password asked |
//!
//! Every refusal is CONNACK 0x87 "Not authorized" in MQTT 5 and return code 5 "not
//! authorised" in 3.1.x, which is what Mosquitto 2.0 sends for a bad password, an unknown user
//! and a refused anonymous client alike. `allow_anonymous` is `false` in Mosquitto 2.0 unless
//! it is set (or the configuration has no listener at all).
//!
//! # Cost on the event loop
//!
//! Anonymous clients, unknown users and missing passwords are decided at once. Checking a
//! password (`$7$` PBKDF2 takes about 65 µs at the default 101 iterations, far more with
//! `-I`) is deferred to the broker's pool of blocking threads, except for a login verified
//! recently: the last [`LOGIN_CACHE`] successful logins are remembered as keyed SHA-256
//! digests of the user name and password (never the password itself), so a client that
//! reconnects with the same good password is let in without hashing.
//!
//! A flood of wrong passwords cannot hold up other clients for long: each source address (an
//! IPv6 address counts by its /64) may have at most [`MAX_PENDING_PER_SOURCE`] checks
//! waiting or running, and may fail [`FAILURE_BURST`] times in a burst, then
//! [`FAILURES_PER_SECOND`]; beyond that its CONNECTs are refused at once, without hashing
//! (0x87 Not authorized after too many failures, 0x89 Server busy — MQTT 3: 3 Server
//! unavailable — while too many checks are pending)
//! (a token bucket per source: a device retrying a stale password every few seconds never
//! trips it, a flood is cut to one hash a second). The table
//! holds at most [`MAX_SOURCES`] sources; when it is full and none can be forgotten, a new
//! source is not tracked (so not limited) rather than refused. The trade-off: clients behind
//! one address share its budget, so a flood from a NAT gateway also refuses a neighbour who
//! has not logged in recently (a neighbour in the login cache still gets in).
//!
//! # What a client may do
//!
//! Without an ACL file, everything (as Mosquitto without `acl_file`). With one, publishing
//! and wills need write access, each delivery (retained messages included) read access, as
//! [`tinsel_auth::ClientAcl::check`] decides; a SUBSCRIBE to a filter that can match nothing
//! readable is refused (SUBACK 0x87 / 0x80), Tinsel's one deliberate difference from
//! Mosquitto, which grants it and then delivers nothing. Each client's rules are kept for the
//! last [`CLIENT_CACHE`] client ids asked about, so a delivery costs a hash look-up and a walk
//! of the client's rule tree, not a pass over the file.
//!
//! # Reload
//!
//! [`FileAccess::reload`] reads the files again and swaps the rules in one step; a file that
//! fails to load keeps the old rules (the error names file and line). New rules apply from the
//! next CONNECT, SUBSCRIBE, publish or delivery; connected clients stay connected. The caches
//! start empty with the new rules. [`FileAccess::reload_on_hangup`] does it on each SIGHUP,
//! as Mosquitto does.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tinsel_auth::{Access, AclFile, ClientAcl, PasswordFile, SubscribeDecision};
use tinsel_codec::ReasonCode;
use tinsel_core::{AuthDecision, Authenticator, Authorizer, ConnectInfo, Identity, Verdict};
use tracing::{info, warn};

/// Successful logins remembered (as digests), so reconnecting does not hash again.
pub const LOGIN_CACHE: usize = 4096;
/// Client ids whose ACL rules are kept ready for their deliveries.
pub const CLIENT_CACHE: usize = 16384;
/// Password checks one source address may have waiting or running at once; more CONNECTs
/// from it meanwhile are refused.
pub const MAX_PENDING_PER_SOURCE: u16 = 16;
/// Failed logins a source address may make in a burst; then [`FAILURES_PER_SECOND`].
pub const FAILURE_BURST: u32 = 10;
/// Failed logins per second a source address may make once its burst is spent.
pub const FAILURES_PER_SECOND: f64 = 1.0;
/// Source addresses tracked for failed logins.
pub const MAX_SOURCES: usize = 4096;

const FORGET_SOURCE: Duration = Duration::from_secs(60);

/// What [`FileAccess`] is built from: Mosquitto's `allow_anonymous`, `password_file` and
/// `acl_file`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessFiles {
    /// May clients connect without a username? Mosquitto 2.0's default is `false` (`true`
    /// only when its configuration defines no listener).
    pub allow_anonymous: bool,
    /// A Mosquitto password file (`mosquitto_passwd` or `tinsel passwd` writes it).
    pub password_file: Option<PathBuf>,
    /// A Mosquitto ACL file.
    pub acl_file: Option<PathBuf>,
}

/// Authentication and authorization by Mosquitto's password and ACL files. See the
/// [module docs](crate::file_access). Cheap to clone; clones share rules and caches.
#[derive(Clone)]
pub struct FileAccess {
    shared: Arc<Shared>,
}

struct Shared {
    /// Where [`FileAccess::reload`] reads from (None: built from parsed files, no reload).
    files: Option<AccessFiles>,
    rules: RwLock<Arc<Rules>>,
    /// Counts the reloads that changed the rules ([`Authorizer::rules_version`]): raised
    /// after the new rules are in place, so an answer kept under a version never comes from
    /// older rules than that version's.
    version: AtomicU64,
    sources: Mutex<Sources>,
    /// Keys the login digests, so they are useless outside this process.
    login_key: [u8; 32],
}

/// One version of the rules, with the caches derived from it (a reload starts them afresh).
struct Rules {
    allow_anonymous: bool,
    passwords: Option<PasswordFile>,
    acl: Option<AclFile>,
    logins: Mutex<Recent<[u8; 32], ()>>,
    clients: Mutex<Recent<Box<str>, ClientRules>>,
}

/// A client's ACL, as built for the username it connected with.
struct ClientRules {
    username: Option<Box<str>>,
    acl: ClientAcl,
}

impl std::fmt::Debug for FileAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rules = self.rules();
        f.debug_struct("FileAccess")
            .field("files", &self.shared.files)
            .field("allow_anonymous", &rules.allow_anonymous)
            .field("users", &rules.passwords.as_ref().map(PasswordFile::len))
            .field("acl", &rules.acl.is_some())
            .finish_non_exhaustive()
    }
}

impl FileAccess {
    /// Reads the files named in `files`. The error names the file and, for its content, the
    /// line.
    pub fn load(files: AccessFiles) -> Result<FileAccess, tinsel_auth::Error> {
        let rules = Rules::load(&files)?;
        Ok(FileAccess::with_rules(Some(files), rules))
    }

    /// From files already parsed. [`FileAccess::reload`] then has nothing to read and keeps
    /// these rules.
    pub fn new(
        allow_anonymous: bool,
        passwords: Option<PasswordFile>,
        acl: Option<AclFile>,
    ) -> FileAccess {
        FileAccess::with_rules(None, Rules::new(allow_anonymous, passwords, acl))
    }

    fn with_rules(files: Option<AccessFiles>, rules: Rules) -> FileAccess {
        FileAccess {
            shared: Arc::new(Shared {
                files,
                rules: RwLock::new(Arc::new(rules)),
                version: AtomicU64::new(0),
                sources: Mutex::new(Sources::default()),
                login_key: rand::random(),
            }),
        }
    }

    /// Reads the files again and, if both load, swaps the rules in one step; otherwise keeps
    /// the rules in force, logs the error and returns it. See the [module docs](crate::file_access).
    pub fn reload(&self) -> Result<(), tinsel_auth::Error> {
        let Some(files) = &self.shared.files else {
            return Ok(());
        };
        match Rules::load(files) {
            Ok(rules) => {
                *self
                    .shared
                    .rules
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = Arc::new(rules);
                self.shared.version.fetch_add(1, Ordering::Release);
                info!("access rules reloaded");
                Ok(())
            }
            Err(e) => {
                warn!("access rules not reloaded, the previous ones stay in force: {e}");
                Err(e)
            }
        }
    }

    /// Spawns a task on the current tokio runtime that calls [`FileAccess::reload`] on each
    /// SIGHUP, for as long as the runtime runs. Errors if the signal cannot be watched.
    pub fn reload_on_hangup(&self) -> std::io::Result<tokio::task::JoinHandle<()>> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = signal(SignalKind::hangup())?;
        let access = self.clone();
        Ok(tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                // The error is logged by reload; the old rules stay.
                let _ = access.reload();
            }
        }))
    }

    fn rules(&self) -> Arc<Rules> {
        self.shared
            .rules
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn sources(&self) -> MutexGuard<'_, Sources> {
        lock(&self.shared.sources)
    }

    /// The digest a verified login is remembered by.
    fn login_digest(&self, username: &str, password: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.shared.login_key);
        h.update((username.len() as u64).to_be_bytes());
        h.update(username.as_bytes());
        h.update(password);
        h.finalize().into()
    }

    /// Decides whether `who` has `access` to `topic` (true without an ACL file).
    fn check(&self, who: Identity<'_>, topic: &str, access: Access) -> bool {
        let rules = self.rules();
        match &rules.acl {
            None => true,
            Some(file) => rules.with_client(file, who, |acl| acl.check(topic, access)),
        }
    }
}

const REFUSED: AuthDecision = AuthDecision::Deny(ReasonCode::NOT_AUTHORIZED);

impl Authenticator for FileAccess {
    fn authenticate(&self, info: &ConnectInfo) -> AuthDecision {
        if info.peer.is_none() {
            // An in-process link (a bridge's session here): the operator configured it,
            // nobody connected. As Mosquitto, it is not asked for a password; its
            // `local_username`, if any, is who the ACL rules see.
            return AuthDecision::Allow(info.username.as_ref().map(|u| Arc::from(u.as_str())));
        }
        let rules = self.rules();
        let Some(username) = &info.username else {
            return if rules.allow_anonymous {
                AuthDecision::Allow(None)
            } else {
                REFUSED
            };
        };
        if info.username_from_certificate {
            // The listener took the user name from the client's certificate: as in Mosquitto
            // 2.0, the certificate is the credential and no password is checked.
            return AuthDecision::Allow(Some(Arc::from(username.as_str())));
        }
        let Some(passwords) = &rules.passwords else {
            // Mosquitto 2.0: without a password file a username proves nothing; the client
            // is let in (as that user, for the ACL) only where anonymous clients are.
            return if rules.allow_anonymous {
                AuthDecision::Allow(Some(Arc::from(username.as_str())))
            } else {
                REFUSED
            };
        };
        let now = Instant::now();
        let source = info.peer.map(source_key);
        let (Some(password), Some(_)) = (&info.password, passwords.get(username.as_str())) else {
            if let Some(source) = source {
                self.sources().failed(source, now);
            }
            return REFUSED;
        };
        let digest = self.login_digest(username.as_str(), password);
        if lock(&rules.logins).get(&digest).is_some() {
            return AuthDecision::Allow(Some(Arc::from(username.as_str())));
        }
        match source.map(|source| self.sources().admit(source, now)) {
            Some(Err(reason)) => AuthDecision::Deny(reason),
            _ => AuthDecision::Defer,
        }
    }

    fn authenticate_slowly(&self, info: &ConnectInfo) -> AuthDecision {
        // The rules may have been reloaded since `authenticate`: decide by the current ones.
        let rules = self.rules();
        let verified = match (&info.username, &rules.passwords) {
            (Some(username), Some(passwords)) => passwords
                .verify(username.as_str(), info.password.as_deref())
                .is_ok(),
            // Reloaded without a password file: decide as `authenticate` now would.
            (Some(_), None) => rules.allow_anonymous,
            (None, _) => rules.allow_anonymous,
        };
        if let Some(source) = info.peer.map(source_key) {
            self.sources().finish(source, verified, Instant::now());
        }
        match (&info.username, verified) {
            (_, false) => REFUSED,
            (None, true) => AuthDecision::Allow(None),
            (Some(username), true) => {
                if let Some(password) = &info.password {
                    let digest = self.login_digest(username.as_str(), password);
                    lock(&rules.logins).insert(digest, ());
                }
                AuthDecision::Allow(Some(Arc::from(username.as_str())))
            }
        }
    }
}

impl Authorizer for FileAccess {
    fn publish(&self, who: Identity<'_>, topic: &str) -> bool {
        self.check(who, topic, Access::Write)
    }

    fn subscribe(&self, who: Identity<'_>, filter: &str) -> Verdict {
        let rules = self.rules();
        let Some(file) = &rules.acl else {
            return Verdict::Grant;
        };
        match rules.with_client(file, who, |acl| acl.subscribe_filter(filter)) {
            SubscribeDecision::Grant => Verdict::Grant,
            SubscribeDecision::Refuse => Verdict::Refuse,
        }
    }

    fn deliver(&self, who: Identity<'_>, topic: &str) -> bool {
        self.check(who, topic, Access::Read)
    }

    fn will(&self, who: Identity<'_>, topic: &str) -> bool {
        self.check(who, topic, Access::Write)
    }

    /// The rules answer the same for one client and topic until they are reloaded.
    fn rules_version(&self) -> Option<u64> {
        Some(self.shared.version.load(Ordering::Acquire))
    }
}

impl Rules {
    fn new(allow_anonymous: bool, passwords: Option<PasswordFile>, acl: Option<AclFile>) -> Rules {
        Rules {
            allow_anonymous,
            passwords,
            acl,
            logins: Mutex::new(Recent::new(LOGIN_CACHE)),
            clients: Mutex::new(Recent::new(CLIENT_CACHE)),
        }
    }

    fn load(files: &AccessFiles) -> Result<Rules, tinsel_auth::Error> {
        let passwords = files
            .password_file
            .as_ref()
            .map(PasswordFile::load)
            .transpose()?;
        let acl = files.acl_file.as_ref().map(AclFile::load).transpose()?;
        Ok(Rules::new(files.allow_anonymous, passwords, acl))
    }

    /// Runs `f` with the client's ACL, built once per client id and username and kept.
    fn with_client<T>(
        &self,
        file: &AclFile,
        who: Identity<'_>,
        f: impl FnOnce(&ClientAcl) -> T,
    ) -> T {
        let mut clients = lock(&self.clients);
        if let Some(c) = clients.get(who.client_id) {
            if c.username.as_deref() == who.username {
                return f(&c.acl);
            }
        }
        let acl = file.client(who.client_id, who.username);
        let answer = f(&acl);
        clients.insert(
            who.client_id.into(),
            ClientRules {
                username: who.username.map(Box::from),
                acl,
            },
        );
        answer
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A bounded cache of recently used entries in two generations: new entries go to the young
/// one; when it holds half the bound, the old generation is dropped and the young one takes
/// its place. An entry found in the old generation moves back to the young one. So at most
/// `bound` entries are held, and an entry used at least once per half-bound insertions stays.
struct Recent<K, V> {
    young: HashMap<K, V, foldhash::fast::RandomState>,
    old: HashMap<K, V, foldhash::fast::RandomState>,
    half: usize,
}

impl<K: Hash + Eq, V> Recent<K, V> {
    fn new(bound: usize) -> Recent<K, V> {
        Recent {
            young: HashMap::default(),
            old: HashMap::default(),
            half: (bound / 2).max(1),
        }
    }

    fn get<Q>(&mut self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if !self.young.contains_key(key) {
            let (k, v) = self.old.remove_entry(key)?;
            self.insert(k, v);
        }
        self.young.get(key)
    }

    fn insert(&mut self, key: K, value: V) {
        if self.young.len() >= self.half && !self.young.contains_key(&key) {
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(key, value);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }
}

/// Where failed logins are counted: the address, an IPv6 one by its /64.
fn source_key(peer: SocketAddr) -> IpAddr {
    match peer.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & !u128::from(u64::MAX))),
        },
        v4 => v4,
    }
}

/// Failed logins and pending password checks per source address; see the module docs.
#[derive(Default)]
struct Sources {
    table: HashMap<IpAddr, Source>,
}

#[derive(Debug, Clone, Copy)]
struct Source {
    /// Password checks deferred and not finished yet.
    pending: u16,
    /// Failures the source may still make at once: a failure takes one, and they come
    /// back at [`FAILURES_PER_SECOND`] up to [`FAILURE_BURST`].
    allowance: f64,
    /// When `allowance` was last brought up to date; also the last event.
    last: Instant,
}

impl Source {
    fn new(now: Instant) -> Source {
        Source {
            pending: 0,
            allowance: f64::from(FAILURE_BURST),
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.allowance =
            (self.allowance + elapsed * FAILURES_PER_SECOND).min(f64::from(FAILURE_BURST));
        self.last = now;
    }

    /// Nothing to remember: full allowance and nothing pending, or quiet so long that
    /// pending checks which never reported back must not lock the source out any more.
    fn forgettable(&self, now: Instant) -> bool {
        let quiet = now.saturating_duration_since(self.last);
        (self.pending == 0
            && quiet.as_secs_f64() * FAILURES_PER_SECOND + self.allowance
                >= f64::from(FAILURE_BURST))
            || quiet > FORGET_SOURCE
    }

    fn fail(&mut self, now: Instant) {
        self.refill(now);
        self.allowance = (self.allowance - 1.0).max(0.0);
    }
}

impl Sources {
    /// The source's record, made if there is room (None: the table is full).
    fn entry(&mut self, source: IpAddr, now: Instant) -> Option<&mut Source> {
        if !self.table.contains_key(&source) && self.table.len() >= MAX_SOURCES {
            self.table.retain(|_, s| !s.forgettable(now));
            if self.table.len() >= MAX_SOURCES {
                return None;
            }
        }
        let s = self.table.entry(source).or_insert_with(|| Source::new(now));
        if now.saturating_duration_since(s.last) > FORGET_SOURCE {
            *s = Source::new(now);
        }
        Some(s)
    }

    /// May a password check from `source` start? Counts it as pending if so. If not, the
    /// CONNECT's refusal: 0x87 Not authorized once the source has failed too often, 0x89
    /// Server busy while it has [`MAX_PENDING_PER_SOURCE`] checks pending (its password may
    /// well be right: the client should try again).
    fn admit(&mut self, source: IpAddr, now: Instant) -> Result<(), ReasonCode> {
        let Some(s) = self.entry(source, now) else {
            return Ok(());
        };
        s.refill(now);
        if s.allowance < 1.0 {
            return Err(ReasonCode::NOT_AUTHORIZED);
        }
        if s.pending >= MAX_PENDING_PER_SOURCE {
            return Err(ReasonCode::SERVER_BUSY);
        }
        s.pending += 1;
        Ok(())
    }

    /// A login from `source` failed without a password check.
    fn failed(&mut self, source: IpAddr, now: Instant) {
        if let Some(s) = self.entry(source, now) {
            s.fail(now);
        }
    }

    /// A password check admitted by [`Sources::admit`] finished.
    fn finish(&mut self, source: IpAddr, verified: bool, now: Instant) {
        let Some(s) = self.entry(source, now) else {
            return;
        };
        s.pending = s.pending.saturating_sub(1);
        if verified {
            s.refill(now);
        } else {
            s.fail(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_is_bounded_and_keeps_what_is_used() {
        let mut r = Recent::new(4);
        for i in 0..100u32 {
            r.insert(i, i);
            assert!(r.len() <= 4);
            // 0 is used after each insertion, so it survives every rotation.
            assert_eq!(r.get(&0), Some(&0), "after {i}");
        }
        assert_eq!(r.get(&50), None);
        assert_eq!(r.get(&99), Some(&99));
    }

    #[test]
    fn failures_are_limited_per_source() {
        let mut s = Sources::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..FAILURE_BURST {
            assert!(s.admit(ip, t0).is_ok());
            s.finish(ip, false, t0);
        }
        assert_eq!(
            s.admit(ip, t0),
            Err(ReasonCode::NOT_AUTHORIZED),
            "refused after {FAILURE_BURST} failures"
        );
        assert!(s.admit(other, t0).is_ok(), "others are not");
        let t1 = t0 + Duration::from_secs_f64(1.0 / FAILURES_PER_SECOND);
        assert!(s.admit(ip, t1).is_ok(), "one more failure a second");
        s.finish(ip, false, t1);
        assert!(s.admit(ip, t1).is_err());
        // Failing slower than the refill never trips it.
        let mut t = t1;
        for _ in 0..100 {
            t += Duration::from_secs(2);
            assert!(s.admit(ip, t).is_ok());
            s.finish(ip, false, t);
        }
        s.failed(ip, t);
        s.failed(ip, t);
        assert_eq!(s.table.len(), 2);
    }

    #[test]
    fn pending_checks_per_source_are_bounded() {
        let mut s = Sources::default();
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..MAX_PENDING_PER_SOURCE {
            assert!(s.admit(source_key(SocketAddr::new(ip, 1)), t0).is_ok());
        }
        // Same /64: the same source, told to come back later.
        let neighbour = SocketAddr::new("2001:db8::2".parse().unwrap(), 2);
        assert_eq!(
            s.admit(source_key(neighbour), t0),
            Err(ReasonCode::SERVER_BUSY)
        );
        // Checks that never report back are forgotten.
        assert!(
            s.admit(source_key(neighbour), t0 + FORGET_SOURCE * 2)
                .is_ok()
        );
        assert_eq!(s.table.len(), 1);
    }

    #[test]
    fn the_source_table_is_bounded() {
        let mut s = Sources::default();
        let t0 = Instant::now();
        for i in 0..MAX_SOURCES as u32 + 10 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from_bits(i));
            assert!(s.admit(ip, t0).is_ok(), "untracked sources are admitted");
        }
        assert_eq!(s.table.len(), MAX_SOURCES);
        let late = IpAddr::from(std::net::Ipv4Addr::from_bits(u32::MAX));
        assert!(s.admit(late, t0 + FORGET_SOURCE * 2).is_ok());
        assert_eq!(s.table.len(), 1, "stale sources were forgotten");
    }
}
