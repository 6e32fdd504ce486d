//! The format of an event's record in the `events` table: two times, then
//! the routing header (length-prefixed strings), then the CloudEvent JSON.
//! Readers take the header without parsing the JSON.
//!
//! Guarantees: a record that is too short, or whose lengths point outside
//! it, is `JournalError::Corrupt` with its seq, never a panic.

use bytes::Bytes;

use crate::event::{EventHeader, HeaderRef, PreparedEvent};

use super::{JournalError, JournaledEvent};

/// The two times and the header length.
const RECORD_PREFIX: usize = 20;

pub(super) fn record_time(seq: u64, record: &[u8]) -> Result<u64, JournalError> {
    let bytes: [u8; 8] = record
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| JournalError::Corrupt { seq })?;
    Ok(u64::from_le_bytes(bytes))
}

/// About the length of an event's record (a guess that only sizes a buffer).
pub(super) fn record_len_hint(event: &PreparedEvent) -> usize {
    let header: usize = header_fields(&event.header)
        .iter()
        .map(|f| 4 + f.map_or(0, str::len))
        .sum();
    RECORD_PREFIX + header + event.json_len_without_seq() + 20
}

/// The header's strings in their stored order; `None` is an absent subject.
pub(super) fn header_fields(header: &EventHeader) -> [Option<&str>; 6] {
    [
        Some(header.id.as_str()),
        Some(header.event_type.as_str()),
        Some(header.source.as_str()),
        header.subject.as_deref(),
        Some(header.vendor.as_str()),
        Some(header.account.as_str()),
    ]
}

/// Appends a record up to where its JSON starts.
pub(super) fn encode_record_head(
    out: &mut Vec<u8>,
    journaled_at_ms: u64,
    received_at_ms: u64,
    header: &EventHeader,
) {
    let record_start = out.len();
    out.extend_from_slice(&journaled_at_ms.to_le_bytes());
    out.extend_from_slice(&received_at_ms.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    let start = out.len();
    for field in header_fields(header) {
        match field {
            // Lengths are u32: a vendor's subject can be any length.
            Some(text) => {
                out.extend_from_slice(&(text.len() as u32).to_le_bytes());
                out.extend_from_slice(text.as_bytes());
            }
            None => out.extend_from_slice(&u32::MAX.to_le_bytes()),
        }
    }
    let header_len = (out.len() - start) as u32;
    out[record_start + 16..record_start + 20].copy_from_slice(&header_len.to_le_bytes());
}

pub(super) fn read_u32(seq: u64, bytes: &[u8], at: usize) -> Result<u32, JournalError> {
    let raw: [u8; 4] = bytes
        .get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| JournalError::Corrupt { seq })?;
    Ok(u32::from_le_bytes(raw))
}

/// The header of a record, borrowed from it, and where its JSON starts.
pub(super) fn split_record(
    seq: u64,
    record: &[u8],
) -> Result<(HeaderRef<'_>, usize), JournalError> {
    let header_len = read_u32(seq, record, 16)? as usize;
    let json_start = RECORD_PREFIX
        .checked_add(header_len)
        .filter(|end| *end <= record.len())
        .ok_or_else(|| JournalError::Corrupt { seq })?;
    let header = &record[RECORD_PREFIX..json_start];
    let mut at = 0;
    let mut fields: [Option<&str>; 6] = [None; 6];
    for field in fields.iter_mut() {
        let len = read_u32(seq, header, at)?;
        at += 4;
        if len == u32::MAX {
            continue;
        }
        let end = at + len as usize;
        let text = header
            .get(at..end)
            .and_then(|b| std::str::from_utf8(b).ok())
            .ok_or_else(|| JournalError::Corrupt { seq })?;
        *field = Some(text);
        at = end;
    }
    let [
        Some(id),
        Some(event_type),
        Some(source),
        subject,
        Some(vendor),
        Some(account),
    ] = fields
    else {
        return Err(JournalError::Corrupt { seq });
    };
    Ok((
        HeaderRef {
            id,
            event_type,
            source,
            subject,
            vendor,
            account,
            seq,
        },
        json_start,
    ))
}

pub(super) fn decode_record(seq: u64, record: &[u8]) -> Result<JournaledEvent, JournalError> {
    let (header, json_start) = split_record(seq, record)?;
    decode_split_record(seq, record, &header, json_start)
}

/// As [`decode_record`], for a record [`split_record`] has split already.
pub(super) fn decode_split_record(
    seq: u64,
    record: &[u8],
    header: &HeaderRef<'_>,
    json_start: usize,
) -> Result<JournaledEvent, JournalError> {
    let journaled_at_ms = record_time(seq, record)?;
    let received_at_ms = record_time(seq, record.get(8..).unwrap_or_default())?;
    Ok(JournaledEvent {
        seq,
        journaled_at_ms,
        received_at_ms,
        header: header.to_owned_header(),
        json: Bytes::copy_from_slice(&record[json_start..]),
    })
}
