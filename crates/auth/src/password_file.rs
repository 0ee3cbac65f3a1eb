//! Reading a Mosquitto password file and deciding whether a username and password log in.
//!
//! One `username:hash` entry per line. As the Mosquitto broker reads it:
//!
//! - a line whose first character is `#` is a comment; a line without `:` is ignored (so are
//!   blank lines);
//! - the username is the text before the first `:` and the hash the text up to the next `:`,
//!   each with surrounding whitespace removed (leading `:` characters are skipped);
//! - when a username appears twice, the later line wins.
//!
//! One deliberate difference: where Mosquitto logs an entry whose hash it cannot read and drops
//! it (that user then cannot log in), [`PasswordFile::parse`] refuses the whole file and names
//! the line, so the mistake is seen when the broker starts rather than when the user connects.

use std::collections::HashMap;
use std::path::Path;

use crate::hash::PasswordHash;
use crate::{Error, text};

/// The usernames and password hashes of one password file.
#[derive(Debug, Clone, Default)]
pub struct PasswordFile {
    users: HashMap<String, PasswordHash>,
}

/// The outcome of checking a username and password against a [`PasswordFile`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The user is in the file and the password is theirs.
    Ok,
    /// The user is not in the file. Mosquitto refuses the connection (CONNACK "not
    /// authorised" / reason code 0x86 or 0x87).
    UnknownUser,
    /// The user is in the file but the password is wrong or missing.
    BadPassword,
}

impl Verdict {
    /// Whether the client may log in.
    pub fn is_ok(self) -> bool {
        self == Verdict::Ok
    }
}

impl PasswordFile {
    /// Reads and parses the file at `path`; errors name the file and, for content, the line.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse_bytes(&bytes, &path.display().to_string())
    }

    /// Parses the text of a password file; `origin` names it in errors (a path, or anything
    /// that tells the reader where the text came from).
    pub fn parse(text: &str, origin: &str) -> Result<Self, Error> {
        Self::parse_bytes(text.as_bytes(), origin)
    }

    fn parse_bytes(bytes: &[u8], origin: &str) -> Result<Self, Error> {
        let mut users = HashMap::new();
        for (index, raw) in text::lines(bytes) {
            let line_no = index + 1;
            if raw.first() == Some(&b'#') || !raw.contains(&b':') {
                continue;
            }
            let line = std::str::from_utf8(raw)
                .map_err(|_| Error::syntax(origin, line_no, "the line is not valid UTF-8"))?;
            let Some((username, encoded)) = split_entry(line) else {
                return Err(Error::syntax(
                    origin,
                    line_no,
                    "expected `username:hash` but the hash is missing",
                ));
            };
            if username.is_empty() {
                return Err(Error::syntax(origin, line_no, "the username is empty"));
            }
            let hash = PasswordHash::parse(encoded)
                .map_err(|e| Error::syntax(origin, line_no, format!("user \"{username}\": {e}")))?;
            // Later lines win, as in Mosquitto.
            users.insert(username.to_owned(), hash);
        }
        Ok(PasswordFile { users })
    }

    /// Checks a CONNECT's username and password.
    ///
    /// `password` is `None` when the CONNECT carried no password. Every byte of the password is
    /// hashed; Mosquitto stops at the first zero byte, so a password containing one can only
    /// ever match here if it matched there too, never the other way round.
    ///
    /// The cost is one SHA-512 for `$6$` entries and `iterations` HMAC-SHA512 pairs for `$7$`
    /// entries (about 65 µs at the default 101 on the project's 2-core machine), so a broker should call
    /// this off its event loop or cache successful logins.
    pub fn verify(&self, username: &str, password: Option<&[u8]>) -> Verdict {
        let Some(hash) = self.users.get(username) else {
            return Verdict::UnknownUser;
        };
        match password {
            Some(p) if hash.verify(p) => Verdict::Ok,
            _ => Verdict::BadPassword,
        }
    }

    /// The hash stored for `username`.
    pub fn get(&self, username: &str) -> Option<&PasswordHash> {
        self.users.get(username)
    }

    /// How many users the file holds.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether the file holds no user.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The usernames, in no particular order.
    pub fn usernames(&self) -> impl Iterator<Item = &str> {
        self.users.keys().map(String::as_str)
    }
}

/// Splits an entry as Mosquitto does: skip leading `:`, username up to the next `:`, hash up
/// to the one after; both trimmed of whitespace. `None` when there is no hash field.
pub(crate) fn split_entry(line: &str) -> Option<(&str, &str)> {
    let mut fields = line.split(':').filter(|f| !f.is_empty());
    let username = text::trim(fields.next()?);
    let hash = text::trim(fields.next()?);
    Some((username, hash))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{HashKind, PasswordHash};

    // Made by `mosquitto_passwd` 2.0.11:
    //   mosquitto_passwd -c -b f alice 'correct horse'
    //   mosquitto_passwd -b -H sha512 f bob 's3cr3t!'
    //   mosquitto_passwd -b -I 1000 f carol 'pässwörd'
    //   mosquitto_passwd -b -I 1 f dave x
    const MOSQUITTO_FILE: &str = "\
alice:$7$101$+Bxf5ysPnAdv9vPr$ecwwWxRJxQnGZ8VZ6rqMxPALFtxUiFy/HsTqqSGdrQ+38V0fdYQG7fp2AEDkmg1l+dJehHLlmocOwOyqLKFfXw==
bob:$6$nbor2zKnAGNfnfmL$k2Qrb8aw0qS6V9/2zcj1NwU9DsrwWOslxOUflumkWVSaI7APYRdgGV4i7no+TkT4XkC9A41qi9D8FWkBVNRLow==
carol:$7$1000$/sPSWtKdJpoO0Xx6$XlHliAu/I9NpNmGUEXxih0k5071HkKnyHRULQBUylzAXlv0ji0E0+VpEBFysSd5thAQ4ZBqF5eFYytd4WhFr0A==
dave:$7$1$lSgYmDbt2T1LG0K+$A8KHGJpAcOZeo08b3CDrM8aiHoHLtlz8OOoIS5bLobP4tTHcAhZ2DyEbZ2kw5ybaJoldhkiCt6RPolZhQ6Z8Ng==
";

    #[test]
    fn mosquitto_passwd_vectors_verify() {
        let f = PasswordFile::parse(MOSQUITTO_FILE, "golden").unwrap();
        assert_eq!(f.len(), 4);
        for (user, pw) in [
            ("alice", "correct horse"),
            ("bob", "s3cr3t!"),
            ("carol", "pässwörd"),
            ("dave", "x"),
        ] {
            assert_eq!(f.verify(user, Some(pw.as_bytes())), Verdict::Ok, "{user}");
            assert_eq!(
                f.verify(user, Some(b"wrong")),
                Verdict::BadPassword,
                "{user}"
            );
            assert_eq!(f.verify(user, None), Verdict::BadPassword, "{user}");
        }
        assert_eq!(f.verify("eve", Some(b"x")), Verdict::UnknownUser);
        assert_eq!(
            f.verify("Alice", Some(b"correct horse")),
            Verdict::UnknownUser
        );
    }

    #[test]
    fn vectors_reproduce_from_their_salt() {
        // Hashing the same password with the salt mosquitto_passwd chose gives its line back.
        for (line, pw) in MOSQUITTO_FILE
            .lines()
            .zip(["correct horse", "s3cr3t!", "pässwörd", "x"])
        {
            let (_, encoded) = split_entry(line).unwrap();
            let theirs = PasswordHash::parse(encoded).unwrap();
            let ours = PasswordHash::with_salt(
                theirs.kind(),
                theirs.iterations().unwrap_or(1),
                *theirs.salt(),
                pw.as_bytes(),
            )
            .unwrap();
            assert_eq!(ours.to_string(), encoded);
        }
    }

    #[test]
    fn comments_blank_lines_and_lines_without_colon_are_ignored() {
        let text = "# users\n\n   \nno colon here\n#bob:garbage\nalice:$6$nbor2zKnAGNfnfmL$k2Qrb8aw0qS6V9/2zcj1NwU9DsrwWOslxOUflumkWVSaI7APYRdgGV4i7no+TkT4XkC9A41qi9D8FWkBVNRLow==\n";
        let f = PasswordFile::parse(text, "t").unwrap();
        assert_eq!(f.len(), 1);
        assert!(f.verify("alice", Some(b"s3cr3t!")).is_ok());
    }

    #[test]
    fn whitespace_crlf_and_extra_fields_as_mosquitto() {
        let h = PasswordHash::with_salt(HashKind::Sha512Pbkdf2, 3, [7; 12], b"pw").unwrap();
        let text = format!("  alice \t:  {h}  :ignored\r\n::bob:{h}");
        let f = PasswordFile::parse(&text, "t").unwrap();
        assert!(f.verify("alice", Some(b"pw")).is_ok());
        assert!(f.verify("bob", Some(b"pw")).is_ok());
    }

    #[test]
    fn later_line_wins() {
        let a = PasswordHash::with_salt(HashKind::Sha512, 1, [1; 12], b"first").unwrap();
        let b = PasswordHash::with_salt(HashKind::Sha512, 1, [2; 12], b"second").unwrap();
        let f = PasswordFile::parse(&format!("u:{a}\nu:{b}\n"), "t").unwrap();
        assert_eq!(f.verify("u", Some(b"first")), Verdict::BadPassword);
        assert_eq!(f.verify("u", Some(b"second")), Verdict::Ok);
    }

    #[test]
    fn errors_name_origin_and_line() {
        let err = PasswordFile::parse("# c\nalice:plaintext\n", "/etc/pw").unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("/etc/pw:2: user \"alice\""), "{msg}");
        assert!(msg.contains("tinsel passwd -U"), "{msg}");
        let err = PasswordFile::parse("alice:\n", "f").unwrap_err();
        assert!(err.to_string().starts_with("f:1:"), "{err}");
        let err = PasswordFile::parse("ok\n :$6$x$y\n", "f").unwrap_err();
        assert_eq!(err.to_string(), "f:2: the username is empty");
    }

    #[test]
    fn bad_hash_fields_are_refused() {
        let good = "$7$101$+Bxf5ysPnAdv9vPr$ecwwWxRJxQnGZ8VZ6rqMxPALFtxUiFy/HsTqqSGdrQ+38V0fdYQG7fp2AEDkmg1l+dJehHLlmocOwOyqLKFfXw==";
        assert!(PasswordHash::parse(good).is_ok());
        // Unpadded base64 is accepted as OpenSSL does.
        assert!(PasswordHash::parse(good.trim_end_matches('=')).is_ok());
        for bad in [
            "$7$0$+Bxf5ysPnAdv9vPr$ecwwWxRJxQnGZ8VZ6rqMxPALFtxUiFy/HsTqqSGdrQ+38V0fdYQG7fp2AEDkmg1l+dJehHLlmocOwOyqLKFfXw==",
            "$7$x$+Bxf5ysPnAdv9vPr$ecwwWxRJxQnGZ8VZ6rqMxPALFtxUiFy/HsTqqSGdrQ+38V0fdYQG7fp2AEDkmg1l+dJehHLlmocOwOyqLKFfXw==",
            "$7$101$+Bxf5ysPnAdv$ecwwWxRJxQnGZ8VZ6rqMxPALFtxUiFy/HsTqqSGdrQ+38V0fdYQG7fp2AEDkmg1l+dJehHLlmocOwOyqLKFfXw==",
            "$7$101$+Bxf5ysPnAdv9vPr$ecwwWxRJxQnGZ8VZ6rqMxPALFtxUiFy",
            "$7$101$+Bxf5ysPnAdv9vPr",
            "$5$abc$def",
            "",
        ] {
            assert!(PasswordHash::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn whole_password_bytes_are_hashed() {
        let h = PasswordHash::with_salt(HashKind::Sha512Pbkdf2, 5, [9; 12], b"ab\0cd").unwrap();
        assert!(h.verify(b"ab\0cd"));
        assert!(!h.verify(b"ab"));
        assert!(!h.verify(b"ab\0ce"));
    }

    #[test]
    fn debug_does_not_show_the_hash() {
        let h = PasswordHash::with_salt(HashKind::Sha512Pbkdf2, 5, [9; 12], b"pw").unwrap();
        let shown = format!("{h:?}");
        assert!(!shown.contains(&h.to_string()[10..]), "{shown}");
    }
}
