//! `callrelay tail`: prints live events from a running relay, one JSON line each.

/// What `callrelay tail` was asked for.
#[derive(Clone, Debug)]
pub struct TailOptions {
    pub url: String,
    pub token: Option<String>,
    pub types: Vec<String>,
    pub vendors: Vec<String>,
    pub since: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum TailError {
    #[error("tail is not implemented yet")]
    NotImplemented,
}

/// Connects, prints events, and reconnects from the last printed seq until interrupted.
pub async fn run(_options: TailOptions) -> Result<(), TailError> {
    Err(TailError::NotImplemented)
}
