//! Pure vendor modules: bytes and headers in, a verified, normalized
//! [`VendorEvent`](crate::event::VendorEvent) (or a typed error) out.
//!
//! Guarantees: no I/O, no clock read, no panic on any input.

pub mod caresoft;
pub mod sprecord;
pub mod tel4vn;
pub mod voip24h;
pub mod voipex;
