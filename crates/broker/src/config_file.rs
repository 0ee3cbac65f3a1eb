//! Reading a configuration file: Tinsel's TOML or Mosquitto's format, told apart by
//! content.

use std::path::Path;

use crate::Error;
use crate::config::Config;
use crate::mosquitto_conf::{Warning, looks_like_mosquitto, parse_str};

/// The two file formats `tinsel broker -c FILE` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// Tinsel's own TOML.
    Toml,
    /// Mosquitto's `directive value` lines, read with Mosquitto's meanings.
    Mosquitto,
}

impl Format {
    /// Tells the formats apart by content: text that parses as TOML with only Tinsel's
    /// top-level keys is TOML; text whose every line is a comment or `directive [value]`
    /// is Mosquitto's; anything else is taken as TOML, so that its errors are TOML's.
    pub fn detect(text: &str) -> Format {
        const KEYS: [&str; 9] = [
            "listeners",
            "capture",
            "sys_interval",
            "limits",
            "logging",
            "access",
            "mqtt",
            "persistence",
            "http",
        ];
        if let Ok(table) = text.parse::<toml::Table>() {
            if table.keys().all(|k| KEYS.contains(&k.as_str())) {
                return Format::Toml;
            }
        }
        if looks_like_mosquitto(text) {
            Format::Mosquitto
        } else {
            Format::Toml
        }
    }
}

/// A configuration file as read: the configuration, the format it was in, and what in
/// it Tinsel ignores (each warning names the file and line).
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The effective configuration.
    pub config: Config,
    /// The file's format.
    pub format: Format,
    /// Directives read but ignored, or kept but not acted on yet.
    pub warnings: Vec<Warning>,
}

impl Config {
    /// Reads a configuration file in either format (see [`Format::detect`]), keeping the
    /// warnings for the caller to show.
    pub fn read(path: &Path) -> Result<Loaded, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
        match Format::detect(&text) {
            Format::Mosquitto => {
                let (config, warnings) = parse_str(&text, path)?;
                config.validate()?;
                Ok(Loaded {
                    config,
                    format: Format::Mosquitto,
                    warnings,
                })
            }
            Format::Toml => {
                let config = Config::from_toml_str(&text).map_err(|e| match e {
                    // Name the file once, ahead of the parser's message (which has its own
                    // line/column).
                    Error::Config(msg) => Error::Config(format!("{}: {msg}", path.display())),
                    other => other,
                })?;
                Ok(Loaded {
                    config,
                    format: Format::Toml,
                    warnings: Vec::new(),
                })
            }
        }
    }

    /// Reads a configuration file in either format; its warnings are logged.
    pub fn load(path: &Path) -> Result<Config, Error> {
        let loaded = Config::read(path)?;
        for w in &loaded.warnings {
            tracing::warn!("{w}");
        }
        Ok(loaded.config)
    }
}
