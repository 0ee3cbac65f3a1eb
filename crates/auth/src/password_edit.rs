//! Changing a password file the way `mosquitto_passwd` does, for `tinsel passwd`.
//!
//! Every line that is not the user being changed is written back byte for byte. Two
//! deliberate differences from `mosquitto_passwd`, both on the side of not losing anything:
//!
//! - comment lines (`#` first) and blank lines are kept, where `mosquitto_passwd` calls the
//!   file corrupt and stops (the broker itself ignores them either way);
//! - [`PasswordEditor::hash_plaintext`] (`-U`) leaves entries that already hold a valid hash as
//!   they are, where `mosquitto_passwd -U` hashes the hash again and locks the user out.
//!
//! A line with a username but no password, or no `:` at all, is refused as
//! `mosquitto_passwd` refuses it: "corrupt password file at line N".

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use rand::RngCore as _;

use crate::hash::{HashKind, PasswordHash};
use crate::{Error, text};

/// The longest username (and password) `mosquitto_passwd` accepts, in bytes.
pub const MAX_LEN: usize = 65535;

#[derive(Debug, Clone)]
enum Line {
    /// `username:password-or-hash`, as read.
    Entry {
        username: String,
        secret: String,
        raw: String,
    },
    /// A comment or blank line, kept verbatim.
    Other(String),
}

/// A password file held line by line so it can be changed and written back.
#[derive(Debug, Clone, Default)]
pub struct PasswordEditor {
    lines: Vec<Line>,
}

impl PasswordEditor {
    /// An empty file (what `-c` starts from).
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads the file at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let bytes = fs::read(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse_bytes(&bytes, &path.display().to_string())
    }

    /// Parses the text of a password file; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, Error> {
        Self::parse_bytes(text.as_bytes(), origin)
    }

    fn parse_bytes(bytes: &[u8], origin: &str) -> Result<Self, Error> {
        let mut lines = Vec::new();
        for (index, raw) in text::lines(bytes) {
            let line_no = index + 1;
            let corrupt = || Error::syntax(origin, line_no, "corrupt password file at this line");
            let raw = std::str::from_utf8(raw).map_err(|_| corrupt())?;
            if raw.starts_with('#') || text::trim(raw).is_empty() {
                lines.push(Line::Other(raw.to_owned()));
                continue;
            }
            let (username, secret) = crate::password_file::split_entry(raw).ok_or_else(corrupt)?;
            if username.is_empty() || secret.is_empty() {
                return Err(corrupt());
            }
            lines.push(Line::Entry {
                username: username.to_owned(),
                secret: secret.to_owned(),
                raw: raw.to_owned(),
            });
        }
        Ok(PasswordEditor { lines })
    }

    /// Whether some entry has this username.
    pub fn contains(&self, username: &str) -> bool {
        self.entries().any(|(u, _)| u == username)
    }

    /// The entries' usernames and hashes (or plain-text passwords) in file order.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.lines.iter().filter_map(|l| match l {
            Line::Entry {
                username, secret, ..
            } => Some((username.as_str(), secret.as_str())),
            Line::Other(_) => None,
        })
    }

    /// Sets the user's hash: every entry for `username` is replaced in place, or a new entry
    /// is appended if there is none. The username must pass [`validate_username`].
    pub fn set(&mut self, username: &str, hash: &PasswordHash) -> Result<(), Error> {
        validate_username(username)?;
        let new_line = format!("{username}:{hash}");
        let mut found = false;
        for line in &mut self.lines {
            if let Line::Entry { username: u, .. } = line {
                if u == username {
                    *line = entry(username, &hash.to_string(), new_line.clone());
                    found = true;
                }
            }
        }
        if !found {
            self.lines
                .push(entry(username, &hash.to_string(), new_line));
        }
        Ok(())
    }

    /// Removes every entry for `username`; `false` if there was none.
    pub fn remove(&mut self, username: &str) -> bool {
        let before = self.lines.len();
        self.lines
            .retain(|l| !matches!(l, Line::Entry { username: u, .. } if u == username));
        self.lines.len() != before
    }

    /// Replaces each plain-text password with a hash of it (`tinsel passwd -U`); entries that
    /// already hold a valid `$6$` or `$7$` hash are left alone. Returns how many were hashed.
    pub fn hash_plaintext(&mut self, kind: HashKind, iterations: u32) -> Result<usize, Error> {
        let mut hashed = 0;
        for line in &mut self.lines {
            let Line::Entry {
                username, secret, ..
            } = line
            else {
                continue;
            };
            if PasswordHash::parse(secret).is_ok() {
                continue;
            }
            let hash = PasswordHash::new(kind, iterations, secret.as_bytes())?;
            let username = username.clone();
            *line = entry(&username, &hash.to_string(), format!("{username}:{hash}"));
            hashed += 1;
        }
        Ok(hashed)
    }

    /// The file's text: every line followed by `\n`.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for line in &self.lines {
            match line {
                Line::Entry { raw, .. } | Line::Other(raw) => out.push_str(raw),
            }
            out.push('\n');
        }
        out
    }

    /// Writes the file to `path`, replacing it atomically: the text goes to a new file in the
    /// same directory, which is then renamed over the old one. An existing file keeps its
    /// permissions (and its owner, where the process may set it) and a symbolic link is
    /// followed; a new file is readable by its owner only (mode 0600).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), Error> {
        let requested = path.as_ref();
        let io_err = |path: &Path| {
            let path = path.to_owned();
            move |source| Error::Io { path, source }
        };
        let target: PathBuf = match fs::canonicalize(requested) {
            Ok(p) => p,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => requested.to_owned(),
            Err(e) => return Err(io_err(requested)(e)),
        };
        let existing = fs::metadata(&target).ok();
        let dir = target
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut suffix = [0u8; 6];
        rand::rng().fill_bytes(&mut suffix);
        let suffix: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
        let tmp = dir.join(format!(".{name}.tinsel-{suffix}"));

        let write = || -> std::io::Result<()> {
            let mut options = fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt as _;
                options.mode(0o600);
            }
            let mut file = options.open(&tmp)?;
            file.write_all(self.to_text().as_bytes())?;
            if let Some(meta) = &existing {
                file.set_permissions(meta.permissions())?;
                #[cfg(unix)]
                {
                    use std::os::unix::fs::MetadataExt as _;
                    // Only root may give a file away; anyone else keeps the file as theirs.
                    let _ = std::os::unix::fs::fchown(&file, Some(meta.uid()), Some(meta.gid()));
                }
            }
            file.sync_all()?;
            fs::rename(&tmp, &target)
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            io_err(&target)(e)
        })
    }
}

fn entry(username: &str, secret: &str, raw: String) -> Line {
    Line::Entry {
        username: username.to_owned(),
        secret: secret.to_owned(),
        raw,
    }
}

/// Checks a username as `mosquitto_passwd` does: under 65,536 bytes, no control characters
/// and no `:`.
pub fn validate_username(username: &str) -> Result<(), Error> {
    if username.len() > MAX_LEN {
        return Err(Error::InvalidUsername(
            "username must be less than 65536 characters long",
        ));
    }
    if username.chars().any(char::is_control) {
        return Err(Error::InvalidUsername(
            "username must not contain control characters",
        ));
    }
    if username.contains(':') {
        return Err(Error::InvalidUsername(
            "username must not contain the ':' character",
        ));
    }
    if username.is_empty() {
        return Err(Error::InvalidUsername("username must not be empty"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PasswordFile;

    fn h(pw: &str) -> PasswordHash {
        PasswordHash::new(HashKind::Sha512Pbkdf2, 2, pw.as_bytes()).unwrap()
    }

    #[test]
    fn set_replaces_in_place_and_keeps_other_lines() {
        let text = "# staff\nalice:old\n\nbob:  keep-me-exactly  \n";
        let mut ed = PasswordEditor::parse(text, "t").unwrap();
        ed.set("alice", &h("new")).unwrap();
        ed.set("carol", &h("c")).unwrap();
        let out = ed.to_text();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "# staff");
        assert!(lines[1].starts_with("alice:$7$2$"));
        assert_eq!(lines[2], "");
        assert_eq!(lines[3], "bob:  keep-me-exactly  ");
        assert!(lines[4].starts_with("carol:$7$2$"));
        let f = PasswordFile::parse(&out.replace("bob:  keep-me-exactly  \n", ""), "t").unwrap();
        assert!(f.verify("alice", Some(b"new")).is_ok());
        assert!(f.verify("carol", Some(b"c")).is_ok());
    }

    #[test]
    fn remove_reports_whether_the_user_was_there() {
        let mut ed = PasswordEditor::parse("a:x\nb:y\na:z\n", "t").unwrap();
        assert!(ed.remove("a"));
        assert!(!ed.remove("a"));
        assert_eq!(ed.to_text(), "b:y\n");
    }

    #[test]
    fn hash_plaintext_skips_entries_already_hashed() {
        let hashed = h("pw").to_string();
        let text = format!("alice:plain\nbob:{hashed}\n");
        let mut ed = PasswordEditor::parse(&text, "t").unwrap();
        assert_eq!(ed.hash_plaintext(HashKind::Sha512, 1).unwrap(), 1);
        let out = ed.to_text();
        assert!(out.contains(&format!("bob:{hashed}\n")));
        let f = PasswordFile::parse(&out, "t").unwrap();
        assert!(f.verify("alice", Some(b"plain")).is_ok());
        assert_eq!(f.get("alice").unwrap().kind(), HashKind::Sha512);
        assert!(f.verify("bob", Some(b"pw")).is_ok());
    }

    #[test]
    fn corrupt_lines_are_refused_with_their_number() {
        let err = PasswordEditor::parse("a:x\njustaname\n", "pw").unwrap_err();
        assert_eq!(err.to_string(), "pw:2: corrupt password file at this line");
        assert!(PasswordEditor::parse("a:\n", "pw").is_err());
    }

    #[test]
    fn usernames_as_mosquitto_passwd() {
        assert!(validate_username("alice").is_ok());
        assert!(validate_username("a b").is_ok());
        assert!(validate_username("a:b").is_err());
        assert!(validate_username("a\tb").is_err());
        assert!(validate_username("").is_err());
        assert!(validate_username(&"x".repeat(65536)).is_err());
    }
}
