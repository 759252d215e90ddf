//! What sled holds in memory per idle room, without a server around it.
//!
//!   cargo run --release -p arena-benches --bin store-probe -- [--rooms 8000] [--cache-mb 1024,8]
//!       [--layout numbers,ids] [--doc-bytes 1184]
//!
//! Writes, for each of `--rooms` rooms with random ids, the entries a bootstrap node keeps
//! for a room created through `POST /api/rooms` whose one client wrote a ~1 KiB document
//! (the loadgen's idle room), with the key and value sizes read from a real data dir: the
//! log (genesis 306 B, the document's envelope `--doc-bytes`), two author-index entries
//! (8 B), the host's admission (232 B) and the node's room record (101 B), keyed as
//! `--layout` says: `numbers` (the node's layout: a room's keys start with its 8-byte number,
//! and its one entry keyed by its id, in `room-numbers`, holds the number and the node's
//! record) or `ids` (the layout before 2026-12-04: keys start with the 32-byte room id, the
//! node's record in a tree of its own). Then it flushes, waits for sled's background work, and prints the growth of
//! the process's RSS per room (from half the rooms to all of them) against the bytes stored
//! per room, and how long reading an old room's entries back takes (what waking an idle
//! room reads; p50 / p99 over every 4th room of the first half), once per `--cache-mb`
//! (sled's `cache_capacity`), each in a fresh database in a fresh process (what one probe
//! freed would otherwise be reused by the next). Same allocator as the server.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use arena_core::SledDb;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn rss() -> Result<u64> {
    arena_benches::rss_bytes("self").context("reading this process's RSS from /proc/self/status")
}

/// A deterministic stand-in for random 32-byte room ids (splitmix64).
fn room_id(i: u64) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut x = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
    for chunk in out.chunks_mut(8) {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out
}

/// How a node keys a room's entries: by the room's number on the node (8 bytes, given in
/// the order rooms first write; the layout since 2026-12-04) or by its 32-byte id (before).
#[derive(Clone, Copy, PartialEq)]
enum Layout {
    Numbers,
    Ids,
}

/// One room's entries (tree, key, value), with the sizes of a real data dir's (see above);
/// room `i` is the `i`-th room created.
fn entries(i: u64, layout: Layout, doc_bytes: usize) -> Vec<(&'static str, Vec<u8>, Vec<u8>)> {
    let id = room_id(i);
    let num = i.to_be_bytes();
    let (prefix, trees): (&[u8], [&'static str; 3]) = match layout {
        Layout::Numbers => (&num, ["room-log", "room-authors", "room-admissions"]),
        Layout::Ids => (&id, ["log", "authors", "admissions"]),
    };
    let key = |suffix: &[u8]| [prefix, suffix].concat();
    let mut out = vec![
        (trees[0], key(&0u64.to_be_bytes()), vec![1u8; 306]),
        (trees[0], key(&1u64.to_be_bytes()), vec![2u8; doc_bytes]),
        (trees[1], key(&[3u8; 40]), 0u64.to_be_bytes().to_vec()),
        (trees[1], key(&[4u8; 40]), 1u64.to_be_bytes().to_vec()),
        (trees[2], key(&[5u8; 32]), vec![6u8; 232]),
    ];
    // The room's one entry keyed by its id: the node's record, after the number.
    out.push(match layout {
        Layout::Numbers => ("room-numbers", id.to_vec(), [&num[..], &[7u8; 101]].concat()),
        Layout::Ids => ("node/rooms", id.to_vec(), vec![7u8; 101]),
    });
    out
}

/// RSS growth per room, bytes stored per room, and p50 / p99 µs to read an old room back.
fn probe(rooms: u64, cache_mb: u64, layout: Layout, doc_bytes: usize) -> Result<(f64, f64, f64, f64)> {
    let dir = tempfile::tempdir()?;
    let db = SledDb::open_with_cache(dir.path(), cache_mb << 20)?;
    db.flush()?;
    // A slope, like the loadgen's: the growth from the first half of the rooms to all of
    // them, so sled's fixed costs (its I/O buffers, the first segments) cancel out.
    let mut before = 0;
    // Keys and values of one room.
    let stored: usize = entries(0, layout, doc_bytes).iter().map(|(_, k, v)| k.len() + v.len()).sum();
    for i in 0..rooms {
        if i == rooms / 2 {
            db.flush()?;
            std::thread::sleep(Duration::from_secs(2));
            before = rss()?;
        }
        for (tree, key, value) in entries(i, layout, doc_bytes) {
            db.put(tree, &key, &value)?;
        }
        if i % 1000 == 999 {
            db.flush()?;
        }
    }
    db.flush()?;
    std::thread::sleep(Duration::from_secs(3));
    let after = rss()?;
    let n = (rooms - rooms / 2) as f64;
    // Waking an idle room reads its entries back: time that for the oldest rooms (the first
    // a small cache leaves on disk), every 4th of the first half, after the RSS reading.
    let mut reads = Vec::new();
    for i in (0..rooms / 2).step_by(4) {
        // What a wake reads: the room record, the admission, the log (not the author index).
        let wanted: Vec<_> =
            entries(i, layout, doc_bytes).into_iter().filter(|(t, ..)| !t.ends_with("authors")).collect();
        let t = std::time::Instant::now();
        let mut got = Vec::with_capacity(wanted.len());
        for (tree, key, _) in &wanted {
            got.push(db.get(tree, key)?);
        }
        reads.push(t.elapsed().as_secs_f64() * 1e6);
        if wanted.iter().zip(&got).any(|((_, _, v), g)| g.as_deref() != Some(&v[..])) {
            bail!("room {i}: an entry read back differs from what was written");
        }
    }
    reads.sort_by(f64::total_cmp);
    let pct = |p: f64| reads.get(((reads.len().max(1) - 1) as f64 * p) as usize).copied().unwrap_or(0.0);
    Ok((after.saturating_sub(before) as f64 / n, stored as f64, pct(0.5), pct(0.99)))
}

fn main() -> Result<()> {
    let mut rooms = 8000u64;
    let mut caches = vec![1024u64, 8];
    let mut doc_bytes = 1184usize;
    let mut layouts = vec![Layout::Numbers, Layout::Ids];
    let mut row_only = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--rooms" => rooms = val()?.parse().context("--rooms")?,
            "--cache-mb" => {
                caches = val()?.split(',').map(|c| c.trim().parse().context("--cache-mb")).collect::<Result<_>>()?
            }
            "--doc-bytes" => doc_bytes = val()?.parse().context("--doc-bytes")?,
            "--layout" => {
                layouts = val()?
                    .split(',')
                    .map(|l| match l.trim() {
                        "numbers" => Ok(Layout::Numbers),
                        "ids" => Ok(Layout::Ids),
                        other => bail!("--layout: {other:?} is neither numbers nor ids"),
                    })
                    .collect::<Result<_>>()?
            }
            // Internal: one probe in this process, its table row only.
            "--row" => row_only = true,
            "-h" | "--help" => {
                println!("store-probe [--rooms 8000] [--cache-mb 1024,8] [--layout numbers,ids] [--doc-bytes 1184]");
                return Ok(());
            }
            other => bail!("unknown argument {other} (try --help)"),
        }
    }
    if rooms < 2 {
        bail!("--rooms must be at least 2");
    }
    if row_only {
        let cache = caches.first().copied().context("--row needs one --cache-mb")?;
        let layout = *layouts.first().context("--row needs one --layout")?;
        let (per_room, stored, p50, p99) = probe(rooms, cache, layout, doc_bytes)?;
        let name = if layout == Layout::Numbers { "numbers" } else { "ids" };
        println!(
            "| {name} | {cache} MiB | {rooms} | {:.2} KiB | {:.2} KiB | {:.1}× | {p50:.1} / {p99:.1} µs |",
            stored / 1024.0,
            per_room / 1024.0,
            per_room / stored
        );
        return Ok(());
    }
    println!("| keys by room | sled cache | rooms | stored per room | RSS growth per room | RSS / stored | reading an old room back, p50 / p99 |");
    println!("|---|---|---|---|---|---|---|");
    let me = std::env::current_exe().context("finding this program")?;
    for cache in caches {
        for &layout in &layouts {
            let name = if layout == Layout::Numbers { "numbers" } else { "ids" };
            let out = std::process::Command::new(&me)
                .args(["--row", "--rooms", &rooms.to_string(), "--cache-mb", &cache.to_string()])
                .args(["--layout", name, "--doc-bytes", &doc_bytes.to_string()])
                .output()
                .context("running a probe")?;
            if !out.status.success() {
                bail!("the probe ({name}, {cache} MiB cache) failed: {}", String::from_utf8_lossy(&out.stderr));
            }
            print!("{}", String::from_utf8_lossy(&out.stdout));
        }
    }
    Ok(())
}
