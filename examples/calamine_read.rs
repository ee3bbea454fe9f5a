//! Benchmark baseline: reads every cell of the first sheet of each xlsx given
//! on the command line with calamine's streaming cells reader and nothing else
//! (no coercion, no storage), in parallel over the available cores like the
//! ingest step. `bench/ingest.sh` compares salesbatch's ingest rate to this.
//!
//! With `--formulas` it reads each cell with its formula's metadata
//! (`next_cell_with_formula_metadata`), as salesbatch must to tell a formula
//! with no saved result from an empty cell: calamine's cost for the reading
//! salesbatch does, beside its cheapest reading.
//!
//! Usage: cargo run --release --example calamine_read -- [--formulas] FILE.xlsx...

use std::time::Instant;

use calamine::{open_workbook, Reader, Xlsx};

fn read(path: &str, formulas: bool) -> (u64, u64) {
    let mut wb: Xlsx<_> = open_workbook(path).expect("open xlsx");
    let name = wb.sheet_names()[0].clone();
    let mut cells = wb.worksheet_cells_reader(&name).expect("sheet");
    let (mut n, mut rows, mut last) = (0u64, 0u64, u32::MAX);
    let mut count = |r: u32| {
        n += 1;
        if r != last {
            rows += 1;
            last = r;
        }
    };
    if formulas {
        while let Some(record) = cells.next_cell_with_formula_metadata().expect("cell") {
            count(record.pos.0);
            std::hint::black_box((record.value, record.formula));
        }
    } else {
        while let Some(cell) = cells.next_cell().expect("cell") {
            count(cell.get_position().0);
            std::hint::black_box(cell.get_value());
        }
    }
    (rows, n)
}

fn main() {
    let mut files: Vec<String> = std::env::args().skip(1).collect();
    let formulas = files.first().is_some_and(|a| a == "--formulas");
    if formulas {
        files.remove(0);
    }
    let workers = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    let start = Instant::now();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let totals = std::sync::Mutex::new((0u64, 0u64));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(f) = files.get(i) else { break };
                let (r, c) = read(f, formulas);
                let mut t = totals.lock().unwrap();
                t.0 += r;
                t.1 += c;
            });
        }
    });
    let secs = start.elapsed().as_secs_f64();
    let (rows, cells) = *totals.lock().unwrap();
    println!(
        "calamine alone{}: {} files, {rows} rows, {cells} cells in {secs:.2} s = {:.0} rows/s",
        if formulas {
            " (with formula metadata)"
        } else {
            ""
        },
        files.len(),
        rows as f64 / secs
    );
}
