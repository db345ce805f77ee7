//! Inference weights moved onto 2 MB pages, once each, for bf16-mixed's tile packing.
//!
//! Packing a weight W [d_in, d_out] for the tiles reads it down 16-column blocks, one line from
//! each row, and the rows (1.5–6 KB for MiniLM) lie on different 4 KB pages: every line read is
//! a page-table walk, which inside a virtual machine is a two-level one. Linux hands out 2 MB
//! pages only where asked on this machine (transparent huge pages in "madvise" mode), and burn
//! allocates weights as any other tensor. `MADV_COLLAPSE` (Linux 6.1) moves a range already
//! written onto 2 MB pages at once, contents unchanged.
//!
//! Only the plain backend's fused sublayers ask (QKV's shared-input linears, the projection
//! with residual and LayerNorm, the feed-forward): inference, a validation pass or a frozen
//! encoder's feature pass. Autodiff's training ops do not come here; their weights are new
//! tensors after every optimizer step and would be copied each time (a validation pass copies
//! the model's current weights once). The pages widened to 2 MB boundaries may hold
//! neighbouring data, moved too, and their untouched 4 KB pages become resident (up to 2 MB
//! at each end); weights under 2 MB in a mapping of their own are left as they are.
//!
//! Measured on MiniLM's fixed-128 inference step, bf16-mixed: the same binary with and
//! without, 5 alternated pairs, median step lower in 4, by about 4 % (packing's share of the
//! profile from 16.3 % to 14.6 %); this module's binary against the one before it, 5 pairs,
//! lower in 5, by 3–8 %.

use std::collections::HashSet;
use std::sync::Mutex;

/// Weights already asked for, by address: each is moved once. Bounded, so that a process
/// that loads model after model forgets the old ones instead of growing.
static ASKED: Mutex<Option<HashSet<usize>>> = Mutex::new(None);

/// The most addresses remembered before the set starts again (asking twice is harmless).
const REMEMBERED: usize = 1 << 14;

/// Asks Linux to back each weight's memory (widened to whole 2 MB pages) with 2 MB pages, the
/// first time each address is seen. A hint: refusals (an older kernel, transparent huge pages
/// off, a range the kernel will not move) leave things as they were.
pub(super) fn weights(weights: &[&[f32]]) {
    let fresh: Vec<&[f32]> = {
        let mut asked = ASKED.lock().unwrap_or_else(|e| e.into_inner());
        let asked = asked.get_or_insert_with(HashSet::new);
        weights
            .iter()
            .filter(|w| first_time(asked, w))
            .copied()
            .collect()
    };
    // Outside the lock: a collapse copies megabytes.
    for w in fresh {
        let _ = collapse(w.as_ptr() as usize, std::mem::size_of_val(w));
    }
}

/// Whether `w` is new to `asked` (and now remembered); never for an empty one.
fn first_time(asked: &mut HashSet<usize>, w: &[f32]) -> bool {
    if w.is_empty() {
        return false;
    }
    if asked.len() >= REMEMBERED {
        asked.clear();
    }
    asked.insert(w.as_ptr() as usize)
}

/// `MADV_COLLAPSE` on the 2 MB pages that hold `bytes` from `start`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn collapse(start: usize, bytes: usize) -> std::io::Result<()> {
    const HUGE: usize = 2 << 20;
    let (first, end) = (start & !(HUGE - 1), (start + bytes).next_multiple_of(HUGE));
    // SAFETY: the advice moves pages (the weight's and any neighbours' on the same 2 MB pages)
    // onto 2 MB ones with their contents unchanged, whatever the mapping; ranges unmapped or
    // not eligible make it fail, and the failure changes nothing.
    let done =
        unsafe { libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_COLLAPSE) };
    match done {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn collapse(_: usize, _: usize) -> std::io::Result<()> {
    Err(std::io::ErrorKind::Unsupported.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kilobytes on 2 MB pages in the mapping that holds `address` (/proc/self/smaps).
    fn huge_kb_around(address: usize) -> Option<usize> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
        let mut inside = false;
        for line in smaps.lines() {
            // A mapping's first line starts with its range, "start-end" in hex.
            let range = line
                .split_whitespace()
                .next()
                .and_then(|r| r.split_once('-'));
            let bounds =
                range.map(|(a, b)| (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)));
            if let Some((Ok(a), Ok(b))) = bounds {
                inside = a <= address && address < b;
                continue;
            }
            if inside && let Some(kb) = line.strip_prefix("AnonHugePages:") {
                return kb.trim().trim_end_matches("kB").trim().parse().ok();
            }
        }
        None
    }

    #[test]
    fn a_collapsed_range_keeps_its_values_on_2_mb_pages() {
        // 6 MB of distinct values hold at least two whole aligned 2 MB pages.
        let w: Vec<f32> = (0..(6 << 20) / 4).map(|i| i as f32 * 0.5).collect();
        let middle = w.as_ptr() as usize + (3 << 20);
        if let Err(e) = collapse(middle, 4) {
            eprintln!("no 2 MB pages here ({e}): nothing to check");
            return;
        }
        assert!(w.iter().enumerate().all(|(i, &x)| x == i as f32 * 0.5));
        let huge = huge_kb_around(middle).expect("the vector's mapping in /proc/self/smaps");
        assert!(huge >= 2048, "{huge} kB on 2 MB pages after a collapse");
    }

    #[test]
    fn each_weight_is_asked_once_and_the_memory_stays_bounded() {
        let mut asked = HashSet::new();
        let (a, b) = (vec![1.0f32; 4], vec![2.0f32; 4]);
        assert!(first_time(&mut asked, &a));
        assert!(!first_time(&mut asked, &a));
        assert!(first_time(&mut asked, &b));
        assert!(!first_time(&mut asked, &[]));
        // Full: forgotten, and b is new again.
        asked.extend(10..10 + REMEMBERED);
        assert!(first_time(&mut asked, &b));
        assert_eq!(asked.len(), 1);
    }
}
