//! WAL file names and headers, and the system identifier in `pg_control`.
//!
//! References: PostgreSQL 15 `src/include/access/xlog_internal.h` (file names, page headers) and
//! `src/include/catalog/pg_control.h` (the control file starts with the system identifier).

use std::fmt;
use std::path::Path;

/// `XLOG_PAGE_MAGIC` of PostgreSQL 15.
pub const XLOG_PAGE_MAGIC_15: u16 = 0xD110;
/// `XLP_LONG_HEADER`: the first page of a segment carries the long header.
const XLP_LONG_HEADER: u16 = 0x0002;

/// The kinds of file PostgreSQL archives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalFileKind {
    /// A 16 MiB (by default) segment: 24 hex digits.
    Segment,
    /// A segment's incomplete copy at a promotion: `<segment>.partial`.
    Partial,
    /// A timeline history file: `<8 hex>.history`.
    History,
    /// A backup history file written by `pg_backup_stop`: `<segment>.<8 hex>.backup`.
    BackupHistory,
}

/// A WAL segment's position: timeline and segment number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegmentName {
    /// Timeline.
    pub timeline: u32,
    /// Segment number (in units of the segment size).
    pub segno: u64,
}

impl SegmentName {
    /// Parses 24 hex digits; `segment_size` gives how many segments make one "log" (the middle part).
    pub fn parse(name: &str, segment_size: u64) -> Option<Self> {
        if name.len() != 24
            || !name
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_lowercase())
        {
            return None;
        }
        let timeline = u32::from_str_radix(&name[..8], 16).ok()?;
        let log = u64::from_str_radix(&name[8..16], 16).ok()?;
        let seg = u64::from_str_radix(&name[16..], 16).ok()?;
        let per_log = segments_per_log(segment_size);
        if seg >= per_log {
            return None;
        }
        Some(Self {
            timeline,
            segno: log * per_log + seg,
        })
    }

    /// The file name.
    pub fn file_name(&self, segment_size: u64) -> String {
        let per_log = segments_per_log(segment_size);
        format!(
            "{:08X}{:08X}{:08X}",
            self.timeline,
            self.segno / per_log,
            self.segno % per_log
        )
    }

    /// The segment holding an LSN on a timeline.
    pub fn of_lsn(timeline: u32, lsn: u64, segment_size: u64) -> Self {
        Self {
            timeline,
            segno: lsn / segment_size,
        }
    }
}

/// `0x100000000 / segment_size`: segments per "xlogid".
fn segments_per_log(segment_size: u64) -> u64 {
    0x1_0000_0000 / segment_size.max(1)
}

/// Classifies a file name given to `push` or `fetch`; `None` for anything PostgreSQL never archives.
pub fn classify(name: &str) -> Option<WalFileKind> {
    let is_upper_hex = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
    };
    if name.len() == 24 && is_upper_hex(name) {
        return Some(WalFileKind::Segment);
    }
    if let Some(base) = name.strip_suffix(".partial") {
        return (base.len() == 24 && is_upper_hex(base)).then_some(WalFileKind::Partial);
    }
    if let Some(tli) = name.strip_suffix(".history") {
        return (tli.len() == 8 && is_upper_hex(tli)).then_some(WalFileKind::History);
    }
    if let Some(rest) = name.strip_suffix(".backup") {
        let (segment, offset) = rest.split_once('.')?;
        return (segment.len() == 24
            && offset.len() == 8
            && is_upper_hex(segment)
            && is_upper_hex(offset))
        .then_some(WalFileKind::BackupHistory);
    }
    None
}

/// What the first page header of a segment says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Timeline of the first page.
    pub timeline: u32,
    /// LSN of the first page.
    pub page_address: u64,
    /// System identifier of the cluster that wrote it.
    pub system_identifier: u64,
    /// Segment size the cluster uses.
    pub segment_size: u32,
}

/// Why a segment's header was refused.
#[derive(Debug, PartialEq, Eq)]
pub struct HeaderError(pub String);

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses the long page header at the start of a segment (`XLogLongPageHeaderData`):
/// magic (u16), info (u16), timeline (u32), page address (u64), remaining length (u32), padding,
/// system identifier (u64 at offset 24), segment size (u32 at 32), block size (u32 at 36).
///
/// # Errors
/// When the bytes are not the start of a PostgreSQL 15 segment.
///
/// # Panics
/// Never: the length is checked first.
pub fn parse_segment_header(bytes: &[u8]) -> Result<SegmentHeader, HeaderError> {
    if bytes.len() < 40 {
        return Err(HeaderError("too short for a WAL page header".to_owned()));
    }
    let u16_at = |at: usize| u16::from_le_bytes(bytes[at..at + 2].try_into().expect("2 bytes"));
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let magic = u16_at(0);
    if magic != XLOG_PAGE_MAGIC_15 {
        return Err(HeaderError(format!(
            "WAL page magic {magic:#06x} is not PostgreSQL 15's ({XLOG_PAGE_MAGIC_15:#06x})"
        )));
    }
    if u16_at(2) & XLP_LONG_HEADER == 0 {
        return Err(HeaderError(
            "the first page has no long header: not the start of a segment".to_owned(),
        ));
    }
    Ok(SegmentHeader {
        timeline: u32_at(4),
        page_address: u64_at(8),
        system_identifier: u64_at(24),
        segment_size: u32_at(32),
    })
}

/// Reads the system identifier from `global/pg_control` (its first 8 bytes).
///
/// # Errors
/// When the file cannot be read.
pub fn read_system_identifier(pgdata: &Path) -> std::io::Result<u64> {
    use std::io::Read as _;
    let mut buf = [0u8; 8];
    std::fs::File::open(pgdata.join("global/pg_control"))?.read_exact(&mut buf)?;
    Ok(u64::from_le_bytes(buf))
}

/// Reads the major version from `PG_VERSION`.
///
/// # Errors
/// When the file cannot be read or parsed.
pub fn read_pg_version(pgdata: &Path) -> std::io::Result<u32> {
    let text = std::fs::read_to_string(pgdata.join("PG_VERSION"))?;
    text.trim().parse().map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("PG_VERSION is {text:?}"),
        )
    })
}

/// Parses an LSN written as `X/Y` (hex).
pub fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.trim().split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

/// Formats an LSN as `X/Y`.
pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEG: u64 = 16 << 20;

    #[test]
    fn names_classify() {
        assert_eq!(
            classify("000000010000000000000001"),
            Some(WalFileKind::Segment)
        );
        assert_eq!(
            classify("000000010000000A000000FF"),
            Some(WalFileKind::Segment)
        );
        assert_eq!(
            classify("000000010000000000000001.partial"),
            Some(WalFileKind::Partial)
        );
        assert_eq!(classify("00000002.history"), Some(WalFileKind::History));
        assert_eq!(
            classify("000000010000000000000002.00000028.backup"),
            Some(WalFileKind::BackupHistory)
        );
        for bad in [
            "",
            "RECOVERYXLOG",
            "00000001000000000000000a",
            "0000000100000000000000011",
            "../x.history",
            "1.history",
        ] {
            assert_eq!(classify(bad), None, "{bad}");
        }
    }

    #[test]
    fn segment_names_round_trip_and_order() {
        let name = SegmentName::parse("000000020000000A000000FF", SEG).unwrap();
        assert_eq!(
            name,
            SegmentName {
                timeline: 2,
                segno: 0xA * 256 + 0xFF
            }
        );
        assert_eq!(name.file_name(SEG), "000000020000000A000000FF");
        let next = SegmentName {
            segno: name.segno + 1,
            ..name
        };
        assert_eq!(next.file_name(SEG), "000000020000000B00000000");
        assert!(
            SegmentName::parse("000000010000000000000100", SEG).is_none(),
            "only 256 segments per log at 16 MiB"
        );
        assert_eq!(
            SegmentName::of_lsn(1, 0x3_0100_0028, SEG).file_name(SEG),
            "000000010000000300000001"
        );
    }

    #[test]
    fn lsns_parse_and_format() {
        assert_eq!(parse_lsn("0/3000028"), Some(0x300_0028));
        assert_eq!(parse_lsn("1A/FF"), Some((0x1A << 32) | 0xFF));
        assert_eq!(format_lsn(0x1_0000_0028), "1/28");
        assert_eq!(parse_lsn("nonsense"), None);
    }

    #[test]
    fn long_page_header_parses() {
        let mut page = vec![0u8; 64];
        page[0..2].copy_from_slice(&XLOG_PAGE_MAGIC_15.to_le_bytes());
        page[2..4].copy_from_slice(&(XLP_LONG_HEADER | 0x0004).to_le_bytes());
        page[4..8].copy_from_slice(&3u32.to_le_bytes());
        page[8..16].copy_from_slice(&(5 * SEG).to_le_bytes());
        page[24..32].copy_from_slice(&7_123_456_789_012_345_678u64.to_le_bytes());
        page[32..36].copy_from_slice(&(16u32 << 20).to_le_bytes());
        let header = parse_segment_header(&page).unwrap();
        assert_eq!(header.system_identifier, 7_123_456_789_012_345_678);
        assert_eq!(
            (header.timeline, header.page_address, header.segment_size),
            (3, 5 * SEG, 16 << 20)
        );
        page[2] = 0;
        assert!(parse_segment_header(&page).is_err());
        page[0] = 0;
        assert!(parse_segment_header(&page).is_err());
    }
}
