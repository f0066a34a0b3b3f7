//! Page headers of the Parquet column chunks a unit will decode, checked before the decoder sees
//! them: a header decides how much the decoder allocates (a dictionary page's value count, a
//! page's uncompressed size), so a small hostile file could otherwise claim gigabytes and abort
//! the process. Every page of every projected column chunk of the row group is walked; a header
//! that lies, or sizes past the limits below, is an input error naming the file, the column and
//! the row group.
//!
//! The headers are Thrift compact-protocol structs (`PageHeader` of parquet.thrift); this reads
//! the fields it checks and skips the rest, with a bound on the bytes and the nesting read.

use std::io::Read;

use parquet::file::metadata::RowGroupMetaData;

/// The largest uncompressed page rollproof decodes (writers use 1 MiB by default).
pub(crate) const MAX_PAGE_BYTES: i64 = 128 << 20;
/// The largest dictionary, in values.
pub(crate) const MAX_DICTIONARY_VALUES: i64 = 16 << 20;
/// The most one unit may hold decoded at once: every projected column's dictionary page and
/// largest data page together.
pub(crate) const MAX_UNIT_BYTES: i64 = 384 << 20;
/// A page header is a few dozen bytes; statistics can make it longer, not this long.
const MAX_HEADER_BYTES: u64 = 1 << 20;
const MAX_NESTING: usize = 16;

/// What is checked of one page header.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PageHeader {
    page_type: i32,
    uncompressed: i32,
    compressed: i32,
    /// Data pages (v1 and v2) and dictionary pages.
    num_values: Option<i32>,
    /// Data pages v2.
    num_rows: Option<i32>,
    /// Bytes of the header itself.
    header_len: u64,
}

const DATA_PAGE: i32 = 0;
const INDEX_PAGE: i32 = 1;
const DICTIONARY_PAGE: i32 = 2;
const DATA_PAGE_V2: i32 = 3;

const T_I32: u8 = 5;
const T_STRUCT: u8 = 12;

/// What reads one field of a struct: `(reader, field id, compact type, depth)`.
type FieldFn<'f, R> = dyn FnMut(&mut Compact<R>, i16, u8, usize) -> Result<(), String> + 'f;

/// A Thrift compact-protocol reader over at most [`MAX_HEADER_BYTES`].
struct Compact<R: Read> {
    inner: R,
    read: u64,
}

impl<R: Read> Compact<R> {
    fn byte(&mut self) -> Result<u8, String> {
        if self.read >= MAX_HEADER_BYTES {
            return Err(format!(
                "a page header longer than {MAX_HEADER_BYTES} bytes"
            ));
        }
        let mut b = [0u8; 1];
        self.inner
            .read_exact(&mut b)
            .map_err(|e| format!("a page header cut short ({e})"))?;
        self.read += 1;
        Ok(b[0])
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.byte()?;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("a varint longer than 10 bytes in a page header".to_string())
    }

    fn zigzag(&mut self) -> Result<i64, String> {
        let v = self.varint()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    fn i32(&mut self) -> Result<i32, String> {
        let v = self.zigzag()?;
        i32::try_from(v).map_err(|_| format!("{v} where a page header has a 32-bit integer"))
    }

    fn skip_bytes(&mut self, n: u64) -> Result<(), String> {
        if n > MAX_HEADER_BYTES {
            return Err(format!("a page header field of {n} bytes"));
        }
        for _ in 0..n {
            self.byte()?;
        }
        Ok(())
    }

    /// Skips one element of a list, set or map. A boolean element is a byte of its own (a
    /// boolean field's value lives in its field header); so every element reads at least one
    /// byte, and [`MAX_HEADER_BYTES`] bounds the work however many elements a header claims.
    fn skip_element(&mut self, t: u8, depth: usize) -> Result<(), String> {
        match t {
            1 | 2 => self.skip_bytes(1),
            _ => self.skip(t, depth),
        }
    }

    /// Skips one field value of compact type `t`.
    fn skip(&mut self, t: u8, depth: usize) -> Result<(), String> {
        if depth > MAX_NESTING {
            return Err("a page header nested too deep".to_string());
        }
        match t {
            1 | 2 => Ok(()),
            3 => self.skip_bytes(1),
            4..=6 => self.varint().map(|_| ()),
            7 => self.skip_bytes(8),
            8 => {
                let n = self.varint()?;
                self.skip_bytes(n)
            }
            9 | 10 => {
                let h = self.byte()?;
                let n = match h >> 4 {
                    15 => self.varint()?,
                    n => u64::from(n),
                };
                for _ in 0..n {
                    self.skip_element(h & 0x0f, depth + 1)?;
                }
                Ok(())
            }
            11 => {
                let n = self.varint()?;
                if n > 0 {
                    let kv = self.byte()?;
                    for _ in 0..n {
                        self.skip_element(kv >> 4, depth + 1)?;
                        self.skip_element(kv & 0x0f, depth + 1)?;
                    }
                }
                Ok(())
            }
            T_STRUCT => {
                let mut nothing = |c: &mut Self, _: i16, t: u8, d: usize| c.skip(t, d);
                self.fields(depth + 1, &mut nothing)
            }
            other => Err(format!("an unknown Thrift type {other} in a page header")),
        }
    }

    /// Reads the fields of a struct; `field(self, id, type, depth)` must consume each value
    /// (calling [`Compact::skip`] for the ones it does not read).
    fn fields(&mut self, depth: usize, field: &mut FieldFn<'_, R>) -> Result<(), String> {
        if depth > MAX_NESTING {
            return Err("a page header nested too deep".to_string());
        }
        let mut last: i16 = 0;
        loop {
            let h = self.byte()?;
            let t = h & 0x0f;
            if t == 0 {
                return Ok(());
            }
            let id = match h >> 4 {
                0 => i16::try_from(self.zigzag()?)
                    .map_err(|_| "a field id out of range in a page header".to_string())?,
                delta => last.saturating_add(i16::from(delta)),
            };
            last = id;
            field(self, id, t, depth)?;
        }
    }
}

/// Reads one `PageHeader`.
pub(crate) fn read_header(r: impl Read) -> Result<PageHeader, String> {
    let mut c = Compact { inner: r, read: 0 };
    let mut h = PageHeader::default();
    c.fields(0, &mut |c, id, t, d| match (id, t) {
        (1, T_I32) => c.i32().map(|v| h.page_type = v),
        (2, T_I32) => c.i32().map(|v| h.uncompressed = v),
        (3, T_I32) => c.i32().map(|v| h.compressed = v),
        // data_page_header and dictionary_page_header: num_values is field 1.
        (5, T_STRUCT) | (7, T_STRUCT) => c.fields(d + 1, &mut |c, id, t, d| match (id, t) {
            (1, T_I32) => c.i32().map(|v| h.num_values = Some(v)),
            _ => c.skip(t, d),
        }),
        // data_page_header_v2: num_values 1, num_rows 3.
        (8, T_STRUCT) => c.fields(d + 1, &mut |c, id, t, d| match (id, t) {
            (1, T_I32) => c.i32().map(|v| h.num_values = Some(v)),
            (3, T_I32) => c.i32().map(|v| h.num_rows = Some(v)),
            _ => c.skip(t, d),
        }),
        _ => c.skip(t, d),
    })?;
    h.header_len = c.read;
    Ok(h)
}

/// One column chunk to walk: where it is, and what its pages may claim.
pub(crate) struct Chunk {
    pub(crate) column: String,
    pub(crate) start: u64,
    pub(crate) len: u64,
    /// Rows of the row group; a flat column's data page has at most this many values.
    pub(crate) rows: i64,
    pub(crate) flat: bool,
}

/// The projected column chunks of row group `rg` (`projection`: root column indices).
pub(crate) fn chunks(rg: &RowGroupMetaData, projection: &[usize]) -> Vec<Chunk> {
    rg.columns()
        .iter()
        .enumerate()
        .filter(|(leaf, _)| projection.contains(&rg.schema_descr().get_column_root_idx(*leaf)))
        .map(|(_, c)| {
            let (start, len) = c.byte_range();
            Chunk {
                column: c.column_descr().path().string(),
                start,
                len,
                rows: rg.num_rows(),
                flat: c.column_descr().max_rep_level() == 0,
            }
        })
        .collect()
}

/// Reads the header at `at` from bytes that start at file offset `base`.
pub(crate) fn header_in(bytes: &[u8], base: u64, at: u64) -> Result<PageHeader, String> {
    let from = at
        .checked_sub(base)
        .and_then(|o| usize::try_from(o).ok())
        .filter(|o| *o <= bytes.len())
        .ok_or_else(|| "a page header outside its column chunk".to_string())?;
    read_header(&bytes[from..])
}

/// Reads the header at file offset `at` of a local file, by positioned reads.
pub(crate) fn header_at_file(file: &std::fs::File, at: u64) -> Result<PageHeader, String> {
    struct At<'a> {
        file: &'a std::fs::File,
        pos: u64,
    }
    impl Read for At<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            use std::os::unix::fs::FileExt;
            let n = self.file.read_at(buf, self.pos)?;
            self.pos += n as u64;
            Ok(n)
        }
    }
    read_header(std::io::BufReader::with_capacity(256, At { file, pos: at }))
}

/// Walks the pages of `chunk`, reading each header with `header_at(offset)`; returns the bytes
/// the chunk needs decoded at once (its dictionary and its largest page).
pub(crate) fn check_chunk(
    chunk: &Chunk,
    mut header_at: impl FnMut(u64) -> Result<PageHeader, String>,
) -> Result<i64, String> {
    let end = chunk.start.saturating_add(chunk.len);
    let mut at = chunk.start;
    let (mut dictionary, mut largest) = (0i64, 0i64);
    while at < end {
        let h = header_at(at)?;
        let size = |v: i32, what: &str| -> Result<i64, String> {
            if v < 0 {
                return Err(format!("a page with a negative {what} ({v})"));
            }
            Ok(i64::from(v))
        };
        let compressed = size(h.compressed, "compressed size")?;
        let uncompressed = size(h.uncompressed, "uncompressed size")?;
        if uncompressed > MAX_PAGE_BYTES {
            return Err(format!(
                "a page of {uncompressed} bytes uncompressed (the limit is {MAX_PAGE_BYTES})"
            ));
        }
        let values = h.num_values.map(i64::from);
        match h.page_type {
            DICTIONARY_PAGE => {
                let n = values.unwrap_or(0);
                // Every dictionary value takes at least one byte of the page.
                if n < 0 || n > uncompressed.max(1) || n > MAX_DICTIONARY_VALUES {
                    return Err(format!(
                        "a dictionary page claiming {n} values in {uncompressed} bytes (the limit is {MAX_DICTIONARY_VALUES} values)"
                    ));
                }
                dictionary += uncompressed;
            }
            DATA_PAGE | DATA_PAGE_V2 => {
                let n = values.unwrap_or(0);
                let rows = h.num_rows.map(i64::from).unwrap_or(n);
                if n < 0 || rows < 0 || (chunk.flat && (n > chunk.rows || rows > chunk.rows)) {
                    return Err(format!(
                        "a data page claiming {n} values in a row group of {} rows",
                        chunk.rows
                    ));
                }
                largest = largest.max(uncompressed);
            }
            INDEX_PAGE => {}
            other => return Err(format!("a page of unknown type {other}")),
        }
        at = at
            .checked_add(h.header_len)
            .and_then(|a| a.checked_add(compressed as u64))
            .filter(|a| *a <= end)
            .ok_or_else(|| "a page running past the end of its column chunk".to_string())?;
    }
    Ok(dictionary + largest)
}

/// Checks every projected chunk of a unit; `header_at` reads the header at a file offset.
pub(crate) fn check_unit<'a>(
    chunks: impl IntoIterator<Item = &'a Chunk>,
    mut header_at: impl FnMut(u64) -> Result<PageHeader, String>,
) -> Result<(), (String, String)> {
    let mut total = 0i64;
    for chunk in chunks {
        let need = check_chunk(chunk, &mut header_at).map_err(|e| (chunk.column.clone(), e))?;
        total = total.saturating_add(need);
        if total > MAX_UNIT_BYTES {
            return Err((
                chunk.column.clone(),
                format!(
                    "pages needing {total} bytes decoded at once (the limit is {MAX_UNIT_BYTES})"
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A compact-protocol PageHeader: type, sizes, and a dictionary or data page header.
    fn header(page_type: i32, uncompressed: i32, compressed: i32, values: i32) -> Vec<u8> {
        fn zz(v: i64) -> Vec<u8> {
            let mut u = ((v << 1) ^ (v >> 63)) as u64;
            let mut out = Vec::new();
            loop {
                let b = (u & 0x7f) as u8;
                u >>= 7;
                if u == 0 {
                    out.push(b);
                    return out;
                }
                out.push(b | 0x80);
            }
        }
        let mut h = vec![0x15];
        h.extend(zz(page_type.into()));
        h.push(0x15);
        h.extend(zz(uncompressed.into()));
        h.push(0x15);
        h.extend(zz(compressed.into()));
        // Field 5 (data page) or 7 (dictionary page), a struct: delta from 3.
        h.push(if page_type == DICTIONARY_PAGE {
            0x4c
        } else {
            0x2c
        });
        h.push(0x15);
        h.extend(zz(values.into()));
        h.extend([0x15, 0x00, 0x00, 0x00]); // encoding = 0, end of both structs
        h
    }

    #[test]
    fn reads_the_fields_it_checks() {
        let h = read_header(&header(DICTIONARY_PAGE, 100, 40, 3)[..]).unwrap();
        assert_eq!(
            (h.page_type, h.uncompressed, h.compressed, h.num_values),
            (2, 100, 40, Some(3))
        );
        assert!(read_header(&[0x15u8][..]).is_err(), "cut short");
        assert!(read_header(&[0x1du8, 0x00][..]).is_err(), "an unknown type");
    }

    /// Booleans in a list take a byte each: a list claiming 2⁶³ of them in a few bytes ends at
    /// the end of the bytes (it once spun for hours, found by the fuzzer).
    #[test]
    fn a_list_reads_a_byte_per_element() {
        // Field 4, a list of two booleans (true, false), then the end of the struct.
        let h = read_header(&[0x49u8, 0x21, 0x01, 0x02, 0x00][..]).unwrap();
        assert_eq!(h.header_len, 5);
        // The same list claiming 2⁶³ − 1 booleans, as a varint after the element type.
        let mut lie = vec![0x49u8, 0xf1];
        lie.extend([0xff; 8]);
        lie.extend([0x7f, 0x01, 0x02, 0x00]);
        assert!(read_header(&lie[..]).unwrap_err().contains("cut short"));
        // A map of boolean keys and values: two bytes per entry.
        let h = read_header(&[0x4bu8, 0x02, 0x11, 0x01, 0x02, 0x02, 0x01, 0x00][..]).unwrap();
        assert_eq!(h.header_len, 8);
    }

    #[test]
    fn lies_and_sizes_past_the_limits_are_refused() {
        let chunk = |len| Chunk {
            column: "c".into(),
            start: 0,
            len,
            rows: 100,
            flat: true,
        };
        let walk = |pages: Vec<Vec<u8>>, len: u64| {
            let bytes: Vec<u8> = pages.concat();
            check_chunk(&chunk(len), |at| read_header(&bytes[at as usize..]))
        };
        // A dictionary of 3 values, then a data page of 100 values: fine.
        let dict = header(DICTIONARY_PAGE, 30, 0, 3);
        let data = header(DATA_PAGE, 50, 0, 100);
        let len = (dict.len() + data.len()) as u64;
        assert_eq!(walk(vec![dict.clone(), data.clone()], len), Ok(80));
        // 2³¹ − 1 dictionary values in 30 bytes.
        let lie = header(DICTIONARY_PAGE, 30, 0, i32::MAX);
        assert!(walk(vec![lie.clone()], lie.len() as u64)
            .unwrap_err()
            .contains("dictionary"));
        // A page of 2 GiB uncompressed.
        let big = header(DATA_PAGE, i32::MAX, 0, 10);
        assert!(walk(vec![big.clone()], big.len() as u64)
            .unwrap_err()
            .contains("uncompressed"));
        // More values than the row group has rows.
        let many = header(DATA_PAGE, 50, 0, 101);
        assert!(walk(vec![many.clone()], many.len() as u64)
            .unwrap_err()
            .contains("101 values"));
        // A page claiming more bytes than its chunk has.
        let long = header(DATA_PAGE, 50, 1000, 10);
        assert!(walk(vec![long.clone()], long.len() as u64)
            .unwrap_err()
            .contains("past the end"));
    }
}
