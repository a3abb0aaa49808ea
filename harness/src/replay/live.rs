//! Replaying the client side of captured sessions against a live server (being written).

use serde::Serialize;

use super::{DissectConfig, Dissection};

/// Where to replay.
#[derive(Debug, Clone)]
pub enum Target {
    Tcp(String),
    Ws(String),
}

impl Target {
    pub fn parse(url: &str) -> Result<Target, String> {
        if let Some(rest) = url.strip_prefix("tcp://") {
            Ok(Target::Tcp(rest.to_string()))
        } else if url.starts_with("ws://") {
            Ok(Target::Ws(url.to_string()))
        } else {
            Err(format!("--against {url:?}: expected tcp://HOST:PORT or ws://HOST:PORT"))
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Pace {
    Fast,
    Speed(f64),
}

#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    pub sessions: Vec<SessionReplay>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SessionReplay {
    pub divergences: Vec<String>,
}

impl ReplayReport {
    pub fn render(&self) -> String {
        String::new()
    }
}

pub fn replay(
    _d: &Dissection,
    _data: &[u8],
    _config: &DissectConfig,
    _target: &Target,
    _pace: Pace,
) -> crate::Result<ReplayReport> {
    Err(crate::Error::Usage("replay --against is not built yet".into()))
}
