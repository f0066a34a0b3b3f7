//! Small hostile inputs, each run under a 1.5 GB memory cap and a time limit: nothing may crash
//! (panic, abort), hang, inject into a CI log or a report, or overwrite evidence. Every case ends
//! in a clear exit 2 naming the problem, or in the right report.
//!
//! `cargo test --test cli hostile -- --nocapture` prints the tally (cases, exit-2 answers, panics,
//! aborts, hangs, escapes verified) that docs/malformed-input.md reports.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, DictionaryArray, Int32Array, RecordBatch, StringArray,
    TimestampMillisecondArray, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Int32Type, Schema};

/// The memory cap of every case (virtual memory, KiB).
const MEMORY_KIB: u64 = 1_572_864;
/// Seconds a case may take before it counts as a hang.
const TIME_LIMIT_S: u64 = 120;

const INCIDENT: &str = r#"id = "INC-H"
flip_at = "2026-11-27T10:15:00Z"
root_cause_url = "https://tracker.example/H"
[inputs]
requests = "requests.csv"
[windows]
baseline = ["2026-11-27T09:00:00Z", "2026-11-27T10:00:00Z"]
[expected_pins]
build_id = "b-1"
"#;

/// Requests around the flip, one a minute, as CSV rows (`ts,request_id,region,build_id,status`).
fn rows(n: usize, region: &str, request_id: impl Fn(usize) -> String) -> String {
    let mut csv = String::from("ts,request_id,region,build_id,status\n");
    for i in 0..n {
        csv.push_str(&format!(
            "2026-11-27T{:02}:{:02}:00Z,{},{region},{},200\n",
            9 + i / 60,
            i % 60,
            request_id(i),
            if i > 80 && i % 7 == 0 { "b-2" } else { "b-1" }
        ));
    }
    csv
}

/// What a case ended in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Exit(i32),
    Panic,
    Abort,
    Hang,
}

fn outcome(out: &Output) -> Outcome {
    match out.status.code() {
        Some(124) => Outcome::Hang,
        Some(101) => Outcome::Panic,
        Some(134) | Some(137) => Outcome::Abort,
        Some(c) => Outcome::Exit(c),
        None => Outcome::Abort,
    }
}

/// Runs `rollproof ARGS` in `dir` under the memory cap and the time limit.
fn capped(dir: &Path, args: &[&str]) -> Output {
    let bin = assert_cmd::cargo::cargo_bin!("rollproof");
    Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -v {MEMORY_KIB} && exec timeout {TIME_LIMIT_S} \"$0\" \"$@\""
        ))
        .arg(bin)
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdin(Stdio::null())
        .output()
        .expect("sh runs")
}

/// `rollproof audit` of the committed hostile fixture `fixture`, copied in as `name`.
fn audit_fixture(dir: &Path, fixture: &str, name: &str) -> Vec<String> {
    std::fs::copy(
        crate::util::fixture("hostile").join(fixture),
        dir.join(name),
    )
    .unwrap();
    incident_for(dir, name);
    vec!["audit".into(), "incident.toml".into(), "-q".into()]
}

fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) {
    std::fs::write(dir.join(name), bytes).unwrap();
}

/// A stream of `n` bytes of `byte` compressed with zstd, without holding them in memory.
fn zstd_repeated(prefix: &[u8], byte: u8, n: usize) -> Vec<u8> {
    let mut enc = zstd::Encoder::new(Vec::new(), 19).unwrap();
    enc.write_all(prefix).unwrap();
    let chunk = vec![byte; 1 << 20];
    let mut left = n;
    while left > 0 {
        let k = left.min(chunk.len());
        enc.write_all(&chunk[..k]).unwrap();
        left -= k;
    }
    enc.finish().unwrap()
}

/// A small Parquet file of requests (ts, region as a dictionary, build_id, status), uncompressed
/// so that its page headers can be patched.
fn parquet_requests(status: ArrayRef) -> Vec<u8> {
    let n = status.len();
    let ts = TimestampMillisecondArray::from(
        (0..n as i64)
            .map(|i| 1_795_770_000_000 + i * 60_000)
            .collect::<Vec<_>>(),
    )
    .with_timezone("UTC");
    let region: DictionaryArray<Int32Type> = (0..n)
        .map(|i| ["eu-west", "us-east", "ap-south"][i % 3])
        .collect();
    let build: StringArray = (0..n).map(|_| Some("b-1")).collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("ts", ts.data_type().clone(), false),
        Field::new("region", region.data_type().clone(), false),
        Field::new("build_id", DataType::Utf8, false),
        Field::new("status", status.data_type().clone(), true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(ts), Arc::new(region), Arc::new(build), status],
    )
    .unwrap();
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::UNCOMPRESSED)
        .build();
    let mut out = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut out, schema, Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    out
}

/// Replaces the first occurrence of `from` in `bytes` with `to` (a patched page header).
fn patch(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let at = bytes
        .windows(from.len())
        .position(|w| w == from)
        .expect("the pattern is in the file");
    [&bytes[..at], to, &bytes[at + from.len()..]].concat()
}

/// An incident over `requests` (a file name in the case's folder).
fn incident_for(dir: &Path, requests: &str) {
    write(
        dir,
        "incident.toml",
        INCIDENT.replace("requests.csv", requests),
    );
}

/// The expectation of a case.
enum Expect {
    /// Exit 2, and stderr mentions each of these.
    InputError(&'static [&'static str]),
    /// Any verdict (exit 0, 1 or 3), and `check` holds on the output.
    Report(fn(&Output)),
    /// Exit 2, and `check` holds on the output.
    InputErrorWith(fn(&Output)),
}

struct Case {
    name: &'static str,
    setup: fn(&Path) -> Vec<String>,
    expect: Expect,
    /// An escape this case verifies (counted in the tally).
    escape: bool,
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// No line of `s` is a workflow command, and nothing in it can become one or move the cursor.
fn inert(s: &str, what: &str) {
    for line in s.lines() {
        let t = line.trim_start();
        assert!(
            !t.starts_with("::")
                || t.starts_with("::error title=rollproof")
                || t.starts_with("::warning title=rollproof")
                || t.starts_with("::notice title=rollproof"),
            "{what}: a workflow command from log text: {line:?}"
        );
    }
    assert!(!s.contains("##["), "{what}: `##[` reaches the log: {s:?}");
    assert!(!s.contains('\u{1b}'), "{what}: an escape sequence: {s:?}");
    assert!(!s.contains('\u{202e}'), "{what}: a bidi override: {s:?}");
}

fn cases() -> Vec<Case> {
    vec![
        // 1. Log text reaching CI logs.
        Case {
            name: "workflow command in a bad value",
            setup: |d| {
                write(
                    d,
                    "requests.csv",
                    rows(120, "eu", |i| format!("r-{i}")).replacen(
                        ",200\n",
                        ",abc\n::error title=X::pwned\n",
                        1,
                    ),
                );
                incident_for(d, "requests.csv");
                vec!["audit".into(), "incident.toml".into(), "-q".into()]
            },
            expect: Expect::InputErrorWith(|o| {
                let (out, err) = text(o);
                inert(&err, "stderr");
                inert(&out, "stdout");
            }),
            escape: true,
        },
        Case {
            name: "ANSI escapes in a bad value",
            setup: |d| {
                write(
                    d,
                    "requests.csv",
                    rows(120, "eu", |i| format!("r-{i}")).replacen(
                        ",200\n",
                        ",\u{1b}[2J\u{1b}[32mverdict: PASS\n",
                        1,
                    ),
                );
                incident_for(d, "requests.csv");
                vec!["audit".into(), "incident.toml".into(), "-q".into()]
            },
            expect: Expect::InputErrorWith(|o| inert(&text(o).1, "stderr")),
            escape: true,
        },
        Case {
            name: "`##[error]`, `::` and a bidi override in sample values (text report)",
            setup: |d| {
                write(
                    d,
                    "requests.csv",
                    rows(120, "eu\u{202e}tsae-su", |i| {
                        if i % 7 == 0 {
                            format!("##[error]fake-{i}")
                        } else {
                            format!("r-{i}")
                        }
                    }),
                );
                incident_for(d, "requests.csv");
                vec!["audit".into(), "incident.toml".into(), "-q".into()]
            },
            expect: Expect::Report(|o| {
                let (out, _) = text(o);
                inert(&out, "text report");
                assert!(out.contains("fake-"), "the value is still shown: {out}");
            }),
            escape: true,
        },
        Case {
            name: "`##[add-mask]` and control characters in the GitHub annotations",
            setup: |d| {
                write(
                    d,
                    "requests.csv",
                    rows(120, "##[add-mask]eu", |i| format!("r-{i}\u{7}")),
                );
                incident_for(d, "requests.csv");
                vec![
                    "audit".into(),
                    "incident.toml".into(),
                    "-q".into(),
                    "--github".into(),
                ]
            },
            expect: Expect::Report(|o| {
                let (out, err) = text(o);
                inert(&out, "stdout");
                inert(&err, "stderr");
            }),
            escape: true,
        },
        Case {
            name: "Markdown links, images, mentions and a bidi override",
            setup: |d| {
                write(
                    d,
                    "requests.csv",
                    rows(120, "eu\u{202e}", |i| {
                        if i % 7 == 0 {
                            format!("[click](https://evil.example/{i}) ![x](https://evil.example/x.png) @admin")
                        } else {
                            format!("r-{i}")
                        }
                    }),
                );
                incident_for(d, "requests.csv");
                vec![
                    "audit".into(),
                    "incident.toml".into(),
                    "-q".into(),
                    "--format".into(),
                    "markdown".into(),
                ]
            },
            expect: Expect::Report(|o| {
                let (md, _) = text(o);
                assert!(!md.contains("](https://evil"), "a link or an image: {md}");
                assert!(!md.contains("@admin"), "a mention: {md}");
                assert!(md.contains("admin"), "the text is still shown");
                inert(&md, "markdown");
            }),
            escape: true,
        },
        Case {
            name: "U+FFFE, U+FFFF and C0 characters in JUnit",
            setup: |d| {
                write(
                    d,
                    "requests.csv",
                    rows(120, "eu\u{fffe}\u{ffff}\u{1}", |i| format!("r-{i}")),
                );
                incident_for(d, "requests.csv");
                vec![
                    "audit".into(),
                    "incident.toml".into(),
                    "-q".into(),
                    "--format".into(),
                    "junit".into(),
                ]
            },
            expect: Expect::Report(|o| {
                let xml = String::from_utf8(o.stdout.clone()).unwrap();
                quick_junit::Report::deserialize_from_str(&xml).expect("well-formed JUnit XML");
                assert!(!xml.contains('\u{fffe}') && !xml.contains('\u{1}'));
            }),
            escape: true,
        },
        Case {
            name: "a 1 MB header is not echoed whole",
            setup: |d| {
                let name = "x".repeat(1 << 20);
                write(d, "requests.csv", format!("{name},region\n1,eu\n"));
                incident_for(d, "requests.csv");
                vec!["audit".into(), "incident.toml".into(), "-q".into()]
            },
            expect: Expect::InputErrorWith(|o| {
                let (_, err) = text(o);
                assert!(err.len() < 8_000, "{} bytes of message", err.len());
                assert!(err.contains("1048576 bytes"), "the length is noted: {err}");
            }),
            escape: true,
        },
        // 2. Memory.
        Case {
            name: "a 40 KB CSV with 4,000 columns",
            setup: |d| {
                let header: Vec<String> = (0..4000).map(|i| format!("c{i}")).collect();
                let mut csv = format!("ts,request_id,build_id,{}\n", header.join(","));
                for i in 0..3 {
                    csv.push_str(&format!(
                        "2026-11-27T10:{i:02}:00Z,r-{i},b-1,{}\n",
                        vec!["1"; 4000].join(",")
                    ));
                }
                write(d, "requests.csv", csv);
                incident_for(d, "requests.csv");
                vec!["audit".into(), "incident.toml".into(), "-q".into()]
            },
            expect: Expect::Report(|_| {}),
            escape: false,
        },
        Case {
            name: "a 64 KB zstd CSV that expands to one 2 GiB line",
            setup: |d| {
                write(
                    d,
                    "requests.csv.zst",
                    zstd_repeated(
                        b"ts,request_id,build_id\n2026-11-27T10:00:00Z,",
                        b'a',
                        2 << 30,
                    ),
                );
                incident_for(d, "requests.csv.zst");
                vec!["audit".into(), "incident.toml".into(), "-q".into()]
            },
            expect: Expect::InputError(&["longer than", "line 2"]),
            escape: false,
        },
        Case {
            name: "a zstd NDJSON file that expands to one 2 GiB line",
            setup: |d| {
                write(
                    d,
                    "requests.jsonl.zst",
                    zstd_repeated(b"{\"ts\":\"2026-11-27T10:00:00Z\",\"x\":\"", b'a', 2 << 30),
                );
                incident_for(d, "requests.jsonl.zst");
                vec!["audit".into(), "incident.toml".into(), "-q".into()]
            },
            expect: Expect::InputError(&["longer than", "line 1"]),
            escape: false,
        },
        Case {
            name: "a Parquet dictionary page claiming 2³¹ values",
            setup: |d| {
                let file = parquet_requests(Arc::new(Int32Array::from(vec![200; 120])));
                // Dictionary page header: field 7 (struct), num_values = 3 (zigzag 6) → 2³¹ − 1.
                write(
                    d,
                    "requests.parquet",
                    patch(&file, b"\x4c\x15\x06", b"\x4c\x15\xfe\xff\xff\xff\x0f"),
                );
                incident_for(d, "requests.parquet");
                vec!["audit".into(), "incident.toml".into(), "-q".into()]
            },
            expect: Expect::InputError(&["requests.parquet", "dictionary"]),
            escape: false,
        },
        Case {
            name: "a Parquet page claiming a 2 GiB uncompressed size",
            setup: |d| {
                let file = parquet_requests(Arc::new(Int32Array::from(vec![200; 120])));
                // A dictionary page header starts: type = DICTIONARY_PAGE (2, zigzag 4), then the
                // uncompressed size; make it 2³¹ − 1 (the compressed size is unchanged).
                let at = file.windows(3).position(|w| w == b"\x15\x04\x15").unwrap();
                let mut patched = file[..at + 3].to_vec();
                let rest = &file[at + 3..];
                let len = rest.iter().position(|b| b & 0x80 == 0).unwrap() + 1;
                patched.extend_from_slice(b"\xfe\xff\xff\xff\x0f");
                patched.extend_from_slice(&rest[len..]);
                write(d, "requests.parquet", patched);
                incident_for(d, "requests.parquet");
                vec![
                    "audit".into(),
                    "incident.toml".into(),
                    "-q".into(),
                    "--threads".into(),
                    "2".into(),
                ]
            },
            expect: Expect::InputError(&["requests.parquet", "page"]),
            escape: false,
        },
        Case {
            name: "/dev/zero as the incident file",
            setup: |_| vec!["audit".into(), "/dev/zero".into(), "-q".into()],
            expect: Expect::InputError(&["/dev/zero", "a device"]),
            escape: false,
        },
        Case {
            name: "/dev/zero as the mapping file",
            setup: |d| {
                write(d, "requests.csv", rows(120, "eu", |i| format!("r-{i}")));
                incident_for(d, "requests.csv");
                vec![
                    "audit".into(),
                    "incident.toml".into(),
                    "-q".into(),
                    "--mapping".into(),
                    "/dev/zero".into(),
                ]
            },
            expect: Expect::InputError(&["/dev/zero", "a device"]),
            escape: false,
        },
        Case {
            name: "/dev/zero as the requests",
            setup: |d| {
                incident_for(d, "requests.csv");
                vec![
                    "audit".into(),
                    "incident.toml".into(),
                    "-q".into(),
                    "--requests".into(),
                    "/dev/zero".into(),
                ]
            },
            expect: Expect::InputError(&["/dev/zero", "a device"]),
            escape: false,
        },
        // 3. Panics.
        Case {
            name: "an epoch of i64::MAX milliseconds with a flip before 1970",
            setup: |d| {
                write(d, "requests.csv", "ts,request_id,build_id,status\n9223372036854775807,r-1,b-1,200\n0,r-2,b-1,500\n");
                write(
                    d,
                    "incident.toml",
                    INCIDENT
                        .replace("2026-11-27T10:15:00Z", "1969-07-20T20:17:00Z")
                        .replace(
                            "[\"2026-11-27T09:00:00Z\", \"2026-11-27T10:00:00Z\"]",
                            "[\"1969-07-20T19:00:00Z\", \"1969-07-20T20:00:00Z\"]",
                        ),
                );
                vec!["audit".into(), "incident.toml".into(), "-q".into()]
            },
            expect: Expect::InputError(&["9223372036854775807", "row 1"]),
            escape: false,
        },
        Case {
            // Found by fuzzing: the impact section counted a batch's minutes in one dense array
            // as long as the batch's time span (a billion minutes here) and aborted on memory.
            name: "rows four thousand years apart in one batch",
            setup: |d| {
                write(
                    d,
                    "requests.csv",
                    "ts,request_id,user_id,build_id,status\n4052-11-27T10:16:00Z,r-1,u-1,b-1,200\n2026-11-27T10:16:00Z,r-2,u-1,b-1,200\n0001-01-01T00:00:00Z,r-3,u-2,b-1,500\n",
                );
                write(d, "incident.toml", INCIDENT);
                vec![
                    "audit".into(),
                    "incident.toml".into(),
                    "-q".into(),
                    "--html".into(),
                    "r.html".into(),
                ]
            },
            expect: Expect::Report(|_| {}),
            escape: false,
        },
        Case {
            name: "stderr closed",
            setup: |d| {
                incident_for(d, "requests.csv");
                vec![
                    "audit".into(),
                    "missing.toml".into(),
                    "-q".into(),
                    "--color".into(),
                    "never".into(),
                ]
            },
            expect: Expect::InputErrorWith(|_| {}),
            escape: false,
        },
        // 8. Silent wrong answers.
        Case {
            name: "a duplicate column name in CSV",
            setup: |d| {
                write(
                    d,
                    "requests.csv",
                    rows(120, "eu", |i| format!("r-{i}")).replacen(
                        "build_id,status",
                        "build_id,build_id",
                        1,
                    ),
                );
                incident_for(d, "requests.csv");
                vec!["audit".into(), "incident.toml".into(), "-q".into()]
            },
            expect: Expect::InputError(&["build_id", "twice"]),
            escape: false,
        },
        Case {
            name: "a duplicate column name in Parquet",
            setup: |d| {
                let ts = TimestampMillisecondArray::from(vec![1_795_770_000_000i64; 3])
                    .with_timezone("UTC");
                let schema = Arc::new(Schema::new(vec![
                    Field::new("ts", ts.data_type().clone(), false),
                    Field::new("build_id", DataType::Utf8, false),
                    Field::new("build_id", DataType::Utf8, false),
                ]));
                let a: ArrayRef = Arc::new(StringArray::from(vec!["b-1"; 3]));
                let b: ArrayRef = Arc::new(StringArray::from(vec!["b-2"; 3]));
                let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(ts), a, b]).unwrap();
                let mut out = Vec::new();
                let mut w = parquet::arrow::ArrowWriter::try_new(&mut out, schema, None).unwrap();
                w.write(&batch).unwrap();
                w.close().unwrap();
                write(d, "requests.parquet", out);
                incident_for(d, "requests.parquet");
                vec!["audit".into(), "incident.toml".into(), "-q".into()]
            },
            expect: Expect::InputError(&["build_id", "twice"]),
            escape: false,
        },
        Case {
            name: "a uint64 status above i64::MAX",
            setup: |d| {
                let mut status = vec![200u64; 120];
                status[5] = u64::MAX;
                write(
                    d,
                    "requests.parquet",
                    parquet_requests(Arc::new(UInt64Array::from(status))),
                );
                incident_for(d, "requests.parquet");
                vec!["audit".into(), "incident.toml".into(), "-q".into()]
            },
            expect: Expect::InputError(&["status", "18446744073709551615", "row 6"]),
            escape: false,
        },
        Case {
            name: "a timestamp 20,000 years out",
            setup: |d| {
                write(
                    d,
                    "requests.csv",
                    rows(120, "eu", |i| format!("r-{i}")).replacen(
                        "2026-11-27T09:05:00Z",
                        "640000000000000",
                        1,
                    ),
                );
                incident_for(d, "requests.csv");
                vec!["audit".into(), "incident.toml".into(), "-q".into()]
            },
            expect: Expect::InputError(&["640000000000000", "row 6", "10,000 years"]),
            escape: false,
        },
        // 9. Messages.
        Case {
            name: "a FIFO as the requests",
            setup: |d| {
                let fifo = d.join("requests.csv");
                let ok = Command::new("mkfifo")
                    .arg(&fifo)
                    .status()
                    .unwrap()
                    .success();
                assert!(ok);
                incident_for(d, "requests.csv");
                vec!["audit".into(), "incident.toml".into(), "-q".into()]
            },
            expect: Expect::InputError(&["requests.csv", "a FIFO"]),
            escape: false,
        },
        Case {
            name: "a symlink loop as the requests",
            setup: |d| {
                std::os::unix::fs::symlink(d.join("b.csv"), d.join("a.csv")).unwrap();
                std::os::unix::fs::symlink(d.join("a.csv"), d.join("b.csv")).unwrap();
                incident_for(d, "a.csv");
                vec!["audit".into(), "incident.toml".into(), "-q".into()]
            },
            expect: Expect::InputError(&["a.csv", "symbolic link"]),
            escape: false,
        },
        Case {
            name: "an NDJSON error on line 7201",
            setup: |d| {
                let mut s = String::new();
                for i in 0..7200 {
                    s.push_str(&format!("{{\"ts\":\"2026-11-27T10:{:02}:00Z\",\"build_id\":\"b-1\",\"request_id\":\"r-{i}\"}}\n", i % 60));
                }
                s.push_str("{\"ts\": oops}\n");
                write(d, "requests.jsonl", s);
                incident_for(d, "requests.jsonl");
                vec!["audit".into(), "incident.toml".into(), "-q".into()]
            },
            expect: Expect::InputError(&["line 7201"]),
            escape: false,
        },
        Case {
            name: "invalid UTF-8 in NDJSON",
            setup: |d| {
                let mut s = b"{\"ts\":\"2026-11-27T10:00:00Z\",\"build_id\":\"b-1\"}\n{\"ts\":\"2026-11-27T10:01:00Z\",\"build_id\":\"b-\xff\"}\n".to_vec();
                s.extend_from_slice(b"\n");
                write(d, "requests.jsonl", s);
                incident_for(d, "requests.jsonl");
                vec!["audit".into(), "incident.toml".into(), "-q".into()]
            },
            expect: Expect::InputErrorWith(|o| {
                let (_, err) = text(o);
                assert!(err.contains("UTF-8") && err.contains("line 2"), "{err}");
                assert!(!err.contains("fields"), "the CSV hint: {err}");
            }),
            escape: false,
        },
        Case {
            name: "Feather with LZ4 buffers (pyarrow's default)",
            setup: |d| audit_fixture(d, "feather-lz4.arrow", "requests.arrow"),
            expect: Expect::InputError(&["LZ4-compressed buffers", "uncompressed"]),
            escape: false,
        },
        Case {
            // Found by the fuzzer (the file is its output, unchanged): a page header whose
            // unknown field is a list claiming 2⁶³ booleans in a few bytes; reading a boolean
            // element took no byte, so the header check spun for hours.
            name: "a page header with a list of 2^63 booleans",
            setup: |d| {
                audit_fixture(
                    d,
                    "page-header-list-of-booleans.parquet",
                    "requests.parquet",
                )
            },
            expect: Expect::InputError(&["page header cut short", "row group 1"]),
            escape: false,
        },
        Case {
            name: "Feather with zstd buffers",
            setup: |d| audit_fixture(d, "feather-zstd.arrow", "requests.arrow"),
            expect: Expect::InputError(&["ZSTD-compressed buffers"]),
            escape: false,
        },
        Case {
            name: "an NDJSON file of 100 million blank lines",
            setup: |d| {
                let first = b"{\"ts\":\"2026-11-27T10:20:00Z\",\"build_id\":\"b-1\",\"request_id\":\"r-1\"}\n";
                write(
                    d,
                    "requests.jsonl.zst",
                    zstd_repeated(first, b'\n', 100_000_000),
                );
                incident_for(d, "requests.jsonl.zst");
                vec![
                    "audit".into(),
                    "incident.toml".into(),
                    "-q".into(),
                    "--format".into(),
                    "json".into(),
                ]
            },
            expect: Expect::Report(|o| {
                let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
                assert_eq!(
                    report["rows"]["requests_read"], 1,
                    "blank lines are not rows"
                );
            }),
            escape: false,
        },
        Case {
            name: "an output over an input",
            setup: |d| {
                write(d, "requests.csv", rows(120, "eu", |i| format!("r-{i}")));
                incident_for(d, "requests.csv");
                vec![
                    "audit".into(),
                    "incident.toml".into(),
                    "-q".into(),
                    "--html".into(),
                    "requests.csv".into(),
                ]
            },
            expect: Expect::InputErrorWith(|o| {
                assert!(text(o).1.contains("an output that is an input"));
            }),
            escape: false,
        },
    ]
}

#[test]
fn hostile_inputs_end_in_exit_2_or_the_right_report() {
    let mut tally = [0usize; 6]; // cases, exit 2, panics, aborts, hangs, escapes verified
    let mut failures = Vec::new();
    for case in cases() {
        let tmp = tempfile::tempdir().unwrap();
        let args = (case.setup)(tmp.path());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = if case.name == "stderr closed" {
            let bin = assert_cmd::cargo::cargo_bin!("rollproof");
            Command::new("sh")
                .arg("-c")
                .arg("exec \"$0\" \"$@\" 2>&-")
                .arg(bin)
                .args(&args)
                .current_dir(tmp.path())
                .output()
                .unwrap()
        } else {
            capped(tmp.path(), &args)
        };
        tally[0] += 1;
        let got = outcome(&out);
        match got {
            Outcome::Exit(2) => tally[1] += 1,
            Outcome::Panic => tally[2] += 1,
            Outcome::Abort => tally[3] += 1,
            Outcome::Hang => tally[4] += 1,
            Outcome::Exit(_) => {}
        }
        let check = std::panic::catch_unwind(|| match &case.expect {
            Expect::InputError(mentions) => {
                assert_eq!(got, Outcome::Exit(2), "stderr: {}", text(&out).1);
                let err = text(&out).1;
                for m in *mentions {
                    assert!(err.contains(m), "stderr should mention {m:?}: {err}");
                }
                assert!(err.contains("hint:"), "a hint: {err}");
            }
            Expect::InputErrorWith(check) => {
                assert_eq!(got, Outcome::Exit(2), "stderr: {}", text(&out).1);
                check(&out);
            }
            Expect::Report(check) => {
                assert!(
                    matches!(got, Outcome::Exit(0 | 1 | 3)),
                    "{got:?}, stderr: {}",
                    text(&out).1
                );
                check(&out);
            }
        });
        match check {
            Ok(()) => {
                if case.escape {
                    tally[5] += 1;
                }
            }
            Err(e) => {
                let message = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push(format!(
                    "{}: {got:?}: {}",
                    case.name,
                    crate::util::clip(&message, 600)
                ));
            }
        }
    }
    println!(
        "hostile inputs: {} cases, {} exit 2, {} panics, {} aborts, {} hangs, {} escapes verified",
        tally[0], tally[1], tally[2], tally[3], tally[4], tally[5]
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        tally[0],
        failures.join("\n")
    );
}

/// Row `i`'s time of day (`HH:MM`) on 2026-11-27: one a minute from 09:00 for the first 60
/// rows (the baseline), then one a minute from the flip (10:15) on.
fn clock(i: usize) -> String {
    let minute = if i < 60 {
        9 * 60 + i
    } else {
        10 * 60 + 15 + (i - 60)
    };
    format!("{:02}:{:02}", minute / 60, minute % 60)
}

/// Requests as CSV (`ts,request_id,region,build_id,status`): an hour of baseline from 09:00, then
/// one a minute from the flip (10:15) on, `region(i)` for row `i`; every row is counted in the
/// table by region (baseline or after the flip).
fn requests_by_region(rows: std::ops::Range<usize>, region: impl Fn(usize) -> String) -> String {
    let mut csv = String::from("ts,request_id,region,build_id,status\n");
    for i in rows {
        csv.push_str(&format!(
            "2026-11-27T{}:00Z,q-{i},{},{},{}\n",
            clock(i),
            region(i),
            if i % 7 == 0 { "b-2" } else { "b-1" },
            if i % 11 == 0 { 503 } else { 200 }
        ));
    }
    csv
}

/// The totals row of the HTML report's table by region, without its label.
fn region_totals(html: &str) -> String {
    let row = html
        .split("<tr class=\"total\"><td data-label=\"Region\">")
        .nth(1)
        .and_then(|rest| rest.split("</tr>").next())
        .expect("a totals row by region");
    row.split_once("</td>").expect("a label cell").1.to_string()
}

/// A region column with more distinct values than the HTML report keeps apart (256: a host, a
/// pod or a request id mapped as `region`) once kept two latency histograms per value (a million
/// values took 24 GB). Past 256 regions with rows, the report keeps the totals only (the same
/// figures as with one region), says why, and stays the same for any thread count and through
/// partials, also when each input alone has fewer than 256 regions; at 256 every region keeps
/// its row.
#[test]
fn more_regions_than_the_report_keeps_apart_keep_the_totals() {
    let html = |dir: &Path, args: &[&str]| -> String {
        let out = capped(dir, args);
        assert!(
            matches!(outcome(&out), Outcome::Exit(0 | 1 | 3)),
            "{:?}: {}",
            outcome(&out),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let audit = ["audit", "incident.toml", "-q", "--format", "html"];
    let setup = |regions: usize| {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        incident_for(dir, "requests-*.csv");
        // Two inputs (two units): rows 0..300 and 300..600, regions spread evenly over them.
        let region = move |i: usize| format!("zone-{:03}", i * regions / 600);
        write(dir, "requests-a.csv", requests_by_region(0..300, region));
        write(dir, "requests-b.csv", requests_by_region(300..600, region));
        tmp
    };

    let one = tempfile::tempdir().unwrap();
    incident_for(one.path(), "requests.csv");
    write(
        one.path(),
        "requests.csv",
        requests_by_region(0..600, |_| "eu-west".to_string()),
    );
    let one_region = html(one.path(), &audit);
    // 540 requests after the flip, 49 of them errors (every 11th).
    assert!(
        region_totals(&one_region).starts_with(
            "<td data-label=\"Requests (after the flip)\">540</td><td data-label=\"Errors (after the flip)\">49 ("
        ),
        "{}",
        region_totals(&one_region)
    );

    let kept = setup(256);
    let page = html(kept.path(), &audit);
    assert!(
        page.contains(">all 256 regions<"),
        "{}",
        crate::util::clip(&page, 400)
    );
    assert!(page.contains(">zone-255<"));
    assert_eq!(region_totals(&page), region_totals(&one_region));

    for regions in [257, 300] {
        let many = setup(regions);
        let dir = many.path();
        let page = html(dir, &[&audit[..], &["--threads", "1"]].concat());
        assert!(
            page.contains(">all regions (more than 256)<"),
            "{regions}: {}",
            crate::util::clip(&page, 400)
        );
        assert!(page.contains("The region column has more than 256 distinct values"));
        assert!(!page.contains(">zone-000<"), "no row per region");
        assert_eq!(region_totals(&page), region_totals(&one_region));
        assert_eq!(html(dir, &[&audit[..], &["--threads", "2"]].concat()), page);
        // One partial per input (150 regions each when there are 300): the merge drops them.
        for (i, file) in ["requests-a.csv", "requests-b.csv"].iter().enumerate() {
            let out = capped(
                dir,
                &[
                    "partial",
                    "incident.toml",
                    "-q",
                    "--requests",
                    file,
                    "-o",
                    &format!("p{i}.rpp"),
                ],
            );
            assert_eq!(
                outcome(&out),
                Outcome::Exit(0),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let merged = html(
            dir,
            &[
                "merge",
                "incident.toml",
                "p1.rpp",
                "p0.rpp",
                "-q",
                "--format",
                "html",
            ],
        );
        assert_eq!(merged, page, "{regions}: merge == audit");
    }
}

/// Every request under one user id (`anon`) with a build per request: the user is mixed, and its
/// sample lists the earliest ten values and counts the rest, in both ways the samples are found
/// (kept in the first pass, or looked up in a second). Listing every value put 49 MB into the
/// JSON at 800K requests.
#[test]
fn a_user_with_a_value_per_request_has_a_bounded_sample() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    incident_for(dir, "requests.csv");
    // 60 baseline minutes, then 200 minutes after the flip, each request on its own build.
    let mut csv = String::from("ts,request_id,user_id,build_id,status\n");
    for i in 0..260 {
        csv.push_str(&format!(
            "2026-11-27T{}:00Z,q-{i},anon,b-{i},200\n",
            clock(i)
        ));
    }
    write(dir, "requests.csv", csv);
    let audit = ["audit", "incident.toml", "-q", "--format", "json"];
    let report = |env: &[(&str, &str)]| {
        let out = crate::util::run_env(dir, &audit, env);
        assert_eq!(crate::util::code(&out), 1, "{}", crate::util::stderr(&out));
        out.stdout
    };
    let kept = report(&[]);
    let looked_up = report(&[("ROLLPROOF_NO_SAMPLE_CAPTURE", "1")]);
    assert_eq!(kept, looked_up, "kept in the first pass == looked up");
    let json: serde_json::Value = serde_json::from_slice(&kept).unwrap();
    crate::util::assert_schema(&json);
    let mixed = &crate::util::checks(&json)["mixed_versions"];
    assert_eq!(mixed["metrics"]["users_mixed"], 1);
    let expected: Vec<String> = (60..70)
        .map(|i| format!("2026-11-27T{}:00.000Z build_id=b-{i}", clock(i)))
        .collect();
    assert_eq!(
        mixed["samples"],
        serde_json::json!([{"user_id": "anon", "seen": expected, "seen_omitted": 190}])
    );
}
