//! The rows of a table's binary `COPY` stream, read as they pass from the source to the target
//! (<https://www.postgresql.org/docs/15/sql-copy.html#id-1.9.3.55.9.4>).
//!
//! Three things need them: the leak scan ([`crate::scan::StreamScan`]), the key sets
//! ([`KeyCollector`]) and the counter caches ([`Counts`]). All read or write the bytes the target
//! stores, on their way there, so none has to read or rewrite the loaded table (the key sets were
//! read back with a query, two scans of the copy and its keys turned into text, on the path from
//! one copy to the next; the counter caches were filled by rebuilding the table).

use std::ops::Range;

use bytes::{BufMut as _, BytesMut};
use rustc_hash::FxHashMap;

use crate::plan::{CountRead, KeyKind, KeyValues};

/// Splits a binary `COPY` stream into rows, however its chunks cut it.
#[derive(Debug)]
pub struct CopyRows {
    /// The number of fields every row has.
    fields: usize,
    /// The bytes of a header or row whose end has not arrived yet.
    pending: Vec<u8>,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Header,
    Rows,
    Done,
}

/// The signature that starts a binary `COPY` stream.
pub const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// Reads a big-endian `i32` at `at`, if the bytes are there.
pub fn i32_at(data: &[u8], at: usize) -> Option<i32> {
    let bytes = data.get(at..at.checked_add(4)?)?;
    Some(i32::from_be_bytes(bytes.try_into().ok()?))
}

impl CopyRows {
    /// The rows of a stream of `fields` columns.
    pub fn new(fields: usize) -> Self {
        Self {
            fields,
            pending: Vec::new(),
            state: State::Header,
        }
    }

    /// Calls `row` with the fields (see [`fields`]) of each row `chunk` completes; keeps the
    /// start of an incomplete one for the next chunk.
    ///
    /// # Errors
    /// When the bytes are not a binary `COPY` stream of rows of that many fields, or what `row`
    /// returns.
    pub fn push(
        &mut self,
        chunk: &[u8],
        row: &mut dyn FnMut(&[u8]) -> Result<(), String>,
    ) -> Result<(), String> {
        if self.pending.is_empty() {
            // PostgreSQL sends whole rows, one per message: nothing is copied.
            let used = self.split(chunk, row)?;
            self.pending.extend_from_slice(&chunk[used..]);
        } else {
            let mut pending = std::mem::take(&mut self.pending);
            pending.extend_from_slice(chunk);
            let used = self.split(&pending, row)?;
            pending.drain(..used);
            self.pending = pending;
        }
        Ok(())
    }

    /// Checks that the stream ended where it should.
    ///
    /// # Errors
    /// When it stopped before its end.
    pub fn finish(&self) -> Result<(), String> {
        if self.state == State::Done && self.pending.is_empty() {
            Ok(())
        } else {
            Err("the COPY data ended in the middle of a row".to_owned())
        }
    }

    /// Hands the complete header and rows at the start of `data` on; returns their length.
    fn split(
        &mut self,
        data: &[u8],
        row: &mut dyn FnMut(&[u8]) -> Result<(), String>,
    ) -> Result<usize, String> {
        let mut at = 0;
        loop {
            match self.state {
                State::Header => {
                    let Some(extension) = i32_at(data, at + SIGNATURE.len() + 4) else {
                        return Ok(at);
                    };
                    if !data[at..].starts_with(SIGNATURE) {
                        return Err("unexpected COPY data (no binary signature)".to_owned());
                    }
                    let length = SIGNATURE.len() + 8 + usize::try_from(extension).unwrap_or(0);
                    if data.len() - at < length {
                        return Ok(at);
                    }
                    at += length;
                    self.state = State::Rows;
                }
                State::Rows => {
                    let Some(count) = data.get(at..at + 2) else {
                        return Ok(at);
                    };
                    let count = i16::from_be_bytes([count[0], count[1]]);
                    if count == -1 {
                        at += 2;
                        self.state = State::Done;
                        continue;
                    }
                    if usize::try_from(count).ok() != Some(self.fields) {
                        return Err(format!(
                            "a row of {count} fields in the COPY data of {} columns",
                            self.fields
                        ));
                    }
                    let Some(end) = row_end(data, at + 2, self.fields) else {
                        return Ok(at);
                    };
                    row(&data[at + 2..end])?;
                    at = end;
                }
                State::Done => {
                    return if at == data.len() {
                        Ok(at)
                    } else {
                        Err("COPY data after its end".to_owned())
                    };
                }
            }
        }
    }
}

/// Where the row whose fields start at `at` ends, if all of it is in `data`.
fn row_end(data: &[u8], mut at: usize, fields: usize) -> Option<usize> {
    for _ in 0..fields {
        let length = i32_at(data, at)?;
        at += 4 + usize::try_from(length).unwrap_or(0);
    }
    (at <= data.len()).then_some(at)
}

/// The values of a complete row that [`CopyRows`] handed on, in order; `None` for NULL.
pub fn fields(mut row: &[u8]) -> impl Iterator<Item = Option<&[u8]>> {
    std::iter::from_fn(move || {
        let length = i32_at(row, 0)?;
        let value = usize::try_from(length).ok().map(|n| &row[4..4 + n]);
        row = &row[4 + value.map_or(0, <[u8]>::len)..];
        Some(value)
    })
}

/// The keys of a key set, collected from its table's stream in the form the keyed SELECTs of the
/// tables referring to it take them ([`KeyValues`]).
#[derive(Debug)]
pub struct KeyCollector {
    /// The key column's position in the copy.
    column: usize,
    kind: KeyKind,
    /// The most bytes its query text may take.
    limit: usize,
    /// `None` once past `limit`.
    keys: Option<Collected>,
}

/// Keys collected so far.
#[derive(Debug)]
enum Collected {
    /// Integer keys, written as bits or as an array once all are known.
    Integers(Vec<i64>),
    /// Other keys: the text of an array constant, without its closing brace.
    Text(String),
}

impl KeyCollector {
    /// Collects the values of the copy's column number `column`, of `kind`, in at most `limit`
    /// bytes of query text.
    pub fn new(column: usize, kind: KeyKind, limit: usize) -> Self {
        let keys = match kind {
            KeyKind::Integer => Collected::Integers(Vec::new()),
            KeyKind::Text | KeyKind::Uuid => Collected::Text("{".to_owned()),
        };
        Self {
            column,
            kind,
            limit,
            keys: Some(keys),
        }
    }

    /// Adds the key of one row (none if it is NULL).
    ///
    /// # Errors
    /// When the value is not one of the key's type.
    pub fn row(&mut self, row: &[u8]) -> Result<(), String> {
        let Some(keys) = &mut self.keys else {
            return Ok(());
        };
        let Some(Some(value)) = fields(row).nth(self.column) else {
            return Ok(());
        };
        let malformed = || format!("a malformed {:?} key in the COPY data", self.kind);
        let held = match keys {
            Collected::Integers(integers) => {
                let integer = if let Ok(two) = <[u8; 2]>::try_from(value) {
                    i16::from_be_bytes(two).into()
                } else if let Ok(four) = <[u8; 4]>::try_from(value) {
                    i32::from_be_bytes(four).into()
                } else {
                    <[u8; 8]>::try_from(value)
                        .map(i64::from_be_bytes)
                        .map_err(|_| malformed())?
                };
                integers.push(integer);
                integers.len() * std::mem::size_of::<i64>()
            }
            Collected::Text(text) => {
                if text.len() > 1 {
                    text.push(',');
                }
                if self.kind == KeyKind::Uuid {
                    let hex = hex::encode(value);
                    if hex.len() != 32 {
                        return Err(malformed());
                    }
                    for (i, piece) in [0..8, 8..12, 12..16, 16..20, 20..32]
                        .into_iter()
                        .enumerate()
                    {
                        if i > 0 {
                            text.push('-');
                        }
                        text.push_str(&hex[piece]);
                    }
                } else {
                    let value = std::str::from_utf8(value).map_err(|_| malformed())?;
                    text.push('"');
                    if value.contains(['"', '\\']) {
                        for c in value.chars() {
                            if matches!(c, '"' | '\\') {
                                text.push('\\');
                            }
                            text.push(c);
                        }
                    } else {
                        text.push_str(value);
                    }
                    text.push('"');
                }
                text.len()
            }
        };
        if held > self.limit {
            self.keys = None;
        }
        Ok(())
    }

    /// The keys; `None` when they would take more than the limit.
    pub fn finish(self) -> Option<KeyValues> {
        match self.keys? {
            Collected::Integers(integers) => KeyValues::of_integers(&integers, self.limit),
            Collected::Text(mut text) => {
                text.push('}');
                (text.len() <= self.limit).then_some(KeyValues::Array(text))
            }
        }
    }
}

/// Per key, as its bytes in the stream: the counts' fields, each its length and bytes.
type CountsByKey = FxHashMap<Box<[u8]>, Box<[u8]>>;

/// The counter caches of a table, counted on the target in the copies of the tables they count
/// (loaded first) and written into the table's rows as they stream into its copy, in place of the
/// NULL its SELECT gives them ([`crate::plan::TablePlan::count_reads`]).
#[derive(Debug)]
pub struct Counts {
    /// Per count read: the position of its key in the table's rows, the widths of its counts, and
    /// per key (its bytes in the stream) the counts' fields, each its length and bytes as in the
    /// stream.
    reads: Vec<(usize, Vec<usize>, CountsByKey)>,
    /// Per column of the table: for a counter cache, its count read, where its field starts in
    /// that read's fields, and its width.
    columns: Vec<Option<(usize, usize, usize)>>,
    /// Roughly the bytes held, kept under `limit`.
    held: usize,
    limit: usize,
    /// Where each field (its length, then its bytes) of the row being written is, for
    /// [`Self::write_row`].
    spans: Vec<Range<usize>>,
}

impl Counts {
    /// Empty counts for a table of `fields` columns, filled by `reads`, in at most about
    /// `limit` bytes.
    pub fn new(fields: usize, reads: &[CountRead], limit: usize) -> Self {
        let mut columns = vec![None; fields];
        for (r, read) in reads.iter().enumerate() {
            let mut offset = 0;
            for &(position, width) in &read.counters {
                columns[position] = Some((r, offset, width));
                offset += 4 + width;
            }
        }
        Self {
            reads: reads
                .iter()
                .map(|r| {
                    let widths = r.counters.iter().map(|&(_, width)| width).collect();
                    (r.key, widths, CountsByKey::default())
                })
                .collect(),
            columns,
            held: 0,
            limit,
            spans: Vec::with_capacity(fields),
        }
    }

    /// Adds a row of count read `read`'s stream: a key and its counts. `false` once the counts
    /// take more than the limit: the table's counter caches are then counted once it is loaded,
    /// by rebuilding it.
    ///
    /// # Errors
    /// When the row does not hold a count of each counter's width.
    pub fn add(&mut self, read: usize, row: &[u8]) -> Result<bool, String> {
        let mut values = fields(row);
        let Some(Some(key)) = values.next() else {
            // The rows that refer to nothing count for no row of the table.
            return Ok(true);
        };
        let (_, widths, counted) = &mut self.reads[read];
        let mut counts = Vec::new();
        for (&expected, value) in widths.iter().zip(values) {
            match value {
                Some(bytes) if bytes.len() == expected => {
                    counts.extend_from_slice(&i32::try_from(expected).unwrap_or(0).to_be_bytes());
                    counts.extend_from_slice(bytes);
                }
                _ => return Err("a count of the wrong type in the counted copy".to_owned()),
            }
        }
        if counts.len() != widths.iter().map(|w| 4 + w).sum::<usize>() {
            return Err("a count missing in the counted copy".to_owned());
        }
        self.held += key.len() + counts.len() + 64;
        counted.insert(key.into(), counts.into());
        Ok(self.held <= self.limit)
    }

    /// Appends `row` to `out` as the copy stores it: its field count, then its fields, with the
    /// counts in place of the counter caches' NULLs (0 for a key nothing counts).
    pub fn write_row(&mut self, row: &[u8], out: &mut BytesMut) {
        self.spans.clear();
        let mut at = 0;
        while let Some(length) = i32_at(row, at) {
            let end = at + 4 + usize::try_from(length).unwrap_or(0);
            self.spans.push(at..end);
            at = end;
        }
        out.put_i16(i16::try_from(self.columns.len()).unwrap_or(i16::MAX));
        // The fields between counter caches go on as they are, in one piece each.
        let mut copied = 0;
        for (span, column) in self.spans.iter().zip(&self.columns) {
            let Some((r, offset, width)) = column else {
                continue;
            };
            out.extend_from_slice(&row[copied..span.start]);
            copied = span.end;
            let (key, _, counted) = &self.reads[*r];
            let key = &self.spans[*key];
            // NULL (length -1) counts for nothing.
            let key = (i32_at(row, key.start) >= Some(0)).then(|| &row[key.start + 4..key.end]);
            if let Some(counts) = key.and_then(|k| counted.get(k)) {
                out.extend_from_slice(&counts[*offset..offset + 4 + width]);
            } else {
                out.put_i32(i32::try_from(*width).unwrap_or(0));
                out.put_bytes(0, *width);
            }
        }
        out.extend_from_slice(&row[copied..]);
    }

    /// The start of a binary `COPY` stream: the signature, no flags, no header extension.
    pub fn header(out: &mut BytesMut) {
        out.extend_from_slice(SIGNATURE);
        out.put_u32(0);
        out.put_u32(0);
    }

    /// The end of a binary `COPY` stream.
    pub fn trailer(out: &mut BytesMut) {
        out.put_i16(-1);
    }
}

#[cfg(test)]
/// Binary `COPY` streams for the tests of the modules that read them.
pub mod tests {
    use super::*;

    /// A binary COPY stream of `rows` (a header with an extension, the rows, the trailer).
    ///
    /// # Panics
    /// If a row has more fields than a stream can hold.
    pub fn stream(rows: &[Vec<Option<Vec<u8>>>]) -> Vec<u8> {
        let mut out = SIGNATURE.to_vec();
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&4u32.to_be_bytes());
        out.extend_from_slice(b"ext!");
        for row in rows {
            out.extend_from_slice(&i16::try_from(row.len()).unwrap().to_be_bytes());
            for value in row {
                field(&mut out, value.as_deref());
            }
        }
        out.extend_from_slice(&(-1i16).to_be_bytes());
        out
    }

    /// A field or an array element: its length (-1 for NULL), then its bytes.
    ///
    /// # Panics
    /// If the value is longer than a field can be.
    pub fn field(out: &mut Vec<u8>, value: Option<&[u8]>) {
        match value {
            Some(bytes) => {
                out.extend_from_slice(&i32::try_from(bytes.len()).unwrap().to_be_bytes());
                out.extend_from_slice(bytes);
            }
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }

    /// Every row of `bytes`, pushed in chunks of `size`, as lists of fields.
    fn rows(
        bytes: &[u8],
        fields_per_row: usize,
        size: usize,
    ) -> Result<Vec<Vec<Option<Vec<u8>>>>, String> {
        let mut rows = CopyRows::new(fields_per_row);
        let mut out = Vec::new();
        for chunk in bytes.chunks(size) {
            rows.push(chunk, &mut |row| {
                out.push(fields(row).map(|f| f.map(<[u8]>::to_vec)).collect());
                Ok(())
            })?;
        }
        rows.finish()?;
        Ok(out)
    }

    #[test]
    fn rows_arrive_whole_in_any_chunking() {
        let expected = vec![
            vec![
                Some(7i32.to_be_bytes().to_vec()),
                None,
                Some(b"text".to_vec()),
            ],
            vec![None, Some(Vec::new()), Some(b"more".to_vec())],
        ];
        let bytes = stream(&expected);
        for size in [1, 3, 7, 64, bytes.len()] {
            assert_eq!(rows(&bytes, 3, size).unwrap(), expected, "chunks of {size}");
        }
        assert_eq!(rows(&stream(&[]), 3, 5).unwrap(), Vec::<Vec<_>>::new());
    }

    #[test]
    fn a_stream_that_is_not_the_tables_is_an_error() {
        assert!(rows(b"not binary copy data at all", 2, 100).is_err());
        // A row of another shape.
        assert!(rows(&stream(&[vec![Some(b"a".to_vec())]]), 2, 100).is_err());
        // Cut short: an error once the stream has ended.
        let whole = stream(&[vec![Some(b"1".to_vec()), Some(b"a".to_vec())]]);
        assert!(rows(&whole[..whole.len() - 3], 2, 100).is_err());
        // Bytes after the end.
        let mut longer = whole.clone();
        longer.push(0);
        assert!(rows(&longer, 2, 100).is_err());
        // What the reader of a row returns stops the stream.
        let mut failing = CopyRows::new(2);
        let err = failing
            .push(&whole, &mut |_| Err("refused".to_owned()))
            .unwrap_err();
        assert_eq!(err, "refused");
    }

    fn keys(kind: KeyKind, values: &[Option<Vec<u8>>]) -> Option<KeyValues> {
        let mut keys = KeyCollector::new(1, kind, 1 << 20);
        for value in values {
            let mut row = Vec::new();
            field(&mut row, Some(b"other column"));
            field(&mut row, value.as_deref());
            keys.row(&row).unwrap();
        }
        keys.finish()
    }

    fn array(text: &str) -> KeyValues {
        KeyValues::Array(text.to_owned())
    }

    #[test]
    fn keys_are_written_as_postgresql_reads_an_array() {
        assert_eq!(
            keys(
                KeyKind::Integer,
                &[
                    Some(7i32.to_be_bytes().to_vec()),
                    None,
                    Some((-3i16).to_be_bytes().to_vec()),
                    Some(i64::MAX.to_be_bytes().to_vec()),
                ]
            )
            .unwrap(),
            array("{7,-3,9223372036854775807}")
        );
        assert_eq!(keys(KeyKind::Integer, &[None]).unwrap(), array("{}"));
        assert_eq!(
            keys(
                KeyKind::Text,
                &[
                    Some(b"plain".to_vec()),
                    Some(br#"a "quoted" \ one, {x}"#.to_vec()),
                    Some(Vec::new())
                ]
            )
            .unwrap(),
            array(r#"{"plain","a \"quoted\" \\ one, {x}",""}"#)
        );
        assert_eq!(
            keys(KeyKind::Uuid, &[Some((0u8..16).collect())]).unwrap(),
            array("{00010203-0405-0607-0809-0a0b0c0d0e0f}")
        );
        let mut wrong = KeyCollector::new(0, KeyKind::Integer, 1 << 20);
        let mut row = Vec::new();
        field(&mut row, Some(b"abc"));
        assert!(wrong.row(&row).is_err());
    }

    #[test]
    fn counts_take_the_place_of_the_counter_caches() {
        // A table (id, a, n, m) whose n and m count two tables by id.
        let reads = [
            CountRead {
                query: String::new(),
                key: 0,
                counters: vec![(2, 4)],
            },
            CountRead {
                query: String::new(),
                key: 0,
                counters: vec![(3, 8)],
            },
        ];
        let mut counts = Counts::new(4, &reads, 1 << 20);
        let row = |values: &[Option<&[u8]>]| {
            let mut row = Vec::new();
            for value in values {
                field(&mut row, *value);
            }
            row
        };
        let id = |n: i32| n.to_be_bytes().to_vec();
        assert!(
            counts
                .add(0, &row(&[Some(&id(1)), Some(&3i32.to_be_bytes())]))
                .unwrap()
        );
        assert!(
            counts
                .add(1, &row(&[Some(&id(2)), Some(&5i64.to_be_bytes())]))
                .unwrap()
        );
        // Rows that refer to nothing count for nothing.
        assert!(
            counts
                .add(0, &row(&[None, Some(&9i32.to_be_bytes())]))
                .unwrap()
        );
        assert!(counts.add(0, &row(&[Some(&id(3)), Some(&[0, 1])])).is_err());

        let mut out = BytesMut::new();
        Counts::header(&mut out);
        for n in 1..=3 {
            counts.write_row(&row(&[Some(&id(n)), Some(b"x"), None, None]), &mut out);
        }
        counts.write_row(&row(&[None, None, None, None]), &mut out);
        Counts::trailer(&mut out);
        let four = |n: i32| Some(n.to_be_bytes().to_vec());
        let eight = |n: i64| Some(n.to_be_bytes().to_vec());
        assert_eq!(
            rows(&out, 4, 5).unwrap(),
            [
                vec![four(1), Some(b"x".to_vec()), four(3), eight(0)],
                vec![four(2), Some(b"x".to_vec()), four(0), eight(5)],
                vec![four(3), Some(b"x".to_vec()), four(0), eight(0)],
                vec![None, None, four(0), eight(0)],
            ]
        );
    }

    #[test]
    fn counts_past_the_limit_are_not_kept() {
        let reads = [CountRead {
            query: String::new(),
            key: 0,
            counters: vec![(1, 4)],
        }];
        let row = |n: i32| {
            let mut row = Vec::new();
            field(&mut row, Some(&n.to_be_bytes()));
            field(&mut row, Some(&1i32.to_be_bytes()));
            row
        };
        let mut counts = Counts::new(2, &reads, 1000);
        let kept: Vec<bool> = (0..20).map(|n| counts.add(0, &row(n)).unwrap()).collect();
        assert!(kept[0] && !kept[19], "{kept:?}");
        // 0: nothing is ever kept.
        assert!(!Counts::new(2, &reads, 0).add(0, &row(1)).unwrap());
    }

    #[test]
    fn keys_past_the_limit_are_not_kept() {
        let collect = |limit: usize, keys: i32| {
            let mut collector = KeyCollector::new(0, KeyKind::Integer, limit);
            for n in 0..keys {
                let mut row = Vec::new();
                field(&mut row, Some(&(n * 1000).to_be_bytes()));
                collector.row(&row).unwrap();
            }
            collector.finish()
        };
        assert_eq!(collect(100, 3), Some(array("{0,1000,2000}")));
        // 100 keys take 800 bytes of memory.
        assert_eq!(collect(100, 100), None);
        assert_eq!(collect(0, 1), None);
        assert_eq!(collect(0, 0), None);
        assert_eq!(collect(2, 0), Some(array("{}")));
    }
}
