//! The wsiseg engine as a library: what the `wsiseg` command, a server or a
//! Python module drive.
//!
//! An [`Engine`] holds the model, loaded once per device (one inference
//! worker each). For each slide, [`Engine::segment`]:
//! - takes the slide's lock in the output folder (`NAME.lock`, exclusive;
//!   a second process on the same slide gets [`EngineError::Locked`]);
//! - skips the slide when its run record (`NAME.run.json`) has the same
//!   [`Fingerprint`] and every requested output is intact, and refuses
//!   ([`EngineError::Changed`], [`EngineError::Incomplete`]) when outputs
//!   exist that another model, other settings, another slide or an
//!   interrupted run made — unless the request says overwrite;
//! - plans the slide ([`Engine::plan`]: working level, tiles, tissue), runs
//!   reader threads → inference workers → stitcher ([`Engine::run`]) into
//!   every requested [`MaskOutput`], finishes them under temporary names,
//!   then renames them all and the record last.
//!
//! A [`RunControl`] carries the progress callback, the cancel flag and (for
//! tests) injected faults. Errors are typed ([`EngineError`]) and name the file.
//!
//! [`Engine::segment_with`] also streams the mask into outputs the caller
//! implements, committed with the built-in ones. [`Engine::segment_many`]
//! runs a folder's slides ([`Batch`]): overlapped, a panic boundary per
//! slide, the summary and the index page, watched through a
//! [`BatchObserver`]; [`collect_inputs`] finds a run's slides (folders,
//! patterns, lists) and a [`Shard`] takes its share of them. Options parse from and print as the words users type
//! ([`DeviceList`], [`Format`], [`Reader`], [`BadTiles`], [`MaskValues`],
//! [`Tta`], [`Precision`]). The model may be of any runtime
//! `wsiseg-infer` knows (TorchScript, or the plain-Rust `linear` rule the
//! engine's own tests use).
//!
//! ```
//! use std::sync::atomic::AtomicBool;
//! use wsiseg_engine::{EngineBuilder, Request, RunControl, SlideOutcome};
//!
//! let engine = EngineBuilder::new("../../models/unet").build()?; // the CPU by default
//! let out = tempfile::tempdir()?;
//! let cancel = AtomicBool::new(false);
//! let slide = "../../tests/data/default.svs".as_ref();
//! let outcome = engine.segment(slide, out.path(), &Request::default(), &RunControl::new(&cancel))?;
//! let SlideOutcome::Segmented { figures, files, .. } = outcome else { unreachable!() };
//! assert!(figures.tumor_fraction > 0.05 && figures.tumor_fraction < 0.15);
//! assert_eq!(files.len(), 6, "mask.png, mask.tiff, overlay.png, heatmap.png, geojson, report.json");
//! // Again: the same model and settings, so the slide is done already.
//! let again = engine.segment(slide, out.path(), &Request::default(), &RunControl::new(&cancel))?;
//! assert!(matches!(again, SlideOutcome::Skipped(_)));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod batch;
mod control;
mod engine;
mod error;
mod html;
mod inputs;
mod loading;
mod lock;
pub mod memory;
mod options;
mod outputs;
mod pipeline;
mod predict;
mod record;
mod report;
mod segment;
mod settings;
mod shard;
mod summary;
mod tiles;

pub use batch::{Batch, BatchObserver, BatchOutcome, SlideInput, SummaryKind, Unobserved};
pub use control::{BatchTimes, Progress, RunControl};
pub use engine::{
    default_batch, default_readers, describe_devices, file_sha256, plan_tiles, resolution,
    working_level, BadTiles, Decode, Engine, EngineBuilder, MaskSize, MaskValues, Request,
    SlidePlan, Tissue, TissuePolicy, DEFAULT_CPU_BATCH, DEFAULT_CUDA_BATCH, MAX_READ_SCALE,
    TEST_HOST_DECODE,
};
pub use error::{error_line, EngineError, Setting};
pub use html::{write_index, write_index_of, VIEW_SCRIPT};
pub use inputs::{collect_inputs, Found, Ignored, InputError, Inputs};
pub use lock::SlideLock;
pub use memory::peak_rss_mib;
pub use options::DeviceList;
pub use outputs::{
    class_colour, fit, report_classes, Finished, Format, MaskOutput, MaskStatistics, OutputContext,
    OutputPaths, SlideResult, CLASS_COLOURS, GEOMETRY_SIDE, OVERVIEW_SIDE,
};
pub use pipeline::{BadTile, READ_CHUNK};
pub use predict::Prediction;
pub use record::{Fingerprint, RecordedFile, RunRecord, SlideFigures, SlideIdentity};
pub use report::write_atomic;
pub use segment::{RunOutput, RunStats, SlideOutcome};
pub use settings::Settings;
pub use shard::{Shard, ShardError, ShardSource};
pub use summary::{
    merge as merge_summary, run_rows, write_summary, write_summary_as, Standing, Status,
    SummaryEntry, SummaryRow,
};
pub use tiles::{TileRead, TileStream, TilesDone};
pub use wsiseg_infer::{Device, DeviceChoice, Precision, Tta};
/// The report and summary files as types (NAME.report.json, summary.json).
pub use wsiseg_report::{self as files, SlideReport, SummaryFile, SummaryLine};
pub use wsiseg_slide::Reader;
pub use wsiseg_write::{PartialFile, Staged, WriteLimit};
