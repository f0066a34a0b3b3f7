//! rollproof: audit a rollback (or gate a canary) from request logs and side-effect receipts.
//!
//! The library behind the `rollproof` command line (and the Python package): load an
//! [`Incident`], run [`audit()`], render the [`Report`] in any [`Format`]. See ARCHITECTURE.md for
//! the code map and the invariants.
//!
//! ```no_run
//! use rollproof::{audit, render, AuditOptions, Format, Incident, InputOverrides};
//!
//! let incident = Incident::load("fixtures/demo/incident.toml".as_ref())?;
//! let report = audit(&incident, &InputOverrides::default(), AuditOptions::default(), &|_, _, _| {})?;
//! print!("{}", render(Format::Text, &report));
//! std::process::exit(report.verdict.exit_status().code().into());
//! # Ok::<(), rollproof::InputError>(())
//! ```

mod audit;
#[cfg(feature = "bench")]
#[doc(hidden)]
pub mod bench;
mod checks;
mod columns;
mod contain;
mod distributed;
mod engine;
mod error;
mod escape;
mod incident;
pub(crate) mod ingest;
mod partial;
mod plan;
mod report;
mod stats;
mod survey;
mod time;
mod words;

pub use audit::{audit, audit_path, AuditOptions, InputOverrides};
pub use checks::{
    find as check_info, infos as check_infos, reference_markdown as checks_reference_markdown,
    CheckInfo, ExitStatus, Metric, Status,
};
pub use columns::Table;
pub use distributed::{
    combine, combine_frames, finish_key_range, frames_need_samples, merge, merge_frames, partial,
    partial_frame, plan, read_partials, split_key_ranges, FrameSchemas, FrameSource,
    PartialRequest, WorkPlan, WorkUnit,
};
pub use error::{InputError, Problem};
pub use incident::Incident;
pub use partial::MAX_KEY_PARTITIONS;
pub use plan::Mode;
pub use report::{render, render_with, CheckReport, Format, RenderOptions, Report, SCHEMA_VERSION};
pub use survey::{survey, Survey};

/// The statistics methods and their references (`rollproof explain statistics`).
pub fn statistics_explained() -> &'static str {
    stats::intervals::EXPLAIN
}

/// The OpenTelemetry preset as a mapping file to start from (`rollproof explain otlp`).
pub fn otlp_preset_mapping() -> String {
    ingest::otlp::preset_mapping_file()
}

/// What the fuzz targets need besides the API: not part of it.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::ingest::Mapping;

    /// A partial-state file around `body` (a postcard body): the header and checksum a real
    /// partial has, so that a fuzzer reaches the body's and the states' decoding.
    pub fn seal_partial(body: &[u8]) -> Vec<u8> {
        crate::partial::seal(body)
    }

    /// The body of a partial-state file (without header and checksum), when it has one.
    pub fn partial_body(file: &[u8]) -> Option<&[u8]> {
        crate::partial::body_of(file)
    }
}
