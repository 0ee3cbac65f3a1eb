//! Mosquitto's password hashes: `$6$` (salted SHA-512) and `$7$` (PBKDF2-HMAC-SHA512).
//!
//! The encoded forms are
//!
//! ```text
//! $6$SALT$HASH              HASH = SHA-512(password || salt)
//! $7$ITERATIONS$SALT$HASH   HASH = PBKDF2-HMAC-SHA512(password, salt, ITERATIONS, 64 bytes)
//! ```
//!
//! with a 12-byte salt and a 64-byte hash, both in standard base64. `mosquitto_passwd` writes
//! `$7$` with 101 iterations unless told otherwise; Mosquitto 1.6 and earlier wrote `$6$`.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::alphabet::STANDARD;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose};
use rand::RngCore as _;
use sha2::{Digest as _, Sha512};
use subtle::ConstantTimeEq as _;

use crate::Error;

/// Bytes of salt in every hash (Mosquitto refuses any other length).
pub const SALT_LEN: usize = 12;
/// Bytes of hash output: one SHA-512 digest.
pub const HASH_LEN: usize = 64;
/// The iteration count `mosquitto_passwd` uses when `-I` is not given.
pub const DEFAULT_ITERATIONS: u32 = 101;
/// The largest iteration count accepted (Mosquitto reads the count into a C `int`).
pub const MAX_ITERATIONS: u32 = i32::MAX as u32;

/// Decodes with or without trailing `=`, as OpenSSL's base64 reader (Mosquitto's) does.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Which of Mosquitto's two hash schemes a password hash uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashKind {
    /// `$6$`: one round of SHA-512 over the password followed by the salt. Fast, so weak
    /// against guessing; kept for files written by Mosquitto 1.6 and earlier.
    Sha512,
    /// `$7$`: PBKDF2 with HMAC-SHA512. What `mosquitto_passwd` writes by default.
    Sha512Pbkdf2,
}

impl HashKind {
    /// The name `mosquitto_passwd -H` uses: `sha512` or `sha512-pbkdf2`.
    pub fn name(self) -> &'static str {
        match self {
            HashKind::Sha512 => "sha512",
            HashKind::Sha512Pbkdf2 => "sha512-pbkdf2",
        }
    }

    /// The kind named as `mosquitto_passwd -H` names it.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "sha512" => Some(HashKind::Sha512),
            "sha512-pbkdf2" => Some(HashKind::Sha512Pbkdf2),
            _ => None,
        }
    }
}

/// One user's password hash: scheme, iteration count, salt and digest.
///
/// `Display` writes the encoded form that goes after `username:` in a password file, and
/// [`PasswordHash::parse`] reads it back. `Debug` shows only the scheme and iteration count.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash {
    kind: HashKind,
    /// Meaningful for [`HashKind::Sha512Pbkdf2`] only; 1 for [`HashKind::Sha512`].
    iterations: u32,
    salt: [u8; SALT_LEN],
    hash: [u8; HASH_LEN],
}

impl PasswordHash {
    /// Hashes `password` with a fresh random salt.
    ///
    /// `iterations` is used by [`HashKind::Sha512Pbkdf2`] only and must be 1 to
    /// [`MAX_ITERATIONS`].
    pub fn new(kind: HashKind, iterations: u32, password: &[u8]) -> Result<Self, Error> {
        let mut salt = [0u8; SALT_LEN];
        rand::rng().fill_bytes(&mut salt);
        Self::with_salt(kind, iterations, salt, password)
    }

    /// Hashes `password` with the given salt (for tests and reproducible vectors).
    pub fn with_salt(
        kind: HashKind,
        iterations: u32,
        salt: [u8; SALT_LEN],
        password: &[u8],
    ) -> Result<Self, Error> {
        let iterations = match kind {
            HashKind::Sha512 => 1,
            HashKind::Sha512Pbkdf2 => check_iterations(iterations)?,
        };
        let hash = digest(kind, iterations, &salt, password);
        Ok(PasswordHash {
            kind,
            iterations,
            salt,
            hash,
        })
    }

    /// Reads the encoded form, `$6$SALT$HASH` or `$7$ITERATIONS$SALT$HASH`.
    ///
    /// As Mosquitto does, empty fields between `$` signs are skipped, text after the hash field
    /// is ignored, and base64 is accepted with or without padding.
    pub fn parse(encoded: &str) -> Result<Self, Error> {
        let mut fields = encoded.split('$').filter(|f| !f.is_empty());
        let kind = match fields.next() {
            Some("6") => HashKind::Sha512,
            Some("7") => HashKind::Sha512Pbkdf2,
            Some(_) => {
                return Err(Error::InvalidHash(
                    "not a $6$ (sha512) or $7$ (sha512-pbkdf2) hash; a plain-text password \
                     file can be converted with `tinsel passwd -U FILE`",
                ));
            }
            None => return Err(Error::InvalidHash("the hash is empty")),
        };
        let iterations = match kind {
            HashKind::Sha512 => 1,
            HashKind::Sha512Pbkdf2 => {
                let field = fields
                    .next()
                    .ok_or(Error::InvalidHash("the iteration count is missing"))?;
                let n: u32 = field
                    .parse()
                    .map_err(|_| Error::InvalidHash("the iteration count is not a number"))?;
                check_iterations(n)?
            }
        };
        let salt_field = fields
            .next()
            .ok_or(Error::InvalidHash("the salt is missing"))?;
        let salt = decode_exact::<SALT_LEN>(salt_field)
            .ok_or(Error::InvalidHash("the salt is not 12 bytes of base64"))?;
        let hash_field = fields
            .next()
            .ok_or(Error::InvalidHash("the hash is missing"))?;
        let hash = decode_exact::<HASH_LEN>(hash_field)
            .ok_or(Error::InvalidHash("the hash is not 64 bytes of base64"))?;
        Ok(PasswordHash {
            kind,
            iterations,
            salt,
            hash,
        })
    }

    /// Whether `password` is the one this hash was made from. The final comparison takes the
    /// same time wherever the digests differ.
    pub fn verify(&self, password: &[u8]) -> bool {
        let candidate = digest(self.kind, self.iterations, &self.salt, password);
        bool::from(candidate.ct_eq(&self.hash))
    }

    /// The hash scheme.
    pub fn kind(&self) -> HashKind {
        self.kind
    }

    /// The PBKDF2 iteration count, or `None` for [`HashKind::Sha512`].
    pub fn iterations(&self) -> Option<u32> {
        match self.kind {
            HashKind::Sha512 => None,
            HashKind::Sha512Pbkdf2 => Some(self.iterations),
        }
    }

    /// The salt.
    pub fn salt(&self) -> &[u8; SALT_LEN] {
        &self.salt
    }
}

impl fmt::Display for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b64 = &general_purpose::STANDARD;
        match self.kind {
            HashKind::Sha512 => write!(f, "$6${}${}", b64.encode(self.salt), b64.encode(self.hash)),
            HashKind::Sha512Pbkdf2 => write!(
                f,
                "$7${}${}${}",
                self.iterations,
                b64.encode(self.salt),
                b64.encode(self.hash)
            ),
        }
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordHash")
            .field("kind", &self.kind)
            .field("iterations", &self.iterations())
            .finish_non_exhaustive()
    }
}

impl FromStr for PasswordHash {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        PasswordHash::parse(s)
    }
}

fn check_iterations(n: u32) -> Result<u32, Error> {
    if (1..=MAX_ITERATIONS).contains(&n) {
        Ok(n)
    } else {
        Err(Error::InvalidHash(
            "the iteration count must be between 1 and 2147483647",
        ))
    }
}

fn decode_exact<const N: usize>(field: &str) -> Option<[u8; N]> {
    let bytes = LENIENT_BASE64.decode(field).ok()?;
    bytes.try_into().ok()
}

fn digest(kind: HashKind, iterations: u32, salt: &[u8], password: &[u8]) -> [u8; HASH_LEN] {
    let mut out = [0u8; HASH_LEN];
    match kind {
        HashKind::Sha512 => {
            let mut h = Sha512::new();
            h.update(password);
            h.update(salt);
            out.copy_from_slice(&h.finalize());
        }
        HashKind::Sha512Pbkdf2 => {
            pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out);
        }
    }
    out
}
