//! bf16 matrix products on Intel AMX tiles, accumulated in f32: C = A · B with A [m, k] and
//! B [k, n] given in f32, rounded to bf16 (round to nearest even) as they are packed, and
//! multiplied by `TDPBF16PS` (16 × 16 f32 outputs per instruction, 32 products each).
//!
//! Stable Rust has no AMX intrinsics (rust-lang/rust#126622); the tile instructions are written
//! with `asm!`. Linux hands out the tile state only to a process that asked for it
//! (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`), which [`available`] does once, after
//! CPUID says the CPU has AMX-TILE and AMX-BF16.

mod pack;

use std::sync::OnceLock;

use rayon::prelude::*;

pub use pack::{LeftRows, Packed, Source};
use pack::{Line, Side};

/// `precision = "bf16-mixed"` is on (and AMX available): the large linear products and
/// attention's per-head products use AMX.
static MIXED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Turns bf16-mixed products on or off for this process; without AMX, on says so in one
/// line and stays off.
pub fn set_mixed(on: bool) {
    if on && !available() {
        errln!(
            "precision bf16-mixed: this CPU has no AMX-BF16 (or Linux refused its tile state): \
             the matrix products run in f32"
        );
    }
    MIXED.store(on && available(), std::sync::atomic::Ordering::Relaxed);
}

/// Whether the large linear products and attention's per-head products run on AMX tiles now.
pub fn mixed() -> bool {
    MIXED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Rows of a tile, and f32 columns of an output tile.
const TILE: usize = 16;
/// bf16 values of the shared dimension per tile row (64 bytes).
const KTILE: usize = 32;

/// Whether this process can run the AMX kernels: the CPU has them and Linux granted the tile
/// state. Checked once; `PIPE_AMX=off` says no, to test the fallback.
pub fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        if std::env::var("PIPE_AMX").is_ok_and(|v| v == "off") {
            return false;
        }
        // Every CPU with AMX-BF16 has AVX512-BF16, which packing uses to round; checked all the
        // same, as a hypervisor may hide one and not the other.
        cpu_has_amx() && packing_instructions() && request_tile_permission()
    })
}

#[cfg(target_arch = "x86_64")]
fn cpu_has_amx() -> bool {
    // CPUID leaf 7, subleaf 0: EDX bit 22 is AMX-BF16, bit 24 AMX-TILE.
    let leaf = std::arch::x86_64::__cpuid_count(7, 0);
    leaf.edx & (1 << 22) != 0 && leaf.edx & (1 << 24) != 0
}

#[cfg(target_arch = "x86_64")]
pub(super) fn packing_instructions() -> bool {
    std::arch::is_x86_feature_detected!("avx512bf16")
        && std::arch::is_x86_feature_detected!("avx512bw")
}

#[cfg(not(target_arch = "x86_64"))]
pub(super) fn packing_instructions() -> bool {
    false
}

#[cfg(not(target_arch = "x86_64"))]
fn cpu_has_amx() -> bool {
    false
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn request_tile_permission() -> bool {
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: a plain system call with two integer arguments; it only changes which register
    // state the kernel lets this process use.
    unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        ) == 0
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn request_tile_permission() -> bool {
    false
}

/// f32 → bf16, rounded to nearest even (as `VCVTNEPS2BF16` and PyTorch do); NaN stays NaN.
pub fn to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) | 0x40) as u16;
    }
    let rounding = 0x7fff + ((bits >> 16) & 1);
    (bits.wrapping_add(rounding) >> 16) as u16
}

/// bf16 → f32 (exact).
pub fn from_bf16(x: u16) -> f32 {
    f32::from_bits((x as u32) << 16)
}

/// The tile configuration: palette 1, tiles 0–3 the 16 × 16 f32 outputs, 4–5 the left
/// operand's 16 × 32 bf16 tiles, 6–7 the right operand's 16 × (16 pairs) tiles; all 16 rows
/// of 64 bytes.
#[cfg(target_arch = "x86_64")]
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

#[cfg(target_arch = "x86_64")]
impl TileConfig {
    fn new() -> Self {
        let mut c = [0u8; 64];
        c[0] = 1; // palette
        for t in 0..8 {
            // colsb (bytes per row) at 16 + 2t, rows at 48 + t.
            c[16 + 2 * t..18 + 2 * t].copy_from_slice(&64u16.to_le_bytes());
            c[48 + t] = TILE as u8;
        }
        TileConfig(c)
    }

    /// Loads this configuration into the calling thread's tile state.
    ///
    /// # Safety
    /// The CPU has AMX and Linux granted it ([`available`]); [`TileConfig::release`] follows
    /// on the same thread.
    unsafe fn load(&self) {
        // SAFETY: the caller's contract; the configuration is valid for palette 1.
        unsafe { std::arch::asm!("ldtilecfg [{}]", in(reg) self.0.as_ptr(), options(nostack)) };
    }

    /// Releases the calling thread's tile state.
    ///
    /// # Safety
    /// A configuration was loaded on this thread.
    unsafe fn release() {
        // SAFETY: the caller's contract.
        unsafe { std::arch::asm!("tilerelease", options(nostack)) };
    }
}

thread_local! {
    /// The calling thread's packed right operand, kept between products: fresh buffers of
    /// several MB (a 4,096 × 1,536 gradient as B of xᵀ·g: 12 MB) cost more in page faults
    /// than packing.
    static RIGHT: std::cell::RefCell<Vec<Line>> = Default::default();
    /// The calling task's panels of the left operand (see [`LeftOperand::ByRows`]).
    static PANELS: std::cell::RefCell<Vec<Line>> = Default::default();
    /// The calling thread's packed right operands of [`products_sharing_left`].
    static RIGHTS: std::cell::RefCell<Vec<Vec<Line>>> = Default::default();
    /// The calling thread's left operand written by its caller ([`with_left_rows`]).
    static WRITTEN: std::cell::RefCell<Vec<Line>> = Default::default();
    /// The calling thread's left operand written by a product before ([`with_left_operand`]).
    static INNER: std::cell::RefCell<Vec<Line>> = Default::default();
    /// The calling task's 32 rows of a product that only its row function reads
    /// ([`matmul_rows_then`]).
    static SCRATCH: std::cell::RefCell<Vec<f32>> = Default::default();
}

/// The left operand of a product: packed before, or packed 32 rows at a time by the task that
/// multiplies them, so that its f32 rows are read once and the packed panels (24–96 KB) stay
/// in the core's caches instead of going to memory and back (rounding and packing MiniLM's
/// activations were 13 % of an inference step, bound on memory).
#[derive(Clone, Copy)]
enum LeftOperand<'a> {
    Packed(&'a Packed),
    /// A (or Aᵀ) from `Source`, with the shared dimension k.
    ByRows(Source<'a>, usize),
}

impl LeftOperand<'_> {
    fn k_tiles(&self) -> usize {
        match self {
            LeftOperand::Packed(p) => p.k_tiles,
            LeftOperand::ByRows(_, k) => k.div_ceil(KTILE),
        }
    }
}

/// What a product is added onto.
#[derive(Clone, Copy)]
pub enum Start<'a> {
    /// Nothing: C = A · B, and C's old contents are never read.
    Zero,
    /// C's own values: C += A · B.
    Onto,
    /// A bias [n] in every row: C = bias + A · B, loaded into the tiles as they start (a
    /// tile load with row stride 0), so C is not filled with it first.
    Bias(&'a [f32]),
}

/// C [m, n] (+)= A · B, starting from `start`: A is `Source::rows(A [m, k])` or
/// `Source::transposed(Aᵀ [k, m])` (the xᵀ of a weight gradient); B is [k, n], or [n, k] where
/// `b_transposed`. Every operand in f32; the products of their bf16 roundings are summed in
/// f32. Needs [`available`].
pub fn matmul_into(
    c: &mut [f32],
    start: Start,
    a: Source,
    b: &[f32],
    (m, k, n): (usize, usize, usize),
    b_transposed: bool,
) {
    assert_eq!(c.len(), m * n);
    // SAFETY: `c` is m × n initialized values, borrowed mutably for the call.
    unsafe { matmul_raw((c.as_mut_ptr(), None), start, a, b, (m, k, n), b_transposed) }
}

/// What to do with each row of C (its index, its values) once its products are done, while
/// it is still in the core's caches: the activation that follows a linear layer, or the
/// residual connection and LayerNorm that follow a projection.
pub type RowsThen<'a> = &'a (dyn Fn(usize, &mut [f32]) + Sync);

/// [`matmul_into`] into a raw output, which may be uninitialized unless `start` is
/// [`Start::Onto`]: every one of its m × n values is written, and then passed through `then`
/// where given, 32 rows at a time by the task that wrote them.
///
/// # Safety
/// `c` points at m × n f32 that nothing else reads or writes during the call, initialized where
/// `start` is [`Start::Onto`].
pub unsafe fn matmul_raw(
    (c, then): (*mut f32, Option<RowsThen>),
    start: Start,
    a: Source,
    b: &[f32],
    (m, k, n): (usize, usize, usize),
    b_transposed: bool,
) {
    let b = Source::of_b(b, b_transposed);
    let c = Output::dense(c, (m, n), then);
    // SAFETY: the caller's contract.
    unsafe { product(c, start, LeftOperand::ByRows(a, k), b, k, true) }
}

/// C [m, n] = A · B from `start`, A from `a` ([`Source::rows`]) and B [k, n] row-major, where
/// only `then` reads C: each task's 32 rows go to a scratch of its own, are passed to `then`,
/// and are never stored (a feed-forward's inner activations, which `then` rounds into the
/// next product's tiles).
pub fn matmul_rows_then(
    then: RowsThen,
    start: Start,
    a: Source,
    b: &[f32],
    (m, k, n): (usize, usize, usize),
) {
    assert!(!matches!(start, Start::Onto), "there is no C to add onto");
    let b = Source::of_b(b, false);
    let c = Output {
        scratch: true,
        ..Output::dense(std::ptr::null_mut(), (m, n), Some(then))
    };
    // SAFETY: C is each task's own scratch (`scratch`); `start` never reads it.
    unsafe { product(c, start, LeftOperand::ByRows(a, k), b, k, true) }
}

/// One small product inside a task of its own (an attention block), on this thread alone:
/// C [m, n] (+)= A · B with C's rows `c_stride` apart; `a` is A (or Aᵀ), `bt` is Bᵀ [n, k]
/// ([`Source::rows`]) or B [k, n] ([`Source::transposed`]), either with strides.
///
/// # Safety
/// As [`matmul_raw`], with C's rows `c_stride` (≥ n) apart.
pub unsafe fn block_product(
    c: (*mut f32, usize),
    start: Start,
    a: Source,
    bt: Source,
    (m, k, n): (usize, usize, usize),
) {
    // SAFETY: the caller's contract.
    unsafe { block_on_thread(c, start, LeftOperand::ByRows(a, k), bt, (m, k, n)) }
}

/// [`block_product`] from zero with a left operand A [m, k] packed before, as
/// [`with_left_rows`] lets its caller write one.
///
/// # Safety
/// As [`block_product`].
pub unsafe fn block_product_left_packed(
    c: (*mut f32, usize),
    left: &Packed,
    bt: Source,
    (m, k, n): (usize, usize, usize),
) {
    assert!(left.row_tiles * TILE >= m, "a left operand of fewer rows");
    // SAFETY: the caller's contract.
    unsafe { block_on_thread(c, Start::Zero, LeftOperand::Packed(left), bt, (m, k, n)) }
}

/// [`block_product`] with either kind of left operand.
///
/// # Safety
/// As [`block_product`].
unsafe fn block_on_thread(
    (c, c_stride): (*mut f32, usize),
    start: Start,
    left: LeftOperand,
    bt: Source,
    (m, k, n): (usize, usize, usize),
) {
    assert!(c_stride >= n, "output rows overlap");
    let c = Output {
        stride: c_stride,
        ..Output::dense(c, (m, n), None)
    };
    // SAFETY: the caller's contract.
    unsafe { product(c, start, left, bt, k, false) }
}

/// Runs `f` with a left operand A [m, k] in this thread's buffer for `f` to write, row by row
/// in bf16 ([`Packed::line_mut`]): softmax's weights rounded as they are computed, instead of
/// written in f32 and read back to be rounded and packed. Rows past m (up to the next 32) are
/// left as they were: an output row depends on its own row of A alone, and the products store
/// only rows below m.
pub fn with_left_rows<R>((m, k): (usize, usize), f: impl FnOnce(&mut Packed) -> R) -> R {
    with_unfilled(&WRITTEN, (m, k), f)
}

/// Runs `f` on room for M [m, k] in tiles, in the calling thread's `buffer`, which gets the
/// allocation back after (grown where it was too short).
fn with_unfilled<R>(
    buffer: &'static std::thread::LocalKey<std::cell::RefCell<Vec<Line>>>,
    (m, k): (usize, usize),
    f: impl FnOnce(&mut Packed) -> R,
) -> R {
    let mut operand = Packed::unfilled(buffer.take(), (m, k));
    let result = f(&mut operand);
    buffer.set(operand.into_buffer());
    result
}

/// Runs `f` with room for a left operand A [m, k] in this thread's buffer, to be written row
/// by row by the tasks of a product ([`Packed::rows_writer`]) and then multiplied
/// ([`matmul_raw_left_packed`]): a feed-forward's inner activations go to bf16 tiles as they
/// are computed, instead of to memory in f32 and back to be rounded.
pub fn with_left_operand<R>((m, k): (usize, usize), f: impl FnOnce(&mut Packed) -> R) -> R {
    with_unfilled(&INNER, (m, k), f)
}

/// [`matmul_raw`] with A [m, k] packed before ([`with_left_operand`]) and B [k, n]
/// row-major.
///
/// # Safety
/// As [`matmul_raw`]; A's rows below m are written.
pub unsafe fn matmul_raw_left_packed(
    (c, then): (*mut f32, Option<RowsThen>),
    start: Start,
    left: &Packed,
    b: &[f32],
    (m, k, n): (usize, usize, usize),
) {
    assert!(left.row_tiles * TILE >= m, "a left operand of fewer rows");
    let b = Source::of_b(b, false);
    let c = Output::dense(c, (m, n), then);
    // SAFETY: the caller's contract.
    unsafe { product(c, start, LeftOperand::Packed(left), b, k, true) }
}

/// C (+)= A · B from `a` (A or Aᵀ) and `bt` (Bᵀ or B), packed in this thread's buffers, on
/// rayon where `parallel`.
///
/// # Safety
/// As [`matmul_raw`].
unsafe fn product(
    c: Output,
    start: Start,
    left: LeftOperand,
    bt: Source,
    k: usize,
    parallel: bool,
) {
    assert!(available(), "AMX kernels called without AMX");
    let right_buffer = RIGHT.with(|b| std::mem::take(&mut *b.borrow_mut()));
    let right = Packed::new(right_buffer, Side::Right, bt, (c.n, k), parallel);
    // SAFETY: the caller's contract.
    unsafe { multiply(left, &right, c, start, parallel) };
    RIGHT.with(|b| *b.borrow_mut() = right.into_buffer());
}

/// One product of [`products_sharing_left`]: C [m, n] (rows n apart) = A · B [k, n]
/// (row-major) from `start`.
#[derive(Clone, Copy)]
pub struct OfSharedLeft<'a> {
    pub c: *mut f32,
    pub b: &'a [f32],
    pub n: usize,
    pub start: Start<'a>,
}

/// Several products of one left operand, C_i [m, n_i] = A · B_i from their starts, A being
/// `Source::rows(A [m, k])`: each task rounds and packs its 32 rows of A once for all of them,
/// while they are in its caches (a layer's queries, keys and values, all from the same x).
///
/// # Safety
/// As [`matmul_raw`] for each C_i, which may be uninitialized (no start is [`Start::Onto`]);
/// the C_i overlap neither each other nor A or any B_i.
pub unsafe fn products_sharing_left(a: Source, (m, k): (usize, usize), products: &[OfSharedLeft]) {
    assert!(available(), "AMX kernels called without AMX");
    let mut buffers = RIGHTS.take();
    buffers.resize_with(buffers.len().max(products.len()), Vec::new);
    let rights: Vec<Packed> = products
        .iter()
        .zip(buffers.drain(..))
        .map(|(p, buffer)| {
            assert!(
                !matches!(p.start, Start::Onto),
                "products start from zero or a bias"
            );
            Packed::new(
                buffer,
                Side::Right,
                Source::of_b(p.b, false),
                (p.n, k),
                true,
            )
        })
        .collect();
    let targets: Vec<(Output, Start, Option<Vec<F32Line>>)> = products
        .iter()
        .zip(&rights)
        .map(|(p, right)| {
            let c = Output::dense(p.c, (m, p.n), None);
            (c, p.start, bias_lines(p.start, right, p.n))
        })
        .collect();
    let pairs = m.div_ceil(2 * TILE);
    let width: usize = rights.iter().map(|r| r.row_tiles).sum();
    let k_tiles = rights.first().map_or(1, |r| r.k_tiles);
    let per_task = pairs_per_task(pairs, width / 2 * k_tiles);
    let rows = |pair: usize, edges: &mut EdgeTiles| {
        with_row_panels(a, pair, (m, k), |panels| {
            for ((c, start, bias), right) in targets.iter().zip(&rights) {
                // SAFETY: the caller's contract; this task writes rows 32·pair .. of each C
                // alone; the tiles are configured (`in_tile_tasks`).
                unsafe {
                    block_row_packed(
                        (panels, 0),
                        right,
                        *c,
                        (pair, *start),
                        bias.as_deref(),
                        edges,
                    )
                };
            }
        })
    };
    in_tile_tasks((pairs, per_task), true, rows);
    buffers.extend(rights.into_iter().map(Packed::into_buffer));
    RIGHTS.set(buffers);
}

/// C [m, n] = A · B: B is [k, n], or [n, k] where `b_transposed` (see [`matmul_into`]).
pub fn matmul(a: &[f32], b: &[f32], m: usize, k: usize, n: usize, b_transposed: bool) -> Vec<f32> {
    fresh_product(Source::rows(a), b, (m, k, n), b_transposed)
}

/// C [m, n] = Aᵀ · B with `at` = A stored as [k, m] and B [k, n]: the weight gradient xᵀ·g.
pub fn matmul_left_transposed(at: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    fresh_product(Source::transposed(at), b, (m, k, n), false)
}

/// [`matmul_into`] a new C [m, n] from zero; A's source holds m × k values.
fn fresh_product(a: Source, b: &[f32], (m, k, n): (usize, usize, usize), bt: bool) -> Vec<f32> {
    assert_eq!(a.len(), m * k);
    let mut c = vec![0f32; m * n];
    matmul_into(&mut c, Start::Zero, a, b, (m, k, n), bt);
    c
}

/// C [m, n] from operands packed before ([`Packed::left`] of A [m, k], [`Packed::right`] of B),
/// so that an operand used in several products (a weight within a step) is packed once.
pub fn matmul_packed(left: &Packed, right: &Packed, c: &mut [f32], m: usize, n: usize) {
    assert!(available(), "AMX kernels called without AMX");
    assert_eq!(c.len(), m * n);
    let c = Output::dense(c.as_mut_ptr(), (m, n), None);
    assert!(left.row_tiles * TILE >= m);
    // SAFETY: `c` is m × n values borrowed mutably for the call.
    unsafe { multiply(LeftOperand::Packed(left), right, c, Start::Zero, true) };
}

/// Where a product goes: C [m, n] with rows `stride` apart, shared by the tasks that write its
/// row blocks, and what each task does with its rows after.
#[derive(Clone, Copy)]
// Read only by the tile kernel, which off x86-64 does not exist.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
struct Output<'a> {
    c: *mut f32,
    m: usize,
    n: usize,
    stride: usize,
    then: Option<RowsThen<'a>>,
    /// Each task writes its 32 rows to a scratch of its own (rows `stride` apart) for `then`,
    /// and C itself is never written (`c` is unused).
    scratch: bool,
}
impl<'a> Output<'a> {
    /// C [m, n] itself, rows n apart, each task's rows passed to `then` where given.
    fn dense(c: *mut f32, (m, n): (usize, usize), then: Option<RowsThen<'a>>) -> Self {
        Output {
            c,
            m,
            n,
            stride: n,
            then,
            scratch: false,
        }
    }
}

// SAFETY: each task reads and writes only its own 32 rows of C.
unsafe impl Send for Output<'_> {}
unsafe impl Sync for Output<'_> {}

/// 16 f32 on a cache line of their own: a bias segment, or a row of an output tile outside C.
#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
struct F32Line([f32; TILE]);

/// C (+)= left · right from `start`, one task per pair of output tile rows (32 rows of C) on
/// rayon where `parallel`, else one after the other.
///
/// # Safety
/// As [`matmul_raw`].
unsafe fn multiply(left: LeftOperand, right: &Packed, c: Output, start: Start, parallel: bool) {
    assert_eq!(
        left.k_tiles(),
        right.k_tiles,
        "operands of different shared sizes"
    );
    assert!(right.row_tiles * TILE >= c.n);
    let bias = bias_lines(start, right, c.n);
    let pairs = c.m.div_ceil(2 * TILE);
    let per_task = match parallel {
        true => pairs_per_task(pairs, right.row_tiles / 2 * right.k_tiles),
        false => pairs.max(1),
    };
    // SAFETY: each task has its own 32-row blocks of C (the caller's contract for the rest);
    // the tiles are configured (`in_tile_tasks`).
    let row = |pair, edges: &mut EdgeTiles| unsafe {
        block_row(left, right, c, (pair, start), bias.as_deref(), edges)
    };
    in_tile_tasks((pairs, per_task), parallel, row);
}

/// 32-row blocks of C per task: enough for some 256 tile products (model A's 32-wide
/// products have 4 a block, where loading the tile configuration, releasing it and clearing
/// the edge tiles for each block cost as much as its products), at most a sixteenth of them.
fn pairs_per_task(pairs: usize, products_per_block: usize) -> usize {
    let wanted = 256usize.div_ceil(4 * products_per_block.max(1));
    wanted.clamp(1, pairs.div_ceil(16).max(1))
}

/// The four 16 × 16 f32 tiles an edge block goes through (see [`block_row_packed`]).
type EdgeTiles = [[F32Line; TILE]; 4];

/// Runs `block(pair, edges)` for each of `pairs` 32-row blocks, `per_task` blocks to a task,
/// on rayon where `parallel`: each task on its thread with the tile configuration loaded
/// before its blocks and released after, and edge tiles of its own.
fn in_tile_tasks(
    (pairs, per_task): (usize, usize),
    parallel: bool,
    block: impl Fn(usize, &mut EdgeTiles) + Sync,
) {
    let configured = |t: usize| {
        let mut edges = [[F32Line::default(); TILE]; 4];
        // SAFETY: `available()` was checked by the callers; released below on this thread.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            TileConfig::new().load()
        };
        for pair in t * per_task..((t + 1) * per_task).min(pairs) {
            block(pair, &mut edges);
        }
        // SAFETY: releases the tile state loaded above.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            TileConfig::release()
        };
    };
    let tasks = pairs.div_ceil(per_task);
    match parallel {
        true => (0..tasks).into_par_iter().for_each(configured),
        false => (0..tasks).for_each(configured),
    }
}

/// A [`Start::Bias`] [n] on cache lines, zero-padded to whole tiles, one line per tile column
/// of `right`.
fn bias_lines(start: Start, right: &Packed, n: usize) -> Option<Vec<F32Line>> {
    let Start::Bias(b) = start else { return None };
    assert_eq!(b.len(), n, "bias of the wrong size");
    let mut lines = vec![F32Line::default(); right.row_tiles];
    for (line, part) in lines.iter_mut().zip(b.chunks(TILE)) {
        line.0[..part.len()].copy_from_slice(part);
    }
    Some(lines)
}

/// Output rows 32·pair .. 32·pair + 32 (fewer at the end), every column, in 32 × 32 blocks.
///
/// # Safety
/// This task alone reads and writes those rows of C; `bias` is the padded bias where `start`
/// is one; this thread's tiles are configured ([`in_tile_tasks`]).
unsafe fn block_row(
    left: LeftOperand,
    right: &Packed,
    c: Output,
    (pair, start): (usize, Start),
    bias: Option<&[F32Line]>,
    edges: &mut EdgeTiles,
) {
    match left {
        // SAFETY: the caller's contract.
        LeftOperand::Packed(p) => unsafe {
            block_row_packed((p, 2 * pair), right, c, (pair, start), bias, edges)
        },
        LeftOperand::ByRows(a, k) => with_row_panels(a, pair, (c.m, k), |panels| {
            // SAFETY: the caller's contract; these rows are tile rows 0 and 1 of `panels`.
            unsafe { block_row_packed((panels, 0), right, c, (pair, start), bias, edges) }
        }),
    }
}

/// Off x86-64 there are no tiles: every caller asserted [`available`], which says no there.
///
/// # Safety
/// Never runs.
#[cfg(not(target_arch = "x86_64"))]
unsafe fn block_row_packed(
    _: (&Packed, usize),
    _: &Packed,
    _: Output,
    _: (usize, Start),
    _: Option<&[F32Line]>,
    _: &mut EdgeTiles,
) {
    unreachable!("AMX tile products off x86-64")
}

/// Runs `f` on rows 32·pair .. 32·pair + 32 (fewer at the end) of A [m, k] from `a`, packed as
/// tile rows 0 and 1 of this thread's panels (see [`LeftOperand::ByRows`]).
fn with_row_panels(a: Source, pair: usize, (m, k): (usize, usize), f: impl FnOnce(&Packed)) {
    let height = (2 * TILE).min(m - pair * 2 * TILE);
    let rows = a.rows_after(pair * 2 * TILE, (m, k));
    let panels = Packed::new(PANELS.take(), Side::Left, rows, (height, k), false);
    f(&panels);
    PANELS.set(panels.into_buffer());
}

/// [`block_row`] with its rows of the left operand at tile rows `r0`, `r0 + 1` of `left`;
/// `out` is where an edge block goes through.
///
/// # Safety
/// As [`block_row`].
#[cfg(target_arch = "x86_64")]
unsafe fn block_row_packed(
    (left, r0): (&Packed, usize),
    right: &Packed,
    c: Output,
    (pair, start): (usize, Start),
    bias: Option<&[F32Line]>,
    out: &mut EdgeTiles,
) {
    let height = (2 * TILE).min(c.m - pair * 2 * TILE);
    let mut scratch = Vec::new();
    let rows = match c.scratch {
        true => {
            scratch = SCRATCH.take();
            scratch.resize(2 * TILE * c.stride, 0.0);
            scratch.as_mut_ptr()
        }
        // SAFETY: the block row starts inside C.
        false => unsafe { c.c.add(pair * 2 * TILE * c.stride) },
    };
    for col_pair in 0..right.row_tiles / 2 {
        let c0 = 2 * col_pair;
        let edge = EdgeBlock {
            rows,
            n: c.n,
            stride: c.stride,
            height,
            c0,
        };
        // A whole 32 × 32 block inside C is loaded and stored in place; an edge one through
        // `out`, which starts as its part of C, the bias or zeros.
        let whole = height == 2 * TILE && (c0 + 2) * TILE <= c.n;
        // Inside this task's rows of C for a whole block (wrapping: an edge block's may not be).
        let in_c = [0, TILE, TILE * c.stride, TILE * c.stride + TILE]
            .map(|o| rows.wrapping_add(c0 * TILE + o));
        let out_tiles = out.each_mut().map(|t| t.as_mut_ptr().cast::<f32>());
        let stored = match whole {
            true => (in_c, c.stride * 4),
            false => (out_tiles, TILE * 4),
        };
        let init = match (start, whole) {
            (Start::Zero, true) => None,
            (Start::Onto, true) => Some((in_c.map(|p| p.cast_const()), c.stride * 4)),
            (Start::Bias(_), _) => {
                let b = bias.expect("a padded bias");
                let line = |t: usize| b[c0 + t % 2].0.as_ptr();
                Some(([0, 1, 2, 3].map(line), 0))
            }
            (_, false) => {
                for (t, tile) in out.iter_mut().enumerate() {
                    tile.fill(F32Line::default());
                    if matches!(start, Start::Onto) {
                        // SAFETY: the block's part of C, in this task's rows.
                        unsafe { edge.copy(t, tile, true) };
                    }
                }
                Some((out_tiles.map(|p| p.cast_const()), TILE * 4))
            }
        };
        // The next block of C: this row's next column pair, else the next row's first (which
        // may be another task's; after C's last row, none).
        let next = match (c0 + 2 < right.row_tiles, (pair + 1) * 2 * TILE < c.m) {
            _ if c.scratch => None,
            (true, _) => Some(rows.wrapping_add((c0 + 2) * TILE)),
            (false, true) => Some(rows.wrapping_add(2 * TILE * c.stride)),
            (false, false) => None,
        };
        if let Some(next) = next {
            lines_for_writing(next, c.stride);
        }
        // SAFETY: every operand tile lies inside its packed buffer (both are padded to whole
        // tile pairs); `init` and `stored` point at four 16 × 16 f32 tiles with their row
        // strides, in C, in `out` or in the bias lines (stride 0: one line for every row).
        unsafe { tile_products(left, right, r0, c0, init, stored) };
        if !whole {
            for (t, tile) in out.iter_mut().enumerate() {
                // SAFETY: the block's part of C, in this task's rows.
                unsafe { edge.copy(t, tile, false) };
            }
        }
    }
    if let Some(then) = c.then {
        for i in 0..height {
            // SAFETY: row i of this task's rows, all of it written above.
            let row = unsafe { std::slice::from_raw_parts_mut(rows.add(i * c.stride), c.n) };
            then(pair * 2 * TILE + i, row);
        }
    }
    if c.scratch {
        SCRATCH.set(scratch);
    }
}

/// Brings the cache lines of the 32 × 32 block of C at `at` (rows `stride` apart) into this
/// core's L1 (`PREFETCHT0`) while the block before it is multiplied: a fresh output of
/// megabytes is in no cache of this core, and each of a block's tile stores otherwise waited
/// for its 16 lines to come, one block after another (attention's P·V, whose output rows lie
/// 1,536 bytes apart, spent over half its time in tile stores). A line fetched so, held by
/// no other core, is written without a second request. `PREFETCHW` (asking for the lines
/// for writing, with `asm!`) measured the same: MiniLM's step lower in 3 of 5 alternated
/// pairs, model A's in 1 of 3. A hint: rows past C's end (an edge block's) are never faulted
/// on.
#[cfg(target_arch = "x86_64")]
fn lines_for_writing(at: *mut f32, stride: usize) {
    use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
    for i in 0..2 * TILE {
        let row = at.wrapping_add(i * stride).cast::<i8>().cast_const();
        // 128 bytes from any 4-byte boundary lie on at most three lines.
        for offset in [0, 64, 124] {
            // SAFETY: a prefetch only hints; it never faults, whatever the address.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(offset)) };
        }
    }
}

/// A 32 × 32 block at tile column `c0` of the block row at `rows` (`height` rows of C, `n`
/// wide, `stride` apart) that does not lie whole inside C.
#[cfg(target_arch = "x86_64")]
struct EdgeBlock {
    rows: *mut f32,
    n: usize,
    stride: usize,
    height: usize,
    c0: usize,
}

#[cfg(target_arch = "x86_64")]
impl EdgeBlock {
    /// Copies the part of tile `t` that lies inside C from C into `tile` (`into_tile`) or back.
    ///
    /// # Safety
    /// `rows` is this task's block row of C.
    unsafe fn copy(&self, t: usize, tile: &mut [F32Line; TILE], into_tile: bool) {
        let (dr, dc) = (t / 2 * TILE, (self.c0 + t % 2) * TILE);
        let width = TILE.min(self.n.saturating_sub(dc));
        for (i, line) in tile
            .iter_mut()
            .enumerate()
            .take(self.height.saturating_sub(dr))
        {
            // SAFETY: row dr + i < height and columns dc .. dc + width < n: inside C.
            unsafe {
                let at = self.rows.add((dr + i) * self.stride + dc);
                match into_tile {
                    true => std::ptr::copy_nonoverlapping(at, line.0.as_mut_ptr(), width),
                    false => std::ptr::copy_nonoverlapping(line.0.as_ptr(), at, width),
                }
            }
        }
    }
}

/// One 32 × 32 block: the four C tiles loaded from `init` (pointers and row stride in bytes)
/// or zeroed, the products over the whole shared dimension added, the tiles stored to
/// `stored`.
///
/// # Safety
/// The tile configuration is loaded; `init` and `stored` hold four 16 × 16 f32 tiles with
/// their row strides, readable and writable; tile rows `r0`, `r0 + 1` of `left` and `c0`,
/// `c0 + 1` of `right` exist.
#[cfg(target_arch = "x86_64")]
unsafe fn tile_products(
    left: &Packed,
    right: &Packed,
    r0: usize,
    c0: usize,
    init: Option<([*const f32; 4], usize)>,
    (c, stride): ([*mut f32; 4], usize),
) {
    unsafe {
        match init {
            Some((i, s)) => std::arch::asm!(
                "tileloadd tmm0, [{o0} + {s}*1]",
                "tileloadd tmm1, [{o1} + {s}*1]",
                "tileloadd tmm2, [{o2} + {s}*1]",
                "tileloadd tmm3, [{o3} + {s}*1]",
                o0 = in(reg) i[0], o1 = in(reg) i[1], o2 = in(reg) i[2], o3 = in(reg) i[3],
                s = in(reg) s,
                options(nostack),
            ),
            None => std::arch::asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                options(nostack)
            ),
        }
        let operand_stride = (KTILE * 2) as isize;
        for kb in 0..left.k_tiles {
            std::arch::asm!(
                "tileloadd tmm4, [{a0} + {s}*1]",
                "tileloadd tmm5, [{a1} + {s}*1]",
                "tileloadd tmm6, [{b0} + {s}*1]",
                "tileloadd tmm7, [{b1} + {s}*1]",
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tdpbf16ps tmm1, tmm4, tmm7",
                "tdpbf16ps tmm2, tmm5, tmm6",
                "tdpbf16ps tmm3, tmm5, tmm7",
                a0 = in(reg) left.tile(r0, kb),
                a1 = in(reg) left.tile(r0 + 1, kb),
                b0 = in(reg) right.tile(c0, kb),
                b1 = in(reg) right.tile(c0 + 1, kb),
                s = in(reg) operand_stride,
                options(nostack),
            );
        }
        std::arch::asm!(
            "tilestored [{o0} + {s}*1], tmm0",
            "tilestored [{o1} + {s}*1], tmm1",
            "tilestored [{o2} + {s}*1], tmm2",
            "tilestored [{o3} + {s}*1], tmm3",
            o0 = in(reg) c[0], o1 = in(reg) c[1], o2 = in(reg) c[2], o3 = in(reg) c[3],
            s = in(reg) stride,
            options(nostack),
        );
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Says so and returns true where this machine cannot run the AMX kernels.
    pub(crate) fn no_amx() -> bool {
        if !available() {
            eprintln!("skipped: no AMX here");
        }
        !available()
    }

    /// C = A · B in f64 from the bf16 roundings of A and B.
    pub(crate) fn reference(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f64> {
        let r = |x: f32| from_bf16(to_bf16(x)) as f64;
        (0..m * n)
            .map(|ij| {
                (0..k)
                    .map(|p| r(a[ij / n * k + p]) * r(b[p * n + ij % n]))
                    .sum()
            })
            .collect()
    }

    fn pattern(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| {
                let h = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed);
                (h % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn bf16_rounds_to_nearest_even() {
        assert_eq!(to_bf16(1.0), 0x3f80);
        // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: to the even one, 1.
        assert_eq!(to_bf16(f32::from_bits(0x3f80_8000)), 0x3f80);
        assert_eq!(to_bf16(f32::from_bits(0x3f81_8000)), 0x3f82);
        assert_eq!(to_bf16(f32::from_bits(0x3f80_8001)), 0x3f81);
        assert!(from_bf16(to_bf16(f32::NAN)).is_nan());
        assert_eq!(from_bf16(to_bf16(-2.5)), -2.5);
    }

    #[test]
    fn products_match_an_f64_reference_on_odd_shapes() {
        if no_amx() {
            return;
        }
        for (m, k, n) in [
            (1, 1, 1),
            (17, 33, 15),
            (64, 384, 96),
            (45, 70, 50),
            (128, 32, 32),
        ] {
            let (a, b) = (pattern(m * k, 1), pattern(k * n, 7));
            let got = matmul(&a, &b, m, k, n, false);
            let want = reference(&a, &b, m, k, n);
            for (g, w) in got.iter().zip(&want) {
                // Only the f32 accumulation differs from the f64 sum of the same bf16 products.
                assert!(
                    (*g as f64 - w).abs() <= 1e-5 * (1.0 + w.abs()),
                    "{m}x{k}x{n}: {g} vs {w}"
                );
            }
            // Accumulated onto what C holds: C + A·B.
            let mut onto: Vec<f32> = (0..m * n).map(|i| i as f32).collect();
            matmul_into(
                &mut onto,
                Start::Onto,
                Source::rows(&a),
                &b,
                (m, k, n),
                false,
            );
            for (i, (o, g)) in onto.iter().zip(&got).enumerate() {
                assert!(
                    (o - (i as f32 + g)).abs() <= 1e-4 * (1.0 + o.abs()),
                    "{m}x{k}x{n} +="
                );
            }
            // From zero, whatever C held before.
            let mut over = vec![f32::NAN; m * n];
            matmul_into(
                &mut over,
                Start::Zero,
                Source::rows(&a),
                &b,
                (m, k, n),
                false,
            );
            assert_eq!(over, got, "{m}x{k}x{n} over NaN");
            // Started from a bias row under every row (whatever C held): bias + A·B.
            let bias: Vec<f32> = (0..n).map(|j| j as f32 - 3.5).collect();
            let mut biased = vec![f32::NAN; m * n];
            matmul_into(
                &mut biased,
                Start::Bias(&bias),
                Source::rows(&a),
                &b,
                (m, k, n),
                false,
            );
            for (i, (o, g)) in biased.iter().zip(&got).enumerate() {
                assert!(
                    (o - (bias[i % n] + g)).abs() <= 1e-4 * (1.0 + o.abs()),
                    "{m}x{k}x{n} bias"
                );
            }
            // Aᵀ given instead of A: the same products.
            let at: Vec<f32> = (0..k * m).map(|pi| a[pi % m * k + pi / m]).collect();
            assert_eq!(
                matmul_left_transposed(&at, &b, m, k, n),
                got,
                "{m}x{k}x{n} Aᵀ"
            );
            // Bᵀ given instead of B: the same products.
            let bt: Vec<f32> = (0..n * k).map(|jp| b[jp % k * n + jp / k]).collect();
            assert_eq!(
                matmul(&a, &bt, m, k, n, true),
                got,
                "{m}x{k}x{n} transposed"
            );
        }
    }

    #[test]
    fn block_products_read_strided_operands_and_write_strided_rows() {
        if no_amx() {
            return;
        }
        let (m, k, n) = (45, 40, 37);
        let (a, b) = (pattern(m * k, 3), pattern(k * n, 5));
        let want = matmul(&a, &b, m, k, n, false);
        // `rows` rows of `width` values `stride` apart, NaN between them (never read).
        let wide = |rows: usize, width: usize, stride: usize, at: &dyn Fn(usize, usize) -> f32| {
            (0..rows * stride)
                .map(|i| match i % stride < width {
                    true => at(i / stride, i % stride),
                    false => f32::NAN,
                })
                .collect::<Vec<f32>>()
        };
        let a_rows = wide(m, k, 50, &|i, p| a[i * k + p]);
        let a_cols = wide(k, m, 47, &|p, i| a[i * k + p]);
        let b_rows = wide(k, n, 39, &|p, j| b[p * n + j]);
        let b_cols = wide(n, k, 48, &|j, p| b[p * n + j]);
        for (name, left, right) in [
            (
                "A, Bᵀ",
                Source::rows(&a_rows).with_stride(50),
                Source::rows(&b_cols).with_stride(48),
            ),
            (
                "Aᵀ, B",
                Source::transposed(&a_cols).with_stride(47),
                Source::transposed(&b_rows).with_stride(39),
            ),
        ] {
            let mut c = vec![f32::NAN; m * 41];
            // SAFETY: c holds m rows 41 apart, each n ≤ 41 wide.
            unsafe { block_product((c.as_mut_ptr(), 41), Start::Zero, left, right, (m, k, n)) };
            for i in 0..m {
                assert_eq!(
                    &c[i * 41..i * 41 + n],
                    &want[i * n..(i + 1) * n],
                    "{name}, row {i}"
                );
                assert!(
                    c[i * 41 + n..(i + 1) * 41].iter().all(|x| x.is_nan()),
                    "{name}: wrote past n"
                );
            }
            // A scale of 1/4 (exact in bf16) on the left operand: a quarter of every value.
            let mut scaled = vec![0f32; m * n];
            // SAFETY: m × n values, rows n apart.
            unsafe {
                block_product(
                    (scaled.as_mut_ptr(), n),
                    Start::Zero,
                    left.scaled(0.25),
                    right,
                    (m, k, n),
                )
            };
            assert!(
                scaled.iter().zip(&want).all(|(s, w)| *s == w * 0.25),
                "{name} scaled"
            );
        }
    }

    #[test]
    fn a_single_row_with_any_stride_and_an_empty_shared_dimension() {
        if no_amx() {
            return;
        }
        // Attention's dV with one key: a 1-row left operand whose row stride is 1.
        let (k, n) = (40, 20);
        let (a, b) = (pattern(k, 17), pattern(k * n, 19));
        let want = matmul(&a, &b, 1, k, n, false);
        let mut got = vec![f32::NAN; n];
        let (left, right) = (Source::rows(&a).with_stride(1), Source::transposed(&b));
        // SAFETY: got holds 1 × n values.
        unsafe { block_product((got.as_mut_ptr(), n), Start::Zero, left, right, (1, k, n)) };
        assert_eq!(got, want);
        // k = 0: the product is the start, here zero.
        assert_eq!(matmul(&[], &[], 3, 0, 5, false), vec![0.0; 15]);
    }

    #[test]
    fn rows_pass_through_then_once_each_after_their_products() {
        if no_amx() {
            return;
        }
        let (m, k, n) = (70, 64, 50);
        let (a, b) = (pattern(m * k, 11), pattern(k * n, 13));
        let want: Vec<f32> = matmul(&a, &b, m, k, n, false)
            .iter()
            .enumerate()
            .map(|(j, v)| v * 2.0 + (j / n) as f32)
            .collect();
        let mut got = vec![f32::NAN; m * n];
        let then =
            |i: usize, row: &mut [f32]| row.iter_mut().for_each(|v| *v = *v * 2.0 + i as f32);
        // SAFETY: got holds m × n values.
        unsafe {
            let c = (got.as_mut_ptr(), Some(&then as RowsThen));
            matmul_raw(c, Start::Zero, Source::rows(&a), &b, (m, k, n), false);
        }
        assert_eq!(got, want);
    }

    #[test]
    fn bf16_representable_operands_multiply_exactly() {
        if no_amx() {
            return;
        }
        // Small integers are exact in bf16, and so are their sums in f32.
        let (m, k, n) = (33, 64, 40);
        let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 - 3.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 - 2.0).collect();
        let got = matmul(&a, &b, m, k, n, false);
        let want = reference(&a, &b, m, k, n);
        assert!(got.iter().zip(&want).all(|(g, w)| *g as f64 == *w));
    }
}
