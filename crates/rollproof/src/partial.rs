//! Partial-state files: what `rollproof partial` writes and `rollproof merge` reads, so that the
//! kernels of one audit can run on many machines.
//!
//! ```text
//! magic "RPPARTIAL\n" (10 bytes) · format version (u32 LE) · body length (u64 LE) · body · SHA-256 of
//! everything before it (32 bytes)
//! body = postcard(Body)
//! ```
//!
//! The magic and the version come before anything postcard decodes, so that a file of another
//! version is named as such instead of failing to decode; the trailing checksum catches a
//! truncated or altered file. The body is deterministic: the same units folded with the same
//! incident give the same bytes (kernel sections in registry order, units in plan order).
//!
//! Why postcard: the kernel states are already `serde` types; postcard is compact (varints),
//! `no_std`-small, has a stable, documented wire format (1.0), and was already in the tree.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{InputError, Problem};

pub(crate) const MAGIC: &[u8; 10] = b"RPPARTIAL\n";
/// Bumped whenever the body or any kernel state changes shape. 2: key-range sections.
pub(crate) const FORMAT_VERSION: u32 = 4;

/// The most key ranges a partial or a merge may use.
pub const MAX_KEY_PARTITIONS: usize = 65_536;

/// The section of key range `range` of `ranges` of a keyed kernel: `users@3/16`.
pub(crate) fn range_section(kernel: &str, range: usize, ranges: usize) -> String {
    format!("{kernel}@{range}/{ranges}")
}

/// Key range `.0` of `.1` ranges.
pub(crate) type KeyRange = (usize, usize);

/// A section's kernel and key range (`None`: the kernel's own section). `Err`: a name with a
/// key range that does not parse or lies outside `0..ranges`.
pub(crate) fn parse_section(name: &str) -> Result<(&str, Option<KeyRange>), ()> {
    let Some((kernel, range)) = name.split_once('@') else {
        return Ok((name, None));
    };
    let (r, n) = range.split_once('/').ok_or(())?;
    let (r, n): (usize, usize) = (r.parse().map_err(|_| ())?, n.parse().map_err(|_| ())?);
    if r >= n || !(2..=MAX_KEY_PARTITIONS).contains(&n) {
        return Err(());
    }
    Ok((kernel, Some((r, n))))
}

/// Whether key range `a` of `a_n` and range `b` of `b_n` share a hash: range `r` of `n` holds
/// the hashes whose mix `m` (see `engine::range_of`) lies in `[⌈r·2⁶⁴/n⌉, ⌈(r+1)·2⁶⁴/n⌉)`.
pub(crate) fn ranges_overlap((a, a_n): KeyRange, (b, b_n): KeyRange) -> bool {
    let start = |r: usize, n: usize| ((r as u128) << 64).div_ceil(n as u128);
    start(a, a_n) < start(b + 1, b_n) && start(b, b_n) < start(a + 1, a_n)
}

/// What a partial holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Body {
    /// The rollproof version that wrote it (states of another version may differ in shape).
    pub(crate) tool: String,
    /// SHA-256 of the incident file, the mapping file and the threshold overrides.
    pub(crate) digest: String,
    pub(crate) kind: Kind,
    /// Per table (`requests`, `receipts`): the canonical columns present when it was made.
    pub(crate) columns: Vec<(String, Vec<String>)>,
    /// The units folded, in plan order.
    pub(crate) units: Vec<UnitEntry>,
    /// The files whose first unit this partial folded: their identity when read.
    pub(crate) files: Vec<FileEntry>,
    /// Kernel name → its encoded state, in the order the kernels run.
    pub(crate) sections: Vec<(String, Vec<u8>)>,
    /// The file it was read from, for problems (not part of the file).
    #[serde(skip)]
    pub(crate) source: std::path::PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The receipts and requests stages.
    Fold,
    /// The sample look-ups, for the targets named by the digest of their settled look-up states.
    Samples { targets: String },
    /// Key range `range` of `ranges` of the keyed states, finished over every unit
    /// (`merge --key-range`): their compacted states, which the final merge adds to the rest.
    Range { range: u32, ranges: u32 },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct UnitEntry {
    /// The unit's id, as `rollproof plan` prints it.
    pub(crate) id: String,
    pub(crate) rows_read: u64,
    pub(crate) rejected_no_ts: u64,
    pub(crate) dropped: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct FileEntry {
    /// The id of the file's first unit.
    pub(crate) unit: String,
    /// The size in bytes when it was read (a file that changed before the merge is refused).
    pub(crate) size: Option<u64>,
    pub(crate) sha256: Option<String>,
}

/// The file around an encoded body: magic, version, length, body, checksum.
pub(crate) fn seal(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 54);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(body);
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    out
}

/// The encoded body of a file [`seal`] wrote (not checked).
pub(crate) fn body_of(file: &[u8]) -> Option<&[u8]> {
    file.get(MAGIC.len() + 12..file.len().checked_sub(32)?)
}

impl Body {
    pub(crate) fn encode(&self) -> Vec<u8> {
        seal(&postcard::to_allocvec(self).expect("partial states serialize"))
    }

    /// Decodes a partial; `name` names it in problems.
    pub(crate) fn decode(name: &Path, bytes: &[u8]) -> Result<Body, InputError> {
        let problem = |found: String, hint: &str| {
            InputError::one(
                Problem::new(found, "a partial-state file written by `rollproof partial`")
                    .file(name)
                    .hint(hint.to_string()),
            )
        };
        if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
            return Err(problem(
                "a file that is not a partial state (no rollproof partial header)".into(),
                "pass the files `rollproof partial -o FILE` wrote",
            ));
        }
        let head = MAGIC.len() + 12;
        if bytes.len() < head {
            return Err(problem(
                format!("a truncated partial ({} bytes)", bytes.len()),
                "the file was cut short; make it again",
            ));
        }
        let version = u32::from_le_bytes(bytes[10..14].try_into().expect("4 bytes"));
        if version != FORMAT_VERSION {
            return Err(problem(
                format!("partial-state format version {version}"),
                &format!(
                    "this rollproof ({}) reads format version {FORMAT_VERSION}; make every partial and the merge with the same rollproof version",
                    env!("CARGO_PKG_VERSION")
                ),
            ));
        }
        let len = u64::from_le_bytes(bytes[14..22].try_into().expect("8 bytes"));
        let end = (head as u64)
            .checked_add(len)
            .and_then(|e| e.checked_add(32));
        if end != Some(bytes.len() as u64) {
            return Err(problem(
                format!(
                    "a truncated partial ({} bytes; its header announces {})",
                    bytes.len(),
                    end.map_or_else(|| "more than can exist".to_string(), |e| e.to_string())
                ),
                "the file was cut short (a failed copy or a task killed while writing); make it again",
            ));
        }
        let split = bytes.len() - 32;
        if Sha256::digest(&bytes[..split]).as_slice() != &bytes[split..] {
            return Err(problem(
                "a partial whose checksum does not match its content".into(),
                "the file was altered or damaged after it was written; make it again",
            ));
        }
        let mut body: Body = postcard::from_bytes(&bytes[head..split]).map_err(|e| {
            problem(
                format!("a partial that does not decode ({e})"),
                "make every partial and the merge with the same rollproof version",
            )
        })?;
        body.source = name.to_path_buf();
        if body.tool != env!("CARGO_PKG_VERSION") {
            return Err(problem(
                format!("a partial made by rollproof {}", body.tool),
                &format!(
                    "this is rollproof {}; make every partial and the merge with the same version",
                    env!("CARGO_PKG_VERSION")
                ),
            ));
        }
        Ok(body)
    }

    pub(crate) fn section(&self, name: &str) -> Option<&[u8]> {
        self.sections
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| b.as_slice())
    }

    /// The key-range sections of `kernel`: (range, ranges, bytes).
    pub(crate) fn range_sections<'a>(
        &'a self,
        kernel: &'a str,
    ) -> impl Iterator<Item = (usize, usize, &'a [u8])> + 'a {
        self.sections
            .iter()
            .filter_map(move |(name, bytes)| match parse_section(name) {
                Ok((k, Some((r, n)))) if k == kernel => Some((r, n, bytes.as_slice())),
                _ => None,
            })
    }

    /// The number of key ranges the keyed states were written in (1: not split).
    pub(crate) fn key_ranges(&self) -> usize {
        self.sections
            .iter()
            .filter_map(|(name, _)| parse_section(name).ok()?.1.map(|(_, n)| n))
            .max()
            .unwrap_or(1)
    }
}

/// The digest a partial carries: the incident file, the mapping file and the threshold overrides
/// (everything that decides what the kernels compute, besides the data and its columns).
pub(crate) fn digest(
    incident: &[u8],
    mapping: Option<&[u8]>,
    thresholds: &[(String, String)],
) -> String {
    let mut h = Sha256::new();
    let mut part = |tag: &str, bytes: &[u8]| {
        h.update(tag.as_bytes());
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    part("incident", incident);
    part("mapping", mapping.unwrap_or_default());
    let mut overrides: Vec<&(String, String)> = thresholds.iter().collect();
    overrides.sort();
    for (k, v) in overrides {
        part("threshold", format!("{k}={v}").as_bytes());
    }
    crate::ingest::remote::hex(&h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> Body {
        Body {
            tool: env!("CARGO_PKG_VERSION").to_string(),
            digest: "d".into(),
            kind: Kind::Fold,
            columns: vec![("requests".into(), vec!["ts".into(), "status".into()])],
            units: vec![UnitEntry {
                id: "requests:a.parquet#0".into(),
                rows_read: 10,
                rejected_no_ts: 1,
                dropped: 0,
            }],
            files: vec![FileEntry {
                unit: "requests:a.parquet#0".into(),
                size: Some(100),
                sha256: None,
            }],
            sections: vec![("rows".into(), vec![1, 2, 3])],
            source: "p".into(),
        }
    }

    #[test]
    fn round_trip() {
        let b = body();
        assert_eq!(Body::decode(Path::new("p"), &b.encode()).unwrap(), b);
    }

    #[test]
    fn every_truncation_is_refused() {
        let bytes = body().encode();
        for n in 0..bytes.len() {
            let err = Body::decode(Path::new("p"), &bytes[..n]).unwrap_err();
            assert_eq!(err.problems.len(), 1, "cut at {n}");
        }
    }

    #[test]
    fn a_flipped_byte_is_refused() {
        let mut bytes = body().encode();
        let i = bytes.len() / 2;
        bytes[i] ^= 1;
        let err = Body::decode(Path::new("p"), &bytes).unwrap_err();
        assert!(err.problems[0].found.contains("checksum"), "{err:?}");
    }

    #[test]
    fn section_names_and_range_overlaps() {
        assert_eq!(parse_section("users"), Ok(("users", None)));
        assert_eq!(parse_section("users@3/16"), Ok(("users", Some((3, 16)))));
        for bad in [
            "users@16/16",
            "users@0/1",
            "users@x/2",
            "users@1",
            "users@0/99999999",
        ] {
            assert_eq!(parse_section(bad), Err(()), "{bad}");
        }
        // Equal splits overlap only themselves; a range of 4 overlaps 4 of 16.
        assert!(ranges_overlap((3, 16), (3, 16)));
        assert!(!ranges_overlap((3, 16), (4, 16)));
        let of_quarter: Vec<usize> = (0..16)
            .filter(|&r| ranges_overlap((1, 4), (r, 16)))
            .collect();
        assert_eq!(of_quarter, vec![4, 5, 6, 7]);
        // Ranges that do not divide each other overlap where their hashes do.
        for h in [0u64, 1, u64::MAX / 3, u64::MAX / 2, u64::MAX - 1, u64::MAX] {
            let (a, b) = (crate::engine::range_of(h, 3), crate::engine::range_of(h, 7));
            assert!(ranges_overlap((a, 3), (b, 7)), "{h}");
        }
    }

    #[test]
    fn another_version_is_named() {
        let mut bytes = body().encode();
        bytes[10] = 9;
        let err = Body::decode(Path::new("p"), &bytes).unwrap_err();
        assert_eq!(err.problems[0].found, "partial-state format version 9");
    }
}
