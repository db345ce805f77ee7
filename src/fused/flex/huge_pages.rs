//! Inference weights moved onto 2 MB pages, once each, for bf16-mixed's tile packing.
//!
//! Packing a weight W [d_in, d_out] for the tiles reads it down 16-column blocks, one line from
//! each row, and the rows (1.5–6 KB for MiniLM) lie on different 4 KB pages: every line read is
//! a page-table walk, which inside a virtual machine is a two-level one. Linux hands out 2 MB
//! pages only where asked on this machine (transparent huge pages in "madvise" mode), and burn
//! allocates weights as any other tensor. `MADV_COLLAPSE` (Linux 6.1) moves a range already
//! written onto 2 MB pages at once, contents unchanged.
//!
//! Only inference asks (the plain backend's fused linears; training goes through autodiff's
//! ops, whose weights are new tensors after every optimizer step and would be copied each
//! time). Measured on MiniLM's fixed-128 inference step, bf16-mixed, the same binary with and
//! without, 5 alternated pairs: median step lower in 4, by about 4 %; packing's share of the
//! profile from 16.3 % to 14.6 %.

use std::collections::HashSet;
use std::sync::Mutex;

/// Weights already asked for, by address: each is moved once. Bounded, so that a process
/// that loads model after model forgets the old ones instead of growing.
static ASKED: Mutex<Option<HashSet<usize>>> = Mutex::new(None);

/// The most addresses remembered before the set starts again (asking twice is harmless).
const REMEMBERED: usize = 1 << 14;

/// Asks Linux to back each weight's memory (widened to whole 2 MB pages) with 2 MB pages, the
/// first time each address is seen. A hint: refusals (an older kernel, a range the kernel will
/// not move) leave things as they were.
pub(super) fn weights(weights: &[&[f32]]) {
    let mut asked = ASKED.lock().unwrap_or_else(|e| e.into_inner());
    let asked = asked.get_or_insert_with(HashSet::new);
    for w in weights {
        let start = w.as_ptr() as usize;
        if w.is_empty() || asked.contains(&start) {
            continue;
        }
        if asked.len() >= REMEMBERED {
            asked.clear();
        }
        asked.insert(start);
        collapse(start, std::mem::size_of_val(*w));
    }
}

/// `MADV_COLLAPSE` on the 2 MB pages that hold `bytes` from `start`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn collapse(start: usize, bytes: usize) {
    const HUGE: usize = 2 << 20;
    let (first, end) = (start & !(HUGE - 1), (start + bytes).next_multiple_of(HUGE));
    // SAFETY: the advice moves pages (the weight's and any neighbours' on the same 2 MB pages)
    // without changing their contents, and skips what is not this process's anonymous memory;
    // its result is only a hint's.
    unsafe { libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_COLLAPSE) };
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn collapse(_: usize, _: usize) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collapsed_weights_keep_their_values_and_are_asked_once() {
        // 3 MB of distinct values: at least one whole 2 MB page, moved while the values stay.
        let w: Vec<f32> = (0..(3 << 20) / 4).map(|i| i as f32 * 0.5).collect();
        weights(&[&w, &[]]);
        assert!(w.iter().enumerate().all(|(i, &x)| x == i as f32 * 0.5));
        let asked = ASKED.lock().unwrap();
        assert!(asked.as_ref().unwrap().contains(&(w.as_ptr() as usize)));
    }
}
