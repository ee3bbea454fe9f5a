//! Benchmark baseline: reads every cell of the first sheet of each xlsx given
//! on the command line with calamine's streaming cells reader and nothing else
//! (no coercion, no storage), in parallel over the available cores like the
//! ingest step. `bench/ingest.sh` compares salesbatch's ingest rate to this.
//!
//! Usage: cargo run --release --example calamine_read -- FILE.xlsx...

use std::time::Instant;

use calamine::{open_workbook, Reader, Xlsx};

fn read(path: &str) -> (u64, u64) {
    let mut wb: Xlsx<_> = open_workbook(path).expect("open xlsx");
    let name = wb.sheet_names()[0].clone();
    let mut cells = wb.worksheet_cells_reader(&name).expect("sheet");
    let (mut n, mut rows, mut last) = (0u64, 0u64, u32::MAX);
    while let Some(cell) = cells.next_cell().expect("cell") {
        n += 1;
        let r = cell.get_position().0;
        if r != last {
            rows += 1;
            last = r;
        }
        std::hint::black_box(cell.get_value());
    }
    (rows, n)
}

fn main() {
    let files: Vec<String> = std::env::args().skip(1).collect();
    let workers = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    let start = Instant::now();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let totals = std::sync::Mutex::new((0u64, 0u64));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(f) = files.get(i) else { break };
                let (r, c) = read(f);
                let mut t = totals.lock().unwrap();
                t.0 += r;
                t.1 += c;
            });
        }
    });
    let secs = start.elapsed().as_secs_f64();
    let (rows, cells) = *totals.lock().unwrap();
    println!(
        "calamine alone: {} files, {rows} rows, {cells} cells in {secs:.2} s = {:.0} rows/s",
        files.len(),
        rows as f64 / secs
    );
}
