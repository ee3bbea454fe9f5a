//! Benchmark: salesbatch's ingest *without the warehouse*. Reads every file of
//! one source of a config exactly as the ingest step does (the same reader,
//! header matching, coercion and id checks against the masters already in the
//! config's warehouse), in parallel over the available cores, and drops
//! the records. Compared with `calamine_read` it measures what the ingest code
//! adds to calamine; compared with a full `run` it measures what storing costs.
//! `bench/ingest.sh` runs it.
//!
//! Usage: cargo run --release --example ingest_parse -- CONFIG.toml SOURCE

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use salesbatch::ingest::coerce::{Cell, Epoch};
use salesbatch::ingest::reader::{FileError, Visitor};
use salesbatch::ingest::record::{self, Mapping, Masters, RowContext};

struct Counter<'a> {
    source: &'a salesbatch::config::SourceConfig,
    masters: &'a Masters,
    file: String,
    sheet: String,
    epoch: Epoch,
    mapping: Option<Mapping>,
    records: u64,
    rejected: u64,
}

impl Visitor for Counter<'_> {
    fn header(&mut self, sheet: &str, epoch: Epoch, header: &[String]) -> Result<usize, FileError> {
        self.sheet = sheet.to_string();
        self.epoch = epoch;
        let mapping = Mapping::from_header(self.source, header)?;
        let max = mapping.max_column();
        self.mapping = Some(mapping);
        Ok(max)
    }

    fn row(&mut self, row: u64, cells: &[Cell]) -> Result<(), FileError> {
        let Some(mapping) = &self.mapping else {
            return Ok(());
        };
        let ctx = RowContext {
            source: &self.source.name,
            file: &self.file,
            sheet: &self.sheet,
            epoch: self.epoch,
            date_format: self.source.date_format.as_deref(),
            masters: self.masters,
            addresses: true,
        };
        match record::to_record(mapping, cells, row, &ctx) {
            Ok(located) => {
                self.records += 1;
                std::hint::black_box(located);
            }
            Err(_) => self.rejected += 1,
        }
        Ok(())
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [config, source_name] = args.as_slice() else {
        eprintln!("usage: ingest_parse CONFIG.toml SOURCE");
        std::process::exit(2);
    };
    let settings = salesbatch::config::load(std::path::Path::new(config)).expect("config");
    let source = settings
        .config
        .sources
        .iter()
        .find(|s| &s.name == source_name)
        .expect("no such source");
    let url = settings.warehouse_url().expect("warehouse url");
    // the ids the ingest step checks against, read the way it reads them
    let masters = tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async {
            let store = salesbatch::warehouse::open(&url).await?;
            store.masters().await
        })
        .expect("masters");
    let files = salesbatch::ingest::source_files(&settings, source).files;
    let workers = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    let start = Instant::now();
    let next = AtomicUsize::new(0);
    let totals = Mutex::new((0u64, 0u64));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                while let Some((path, name)) = files.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let mut v = Counter {
                        source,
                        masters: &masters,
                        file: name.clone(),
                        sheet: String::new(),
                        epoch: Epoch::E1900,
                        mapping: None,
                        records: 0,
                        rejected: 0,
                    };
                    let result = salesbatch::ingest::read_file(path, source, &mut v);
                    result.expect("read");
                    let mut t = totals.lock().expect("lock");
                    t.0 += v.records;
                    t.1 += v.rejected;
                }
            });
        }
    });
    let secs = start.elapsed().as_secs_f64();
    let (records, rejected) = *totals.lock().expect("lock");
    println!(
        "ingest without the warehouse: {} files, {records} records ({rejected} rejected) in {secs:.2} s = {:.0} rows/s",
        files.len(),
        (records + rejected) as f64 / secs
    );
}
