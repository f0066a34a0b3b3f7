//! The canonical columns of the two tables, and typed, zero-copy views of them.
//!
//! Ingest turns every input file into [`CanonBatch`]es whose columns have one canonical Arrow
//! type each (see [`Kind`]); checks read them through the views here and never downcast again.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, DictionaryArray, Float64Array, Int64Array, StringArray,
    StringViewArray,
};
use arrow::buffer::NullBuffer;
use arrow::datatypes::Int32Type;

/// The two input tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    Requests,
    Receipts,
}

impl Table {
    pub fn name(self) -> &'static str {
        match self {
            Table::Requests => "requests",
            Table::Receipts => "receipts",
        }
    }
}

/// The canonical type a column is converted to at ingest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Int64 microseconds since the Unix epoch, UTC.
    Time,
    /// Utf8, Utf8View or Dictionary(Int32, Utf8): strings stay as they were read.
    Str,
    /// Boolean.
    Bool,
    /// Int64.
    Int,
    /// Float64.
    Float,
}

impl Kind {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Kind::Time => {
                "a timestamp (Arrow timestamp, RFC 3339 string or integer epoch milliseconds)"
            }
            Kind::Str => "a string",
            Kind::Bool => "a boolean (`true`/`false`)",
            Kind::Int => "an integer",
            Kind::Float => "a number",
        }
    }
}

macro_rules! columns {
    ($( $variant:ident = ($table:ident, $name:literal, $kind:ident) ),* $(,)?) => {
        /// A canonical column of one of the two tables.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub(crate) enum Col { $( $variant ),* }

        impl Col {
            pub(crate) const ALL: &'static [Col] = &[ $( Col::$variant ),* ];
            pub(crate) fn name(self) -> &'static str {
                match self { $( Col::$variant => $name ),* }
            }
            pub(crate) fn kind(self) -> Kind {
                match self { $( Col::$variant => Kind::$kind ),* }
            }
            pub(crate) fn table(self) -> Table {
                match self { $( Col::$variant => Table::$table ),* }
            }
        }
    };
}

columns! {
    Ts = (Requests, "ts", Time),
    RequestId = (Requests, "request_id", Str),
    Region = (Requests, "region", Str),
    Arm = (Requests, "arm", Str),
    UserId = (Requests, "user_id", Str),
    BuildId = (Requests, "build_id", Str),
    GitSha = (Requests, "git_sha", Str),
    ModelVer = (Requests, "model_ver", Str),
    PromptVer = (Requests, "prompt_ver", Str),
    IndexHash = (Requests, "index_hash", Str),
    RerankConf = (Requests, "rerank_conf", Str),
    TokVer = (Requests, "tok_ver", Str),
    AnalyzerConf = (Requests, "analyzer_conf", Str),
    CacheNs = (Requests, "cache_ns", Str),
    CacheHit = (Requests, "cache_hit", Bool),
    Status = (Requests, "status", Int),
    LatencyMs = (Requests, "latency_ms", Float),
    DeltaS = (Requests, "delta_s", Float),
    DeltaSAnchor = (Requests, "delta_s_anchor", Float),
    Coverage = (Requests, "coverage", Float),
    LambdaState = (Requests, "lambda_state", Str),
    ClientFlags = (Requests, "client_flags", Str),
    ServerFlags = (Requests, "server_flags", Str),
    QueueWaitMs = (Requests, "queue_wait_ms", Float),
    BreakerState = (Requests, "breaker_state", Str),
    QuestionId = (Requests, "question_id", Str),
    RTs = (Receipts, "ts", Time),
    ReceiptId = (Receipts, "receipt_id", Str),
    RRequestId = (Receipts, "request_id", Str),
    IdempotencyKey = (Receipts, "idempotency_key", Str),
    Effect = (Receipts, "effect", Str),
    WriterId = (Receipts, "writer_id", Str),
    Decision = (Receipts, "decision", Str),
    EffectId = (Receipts, "effect_id", Str),
}

/// The version pins, in the order the contract lists them.
pub(crate) const PIN_COLUMNS: [Col; 8] = [
    Col::BuildId,
    Col::GitSha,
    Col::ModelVer,
    Col::PromptVer,
    Col::IndexHash,
    Col::RerankConf,
    Col::TokVer,
    Col::AnalyzerConf,
];

impl Col {
    pub(crate) fn of_table(table: Table) -> impl Iterator<Item = Col> {
        Col::ALL.iter().copied().filter(move |c| c.table() == table)
    }

    pub(crate) fn by_name(table: Table, name: &str) -> Option<Col> {
        Col::of_table(table).find(|c| c.name() == name)
    }

    pub(crate) fn pin_by_name(name: &str) -> Option<Col> {
        PIN_COLUMNS.iter().copied().find(|c| c.name() == name)
    }
}

/// A batch of one table in canonical form. `ts` is always present and never null (rows without a
/// timestamp are rejected at ingest); other columns are `None` when the input does not have them.
#[derive(Debug, Clone)]
pub(crate) struct CanonBatch {
    pub(crate) ts: Arc<Int64Array>,
    columns: Vec<(Col, ArrayRef)>,
}

impl CanonBatch {
    pub(crate) fn new(ts: Int64Array, columns: Vec<(Col, ArrayRef)>) -> CanonBatch {
        debug_assert_eq!(ts.null_count(), 0);
        CanonBatch {
            ts: Arc::new(ts),
            columns,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.ts.len()
    }

    /// Rows `offset .. offset + len`, zero-copy.
    #[cfg(test)]
    pub(crate) fn slice(&self, offset: usize, len: usize) -> CanonBatch {
        CanonBatch {
            ts: Arc::new(self.ts.slice(offset, len)),
            columns: self
                .columns
                .iter()
                .map(|(c, a)| (*c, a.slice(offset, len)))
                .collect(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }

    /// The batch with canonical column names, `ts` as a UTC timestamp: what evidence files hold.
    pub(crate) fn to_record_batch(&self) -> arrow::array::RecordBatch {
        use arrow::array::TimestampMicrosecondArray;
        use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
        let ts =
            TimestampMicrosecondArray::new(self.ts.values().clone(), None).with_timezone("UTC");
        let mut fields = vec![Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        )];
        let mut columns: Vec<ArrayRef> = vec![Arc::new(ts)];
        for (col, arr) in &self.columns {
            fields.push(Field::new(col.name(), arr.data_type().clone(), true));
            columns.push(arr.clone());
        }
        arrow::array::RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
            .expect("canonical columns of one length")
    }

    /// The rows where `keep` is true.
    pub(crate) fn filter(&self, keep: &[bool]) -> CanonBatch {
        let mask = BooleanArray::from(keep.to_vec());
        let ts = arrow::compute::filter(self.ts.as_ref(), &mask).expect("filter of equal lengths");
        CanonBatch {
            ts: Arc::new(
                ts.as_any()
                    .downcast_ref::<Int64Array>()
                    .expect("filter keeps the type")
                    .clone(),
            ),
            columns: self
                .columns
                .iter()
                .map(|(c, a)| {
                    (
                        *c,
                        arrow::compute::filter(a.as_ref(), &mask).expect("filter of equal lengths"),
                    )
                })
                .collect(),
        }
    }

    pub(crate) fn ts(&self) -> &[i64] {
        self.ts.values()
    }

    pub(crate) fn array(&self, col: Col) -> Option<&ArrayRef> {
        self.columns.iter().find(|(c, _)| *c == col).map(|(_, a)| a)
    }

    pub(crate) fn str(&self, col: Col) -> Option<StrCol<'_>> {
        debug_assert_eq!(
            col.kind(),
            Kind::Str,
            "`str` of the non-string column {}",
            col.name()
        );
        self.array(col).map(|a| StrCol::new(a.as_ref()))
    }

    pub(crate) fn bool(&self, col: Col) -> Option<&BooleanArray> {
        self.array(col).map(|a| {
            a.as_any()
                .downcast_ref::<BooleanArray>()
                .expect("ingest makes bool columns BooleanArray")
        })
    }

    pub(crate) fn int(&self, col: Col) -> Option<&Int64Array> {
        self.array(col).map(|a| {
            a.as_any()
                .downcast_ref::<Int64Array>()
                .expect("ingest makes int columns Int64Array")
        })
    }

    pub(crate) fn float(&self, col: Col) -> Option<&Float64Array> {
        self.array(col).map(|a| {
            a.as_any()
                .downcast_ref::<Float64Array>()
                .expect("ingest makes float columns Float64Array")
        })
    }
}

/// A string column in one of the three layouts ingest keeps. Missing values (null or empty) read
/// as `None`, so the contract's "null and empty are the same value" holds everywhere.
#[derive(Debug, Clone, Copy)]
pub(crate) enum StrCol<'a> {
    Plain(&'a StringArray),
    View(&'a StringViewArray),
    Dict {
        arr: &'a DictionaryArray<Int32Type>,
        values: &'a StringArray,
    },
}

impl<'a> StrCol<'a> {
    /// `arr` as ingest makes string columns (panics on another layout).
    pub(crate) fn new(arr: &'a dyn Array) -> StrCol<'a> {
        if let Some(plain) = arr.as_any().downcast_ref::<StringArray>() {
            return StrCol::Plain(plain);
        }
        if let Some(view) = arr.as_any().downcast_ref::<StringViewArray>() {
            return StrCol::View(view);
        }
        let dict = arr
            .as_any()
            .downcast_ref::<DictionaryArray<Int32Type>>()
            .expect("ingest makes string columns Utf8, Utf8View or Dictionary(Int32, Utf8)");
        let values = dict
            .values()
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("ingest makes dictionary values Utf8");
        StrCol::Dict { arr: dict, values }
    }

    /// The value of row `i`; `None` when null or empty.
    #[inline]
    pub(crate) fn get(&self, i: usize) -> Option<&'a str> {
        let s = match self {
            StrCol::Plain(arr) => arr.is_valid(i).then(|| arr.value(i)),
            StrCol::View(arr) => arr.is_valid(i).then(|| arr.value(i)),
            StrCol::Dict { arr, values } => {
                if arr.is_valid(i) {
                    let key = arr.keys().values()[i] as usize;
                    values.is_valid(key).then(|| values.value(key))
                } else {
                    None
                }
            }
        };
        s.filter(|s| !s.is_empty())
    }

    /// Maps every row through `f`, calling `f` once per distinct dictionary value for
    /// dictionary-encoded columns (and once per row otherwise). `f` sees `None` for missing values.
    pub(crate) fn map_rows<T: Copy>(&self, mut f: impl FnMut(Option<&'a str>) -> T) -> Vec<T> {
        match self {
            StrCol::Dict { arr, values } => {
                let per_key = per_key(values, &mut f);
                let null_value = f(None);
                gather(arr.keys().values(), arr.nulls(), &per_key, null_value)
            }
            StrCol::Plain(arr) => map_valid(arr.len(), arr.nulls(), |i| arr.value(i), f),
            StrCol::View(arr) => map_valid(arr.len(), arr.nulls(), |i| arr.value(i), f),
        }
    }

    /// `apply(&mut out[i], f(value of row i))` for every row: [`StrCol::map_rows`] without
    /// the vector in between, for callers that fold several columns into one value per row.
    /// `out` has one element per row.
    pub(crate) fn update_rows<T, U: Copy>(
        &self,
        out: &mut [T],
        mut f: impl FnMut(Option<&'a str>) -> U,
        mut apply: impl FnMut(&mut T, U),
    ) {
        let StrCol::Dict { arr, values } = self else {
            for (o, v) in out.iter_mut().zip(self.map_rows(f)) {
                apply(o, v);
            }
            return;
        };
        let per_key = per_key(values, &mut f);
        let null_value = f(None);
        let keys = arr.keys().values();
        let Some(nulls) = arr.nulls().filter(|n| n.null_count() > 0) else {
            for (o, &k) in out.iter_mut().zip(keys) {
                apply(o, per_key[k as usize]);
            }
            return;
        };
        let n = out.len().min(keys.len());
        for_each_run(nulls, |start, end, valid| {
            let (start, end) = (start.min(n), end.min(n));
            let rows = out[start..end].iter_mut().zip(&keys[start..end]);
            if valid {
                rows.for_each(|(o, &k)| apply(o, per_key[k as usize]));
            } else {
                rows.for_each(|(o, _)| apply(o, null_value));
            }
        });
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        match self {
            StrCol::Plain(arr) => arr.len(),
            StrCol::View(arr) => arr.len(),
            StrCol::Dict { arr, .. } => arr.len(),
        }
    }
}

/// `f` of every row of a column of `len` rows that holds `value(i)` at row `i` where `nulls`
/// says it is valid: runs of valid rows (a 64-row word of the bitmap at a time) are plain loops.
fn map_valid<'a, T: Copy>(
    len: usize,
    nulls: Option<&NullBuffer>,
    value: impl Fn(usize) -> &'a str,
    mut f: impl FnMut(Option<&'a str>) -> T,
) -> Vec<T> {
    let mut out = Vec::with_capacity(len);
    let null_value = f(None);
    let mut row = |i: usize| f(Some(value(i)).filter(|s| !s.is_empty()));
    match nulls.filter(|n| n.null_count() > 0) {
        None => out.extend((0..len).map(row)),
        Some(nulls) => {
            for_each_run(nulls, |start, end, valid| {
                if valid {
                    out.extend((start..end).map(&mut row));
                } else {
                    out.resize(end, null_value);
                }
            });
        }
    }
    out
}

/// `f` of every value of a dictionary, by key (missing values as `None`).
fn per_key<'a, T>(values: &'a StringArray, f: &mut impl FnMut(Option<&'a str>) -> T) -> Vec<T> {
    (0..values.len())
        .map(|k| {
            f(values
                .is_valid(k)
                .then(|| values.value(k))
                .filter(|s| !s.is_empty()))
        })
        .collect()
}

/// `per_key[key]` for every row, `null_value` where the row is null. Null rows' keys are never
/// read (Arrow does not promise they are in range).
fn gather<T: Copy>(
    keys: &[i32],
    nulls: Option<&NullBuffer>,
    per_key: &[T],
    null_value: T,
) -> Vec<T> {
    let mut out = Vec::with_capacity(keys.len());
    match nulls.filter(|n| n.null_count() > 0) {
        None => out.extend(keys.iter().map(|&k| per_key[k as usize])),
        Some(nulls) => for_each_run(nulls, |start, end, valid| {
            if valid {
                out.extend(keys[start..end].iter().map(|&k| per_key[k as usize]));
            } else {
                out.resize(end, null_value);
            }
        }),
    }
    out
}

/// Calls `run(start, end, valid)` for consecutive row ranges that are all valid or all null, in
/// row order, covering every row once. Word-wise over the validity bitmap: 64 rows of one kind
/// cost one step, so the callers' per-row work stays a plain loop over a range.
fn for_each_run(nulls: &NullBuffer, run: impl FnMut(usize, usize, bool)) {
    let chunks = nulls
        .inner()
        .inner()
        .bit_chunks(nulls.offset(), nulls.len());
    let words = chunks.iter().map(|w| (w, 64)).chain(std::iter::once((
        chunks.remainder_bits(),
        chunks.remainder_len(),
    )));
    let mut runs = Runs {
        run,
        start: 0,
        valid: true,
    };
    let mut at = 0;
    for (word, len) in words {
        let all = if len == 64 {
            u64::MAX
        } else {
            (1u64 << len) - 1
        };
        match word & all {
            w if w == all => runs.mark(at, true),
            0 => runs.mark(at, false),
            w => (0..len).for_each(|j| runs.mark(at + j, w >> j & 1 == 1)),
        }
        at += len;
    }
    runs.mark(at, !runs.valid);
}

/// The open run of [`for_each_run`]: rows `start..` share `valid`.
struct Runs<F> {
    run: F,
    start: usize,
    valid: bool,
}

impl<F: FnMut(usize, usize, bool)> Runs<F> {
    /// Row `at` starts a run of `valid` rows; closes the open run if it differs.
    fn mark(&mut self, at: usize, valid: bool) {
        if valid != self.valid {
            if at > self.start {
                (self.run)(self.start, at, self.valid);
            }
            self.start = at;
            self.valid = valid;
        }
    }
}

/// Stable 64-bit hash of a string value (missing values hash to a fixed sentinel). Stable across
/// runs, platforms and thread counts, so hashes can decide report content deterministically.
#[inline]
pub(crate) fn hash_str(s: Option<&str>) -> u64 {
    match s {
        Some(s) => xxhash_rust::xxh3::xxh3_64(s.as_bytes()),
        None => 0x9e37_79b9_7f4a_7c15,
    }
}

/// Stable 128-bit hash, for keys whose collisions would create false findings (idempotency keys).
#[inline]
pub(crate) fn hash_str_128(s: &str) -> u128 {
    xxhash_rust::xxh3::xxh3_128(s.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows with nulls where `null_at` says (scattered, in blocks, on and off 64-row words),
    /// sliced at `offset` so the bitmap does not start on a byte: `map_rows` and `update_rows`
    /// must agree with `get` row by row.
    fn check(len: usize, offset: usize, null_at: impl Fn(usize) -> bool) {
        let values: Vec<Option<&str>> = (0..len)
            .map(|i| {
                if null_at(i) {
                    None
                } else {
                    Some(["a", "", "bb", "a value longer than a view holds"][i % 4])
                }
            })
            .collect();
        let plain = StringArray::from(values.clone()).slice(offset, len - offset);
        let view = StringViewArray::from(values.clone()).slice(offset, len - offset);
        let dict: DictionaryArray<Int32Type> = values.iter().copied().collect();
        let dict = dict.slice(offset, len - offset);
        for arr in [
            &plain as &dyn Array,
            &view as &dyn Array,
            &dict as &dyn Array,
        ] {
            let col = StrCol::new(arr);
            let mapped = col.map_rows(|v| v.map(str::len));
            let direct: Vec<_> = (0..col.len()).map(|i| col.get(i).map(str::len)).collect();
            assert_eq!(mapped, direct, "{:?} offset {offset}", arr.data_type());
            assert_eq!(mapped.len(), len - offset);
            let mut folded = vec![1; col.len()];
            col.update_rows(
                &mut folded,
                |v| v.map_or(7, str::len),
                |o, x| *o = *o * 10 + x,
            );
            let expected: Vec<usize> = direct.iter().map(|d| 10 + d.unwrap_or(7)).collect();
            assert_eq!(folded, expected, "{:?} offset {offset}", arr.data_type());
        }
    }

    #[test]
    fn map_rows_agrees_with_get_around_nulls() {
        check(300, 0, |_| false);
        check(300, 3, |i| i % 7 == 0);
        check(300, 5, |i| (64..200).contains(&i));
        check(300, 1, |i| !(10..20).contains(&i));
        check(300, 0, |i| i < 128);
        check(300, 0, |i| (64..128).contains(&i));
        check(130, 0, |_| true);
        check(65, 64, |i| i == 64);
        check(1, 0, |_| true);
    }
}
