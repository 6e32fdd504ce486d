//! Sinks: read the journal by cursor and deliver to the outside world.
//!
//! Guarantees: sinks never write events; the Kafka sink moves its stored
//! cursor only past what Kafka acknowledged (or can never take, said and
//! counted); the fan-out stores none, each client resuming by its own seq.

pub mod kafka;
pub mod websocket;
