//! What the figures (`compare --plot` curves, `eval --plot` confusion matrix, `attention --out`
//! heat map) share on the way to a file: the format a file name asks for, the embedded font,
//! one PNG-or-SVG backend dispatch, and an error type that tells a font failure from the rest.

use std::path::Path;

use anyhow::{anyhow, bail};
use plotters::coord::Shift;
use plotters::prelude::*;

/// The file formats the figures can be written as.
#[derive(Clone, Copy)]
pub enum ImageKind {
    Png,
    Svg,
}

impl ImageKind {
    /// The format a plot's file name asks for; anything but .png / .svg is an error, and so
    /// is a folder that does not exist (checked here, before any work, because plotters
    /// reports it as a debug dump of the OS error).
    pub fn of(path: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.is_dir()
        {
            bail!(
                "cannot plot to {}: there is no folder {}",
                path.display(),
                dir.display()
            );
        }
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("png") => Ok(ImageKind::Png),
            Some("svg") => Ok(ImageKind::Svg),
            _ => bail!(
                "cannot plot to {}: the file name must end in .png or .svg",
                path.display()
            ),
        }
    }
}

/// A failed drawing, split so that the curves plot can retry without text when the font fails.
pub(super) enum PlotError {
    Font(String),
    Other(String),
}

impl PlotError {
    /// The error a command reports when `path` could not be drawn.
    pub(super) fn cannot_draw(self, path: &Path) -> anyhow::Error {
        match self {
            PlotError::Font(m) | PlotError::Other(m) => {
                anyhow!("cannot draw {}: {m}", path.display())
            }
        }
    }
}

impl<E: std::error::Error + Send + Sync> From<DrawingAreaErrorKind<E>> for PlotError {
    fn from(e: DrawingAreaErrorKind<E>) -> Self {
        // plotters does not re-export `DrawingErrorKind`, so its Display is the only handle on
        // the font case ("backend error: Font loading error: ...").
        let message = e.to_string();
        if message.contains("Font loading error") {
            PlotError::Font(message)
        } else {
            PlotError::Other(message)
        }
    }
}

/// DejaVu Sans (assets/fonts; Bitstream Vera licence, see DejaVuSans-LICENSE.txt), the face
/// fontconfig resolved `sans-serif` to when plots used system fonts. Embedded so that `pipe`
/// links no font libraries and draws the same text on any machine.
const PLOT_FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// Makes [`PLOT_FONT`] the `sans-serif` family that the plots ask for (plotters' ab_glyph path
/// knows only registered fonts), once per process.
fn register_plot_font() {
    static REGISTERED: std::sync::Once = std::sync::Once::new();
    REGISTERED.call_once(|| {
        // The embedded font always parses (a test draws text with it); were it not to, text
        // would fail with plotters' font error and the plot would fall back to curves alone.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, PLOT_FONT);
    });
}

/// A figure that can draw itself on any plotters backend. A trait rather than a closure because
/// the drawing is generic over the backend ([`write_image`] picks it), which a closure cannot be.
pub(super) trait Figure {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), PlotError>
    where
        DB::ErrorType: 'static;
}

/// Draws `figure` at `size` into `path`, PNG or SVG as `kind` says, with the embedded font
/// registered.
pub(super) fn write_image(
    kind: ImageKind,
    path: &Path,
    size: (u32, u32),
    figure: &impl Figure,
) -> Result<(), PlotError> {
    register_plot_font();
    match kind {
        ImageKind::Png => {
            draw_and_present(&BitMapBackend::new(path, size).into_drawing_area(), figure)
        }
        ImageKind::Svg => {
            draw_and_present(&SVGBackend::new(path, size).into_drawing_area(), figure)
        }
    }
}

fn draw_and_present<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    figure: &impl Figure,
) -> Result<(), PlotError>
where
    DB::ErrorType: 'static,
{
    figure.draw(root)?;
    root.present()?;
    Ok(())
}
