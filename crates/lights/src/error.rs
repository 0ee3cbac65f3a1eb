//! What can go wrong running the lights.

/// Why the lights (or their page, or the saboteur) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The scenario file is unreadable or invalid (the user's input).
    #[error("scenario: {0}")]
    Scenario(String),
    /// The broker refused the device or the saboteur (bad credentials, refused
    /// subscription), or the client library failed.
    #[error("MQTT: {0}")]
    Mqtt(#[from] tinsel_client::Error),
    /// The broker refused the subscription to the control topic.
    #[error("the broker refused the subscription to {topic} (reason code {code:#04x})")]
    SubscriptionRefused {
        /// The control topic.
        topic: String,
        /// The SUBACK reason code.
        code: u8,
    },
    /// The control page's HTTP server failed.
    #[error("control page: {0}")]
    Http(std::io::Error),
}

impl Error {
    /// The message without its category prefix.
    pub fn detail(&self) -> String {
        match self {
            Error::Scenario(msg) => msg.clone(),
            other => other.to_string(),
        }
    }
}
