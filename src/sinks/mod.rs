//! Sinks: read the journal by cursor and deliver to the outside world.

pub mod kafka;
pub mod websocket;
