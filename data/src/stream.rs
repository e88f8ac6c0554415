//! The rows of a table as training reads them: an endless sequence of passes, each visiting
//! every block once in a seeded order across all files, with the rows of `window` consecutive
//! blocks shuffled together (so a batch mixes files). A background thread reads the next
//! windows while training computes, `prefetch` of them ahead.
//!
//! Row `r` of the sequence depends only on the seed, so a resumed run, which asks for its rows
//! from where it stopped, reads what an uninterrupted one would have: [`ShuffledRows::rows`]
//! starts the reader over at any row.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use rand::seq::SliceRandom;

use crate::table::{Block, Hdf5Table};
use crate::{DataError, batch_rng};

/// How the rows are shuffled and read ahead.
#[derive(Clone, Copy, Debug)]
pub struct StreamOptions {
    /// Blocks whose rows are shuffled together.
    pub window: usize,
    /// Windows read ahead.
    pub prefetch: usize,
    /// The seed of every order.
    pub seed: u64,
}

/// A window of rows, shuffled.
struct Window {
    pass: u64,
    index: usize,
    c: Vec<f32>,
    x: Vec<f32>,
}

struct Reader {
    next: Receiver<Result<Window, DataError>>,
    /// The window the reader sends next.
    expected: (u64, usize),
    _thread: JoinHandle<()>,
}

/// The shuffled, prefetched rows of some blocks of a table.
pub struct ShuffledRows {
    table: Hdf5Table,
    blocks: Vec<Block>,
    options: StreamOptions,
    rows_per_pass: u64,
    current: Option<Window>,
    /// Cumulative rows at the start of each window of `pass_starts.0`.
    pass_starts: (u64, Vec<u64>),
    reader: Option<Reader>,
}

impl ShuffledRows {
    /// The rows of `blocks` (of `table`), read as `options` say.
    pub fn new(table: Hdf5Table, blocks: Vec<Block>, options: StreamOptions) -> Self {
        let rows_per_pass = blocks.iter().map(|b| b.rows).sum();
        Self {
            table,
            blocks,
            options: StreamOptions {
                window: options.window.max(1),
                prefetch: options.prefetch.max(1),
                ..options
            },
            rows_per_pass,
            current: None,
            pass_starts: (u64::MAX, Vec::new()),
            reader: None,
        }
    }

    /// Rows of one pass.
    pub fn rows_per_pass(&self) -> u64 {
        self.rows_per_pass
    }

    /// Rows `first..first + n` of the sequence: conditions and data, row-major.
    pub fn rows(&mut self, first: u64, n: usize) -> Result<(Vec<f32>, Vec<f32>), DataError> {
        let (cd, d) = (self.table.cond_dim(), self.table.dim());
        let mut c = Vec::with_capacity(n * cd);
        let mut x = Vec::with_capacity(n * d);
        let mut r = first;
        while c.len() < n * cd {
            let pass = r / self.rows_per_pass;
            let offset = r % self.rows_per_pass;
            let starts = self.window_starts(pass);
            let index = starts.partition_point(|&s| s <= offset) - 1;
            let from = (offset - starts[index]) as usize;
            let window = self.window(pass, index)?;
            let available = window.x.len() / d - from;
            let take = available.min(n - c.len() / cd);
            c.extend_from_slice(&window.c[from * cd..(from + take) * cd]);
            x.extend_from_slice(&window.x[from * d..(from + take) * d]);
            r += take as u64;
        }
        Ok((c, x))
    }

    /// The window `index` of pass `pass`, from the reader (started over when it is elsewhere).
    fn window(&mut self, pass: u64, index: usize) -> Result<&Window, DataError> {
        let here = |w: &Option<Window>| {
            w.as_ref()
                .is_some_and(|w| (w.pass, w.index) == (pass, index))
        };
        if !here(&self.current) {
            if self
                .reader
                .as_ref()
                .is_none_or(|r| r.expected != (pass, index))
            {
                self.reader = Some(self.start_reader(pass, index));
            }
            let reader = self.reader.as_mut().expect("started above");
            let window = reader
                .next
                .recv()
                .map_err(|_| DataError::Invalid("the table reader stopped".into()))??;
            reader.expected = next_window(&self.blocks, self.options.window, pass, index);
            self.current = Some(window);
        }
        Ok(self.current.as_ref().expect("set above"))
    }

    fn window_starts(&mut self, pass: u64) -> &[u64] {
        if self.pass_starts.0 != pass {
            let order = block_order(&self.blocks, self.options.seed, pass);
            let mut starts = vec![0];
            for w in order.chunks(self.options.window) {
                let last = *starts.last().expect("starts at 0");
                starts.push(last + w.iter().map(|b| b.rows).sum::<u64>());
            }
            starts.pop();
            self.pass_starts = (pass, starts);
        }
        &self.pass_starts.1
    }

    fn start_reader(&self, pass: u64, index: usize) -> Reader {
        let (send, next) = sync_channel(self.options.prefetch);
        let mut reader = self.table.reader();
        let blocks = self.blocks.clone();
        let options = self.options;
        let thread = std::thread::spawn(move || {
            read_windows(&mut reader, &blocks, options, (pass, index), &send)
        });
        Reader {
            next,
            expected: (pass, index),
            _thread: thread,
        }
    }
}

/// Read windows from `from` on into `send` until the receiver is gone or a read fails.
fn read_windows(
    reader: &mut crate::table::TableReader,
    blocks: &[Block],
    options: StreamOptions,
    from: (u64, usize),
    send: &SyncSender<Result<Window, DataError>>,
) {
    let (mut pass, mut index) = from;
    loop {
        let order = block_order(blocks, options.seed, pass);
        let Some(window) = order.chunks(options.window).nth(index) else {
            return;
        };
        let result = read_window(reader, window, options.seed, pass, index);
        let failed = result.is_err();
        if send.send(result).is_err() || failed {
            return;
        }
        (pass, index) = next_window(blocks, options.window, pass, index);
    }
}

fn read_window(
    reader: &mut crate::table::TableReader,
    window: &[Block],
    seed: u64,
    pass: u64,
    index: usize,
) -> Result<Window, DataError> {
    let mut c = Vec::new();
    let mut x = Vec::new();
    for block in window {
        let (bc, bx) = reader.read(block)?;
        c.extend(bc);
        x.extend(bx);
    }
    let n = window.iter().map(|b| b.rows as usize).sum::<usize>();
    let (cd, d) = (c.len() / n.max(1), x.len() / n.max(1));
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut batch_rng(seed ^ 0xB10C, pass << 24 | index as u64));
    Ok(Window {
        pass,
        index,
        c: permute_rows(&c, cd, &order),
        x: permute_rows(&x, d, &order),
    })
}

/// The rows of `values` (`[n, dim]`) in `order`.
fn permute_rows(values: &[f32], dim: usize, order: &[usize]) -> Vec<f32> {
    let mut out = vec![0.0; order.len() * dim];
    for (row, &i) in out.chunks_exact_mut(dim.max(1)).zip(order) {
        row.copy_from_slice(&values[i * dim..(i + 1) * dim]);
    }
    out
}

/// The window after `index` of pass `pass`.
fn next_window(blocks: &[Block], window: usize, pass: u64, index: usize) -> (u64, usize) {
    if (index + 1) * window < blocks.len() {
        (pass, index + 1)
    } else {
        (pass + 1, 0)
    }
}

/// The blocks in the order of pass `pass`.
fn block_order(blocks: &[Block], seed: u64, pass: u64) -> Vec<Block> {
    let mut order = blocks.to_vec();
    order.shuffle(&mut batch_rng(seed ^ 0x0DE5, pass));
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::write_hdf5_table;

    #[test]
    fn every_row_once_per_pass_mixed_across_files_and_the_same_from_any_start() {
        let dir = std::env::temp_dir().join(format!("flowdata-stream-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // Three files of 50 rows; column 0 numbers the row across files, column 1 is data.
        let files: Vec<_> = (0..3)
            .map(|f| {
                let values: Vec<f32> = (0..50).flat_map(|i| [(f * 50 + i) as f32, 0.5]).collect();
                let path = dir.join(format!("s{f}.h5"));
                write_hdf5_table(&path, "d", &values, 2, 16, None).unwrap();
                path
            })
            .collect();
        let table =
            Hdf5Table::open(&files, "d", "0:1".parse().unwrap(), "1:2".parse().unwrap()).unwrap();
        let blocks = table.blocks(10);
        let options = StreamOptions {
            window: 4,
            prefetch: 2,
            seed: 3,
        };
        let mut stream = ShuffledRows::new(table.clone(), blocks.clone(), options);
        assert_eq!(stream.rows_per_pass(), 150);
        let mut seen = Vec::new();
        let mut first_batch = Vec::new();
        for b in 0..15 {
            let (c, _) = stream.rows(b * 20, 20).unwrap();
            if b == 0 {
                first_batch = c.clone();
            }
            seen.extend(c);
        }
        let mut pass1: Vec<u32> = seen[..150].iter().map(|&v| v as u32).collect();
        pass1.sort_unstable();
        assert_eq!(pass1, (0..150).collect::<Vec<_>>());
        // A batch of 20 from a window of 4 blocks holds rows of more than one file, in no
        // file's order.
        let files_in_first: std::collections::BTreeSet<u32> =
            first_batch.iter().map(|&v| v as u32 / 50).collect();
        assert!(files_in_first.len() > 1, "{first_batch:?}");
        // Started over at row 170 (a resumed run), the same rows come back.
        let mut resumed = ShuffledRows::new(table, blocks, options);
        let (c, _) = resumed.rows(170, 40).unwrap();
        assert_eq!(c, seen[170..210]);
    }
}
