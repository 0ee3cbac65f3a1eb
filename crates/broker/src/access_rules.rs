//! The access rules a configuration asks for: one [`FileAccess`] for every listener, or,
//! with `per_listener_settings`, one per listener (Mosquitto's per-listener
//! `allow_anonymous`, `password_file` and `acl_file`), chosen by the listener each client
//! came through ([`tinsel_core::ConnectInfo::listener`], [`tinsel_core::Identity::listener`]).

use std::sync::Arc;

use tinsel_core::{AuthDecision, Authenticator, Authorizer, ConnectInfo, Identity, Verdict};
use tracing::warn;

use crate::Error;
use crate::config::Config;
use crate::file_access::{AccessFiles, FileAccess};

/// Per-listener rules: the rules of each listener, by listener id. A listener without
/// rules lets everybody do everything (as one with nothing set in TOML does).
#[derive(Clone)]
pub(crate) struct ByListener {
    rules: Arc<[Option<FileAccess>]>,
}

impl ByListener {
    fn of(&self, listener: u16) -> Option<&FileAccess> {
        self.rules
            .get(usize::from(listener))
            .and_then(Option::as_ref)
    }
}

impl Authenticator for ByListener {
    fn authenticate(&self, info: &ConnectInfo) -> AuthDecision {
        match self.of(info.listener) {
            Some(a) => a.authenticate(info),
            None => AuthDecision::Allow(info.username.as_ref().map(|u| Arc::from(u.as_str()))),
        }
    }

    fn authenticate_slowly(&self, info: &ConnectInfo) -> AuthDecision {
        match self.of(info.listener) {
            Some(a) => a.authenticate_slowly(info),
            None => AuthDecision::Allow(info.username.as_ref().map(|u| Arc::from(u.as_str()))),
        }
    }
}

impl Authorizer for ByListener {
    fn publish(&self, who: Identity<'_>, topic: &str) -> bool {
        self.of(who.listener).is_none_or(|a| a.publish(who, topic))
    }

    fn subscribe(&self, who: Identity<'_>, filter: &str) -> Verdict {
        self.of(who.listener)
            .map_or(Verdict::Grant, |a| a.subscribe(who, filter))
    }

    fn deliver(&self, who: Identity<'_>, topic: &str) -> bool {
        self.of(who.listener).is_none_or(|a| a.deliver(who, topic))
    }

    fn will(&self, who: Identity<'_>, topic: &str) -> bool {
        self.of(who.listener).is_none_or(|a| a.will(who, topic))
    }
}

/// The installed rules: the seams' implementations.
pub(crate) struct Rules {
    pub(crate) authenticator: Arc<dyn Authenticator>,
    pub(crate) authorizer: Arc<dyn Authorizer>,
}

/// The access rules `config` asks for (None: everybody may do everything). As Mosquitto 2,
/// a password file makes anonymous clients refused unless `allow_anonymous` says otherwise.
/// Each set of files is read again on SIGHUP.
pub(crate) fn load(config: &Config) -> Result<Option<Rules>, Error> {
    let a = &config.access;
    if a.per_listener_settings != Some(true) {
        let Some(fa) = files(
            a.allow_anonymous,
            a.password_file.clone(),
            a.acl_file.clone(),
        )?
        else {
            return Ok(None);
        };
        return Ok(Some(Rules {
            authenticator: Arc::new(fa.clone()),
            authorizer: Arc::new(fa),
        }));
    }
    let mut rules = Vec::with_capacity(config.listeners.len());
    for l in &config.listeners {
        let la = &l.access;
        let fa = files(
            la.allow_anonymous,
            la.password_file.clone(),
            la.acl_file.clone(),
        )
        .map_err(|e| Error::Config(format!("listener {}:{}: {e}", l.address, l.port)))?;
        rules.push(fa);
    }
    if rules.iter().all(Option::is_none) {
        return Ok(None);
    }
    let by = ByListener {
        rules: rules.into(),
    };
    Ok(Some(Rules {
        authenticator: Arc::new(by.clone()),
        authorizer: Arc::new(by),
    }))
}

/// One set of rules (None: nothing asked for, everybody may do everything).
fn files(
    allow_anonymous: Option<bool>,
    password_file: Option<std::path::PathBuf>,
    acl_file: Option<std::path::PathBuf>,
) -> Result<Option<FileAccess>, Error> {
    let asked = password_file.is_some() || acl_file.is_some() || allow_anonymous == Some(false);
    if !asked {
        return Ok(None);
    }
    let files = AccessFiles {
        allow_anonymous: allow_anonymous.unwrap_or(password_file.is_none()),
        password_file,
        acl_file,
    };
    let fa = FileAccess::load(files).map_err(|e| Error::Config(e.to_string()))?;
    // New rights from the next CONNECT, SUBSCRIBE or delivery; a file that fails to parse
    // keeps the old rules (logged with its file and line).
    if let Err(e) = fa.reload_on_hangup() {
        warn!("cannot reload the access files on SIGHUP: {e}");
    }
    Ok(Some(fa))
}
