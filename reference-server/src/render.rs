//! ASCII rendering of the grid (ACIP-SPEC.md 7.4 and 3.9): the latest RGB24 frame of every client, laid
//! out in a near-square grid, sampled to the receiving client's `width x height` characters, each cell's
//! luminance mapped onto a character ramp. Plain text, one line per row joined by `\n`, no colour: the
//! ANSI details of the real renderer are open (ACIP-SPEC.md 11.4) and a harness needs only a real,
//! changing, checksummed picture.

/// Dark to bright.
pub const RAMP: &[u8] = b" .:-=+*#%@";

/// One client's latest frame, as stored by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbFrame {
    pub width: u32,
    pub height: u32,
    /// Row-major RGB24; may be shorter than `width * height * 3` (the real server does not cross-check,
    /// ACIP-SPEC.md 3.7): missing pixels render as black.
    pub pixels: bytes::Bytes,
}

/// Columns and rows of a grid holding `n` sources: the real layout is near-square, columns first.
pub fn grid_shape(n: usize) -> (usize, usize) {
    if n == 0 {
        return (0, 0);
    }
    let mut cols = 1;
    while cols * cols < n {
        cols += 1;
    }
    (cols, n.div_ceil(cols))
}

/// Renders `frames` into `width x height` characters. Cells that have no source stay blank.
pub fn render_grid(frames: &[&RgbFrame], width: usize, height: usize) -> String {
    let mut out = Vec::with_capacity((width + 1) * height);
    let (cols, rows) = grid_shape(frames.len());
    for y in 0..height {
        for x in 0..width {
            let ch = if cols == 0 {
                b' '
            } else {
                // Cell of this character, and the position inside the cell.
                let (cw, ch_) = (width.div_ceil(cols), height.div_ceil(rows));
                let (cx, cy) = (x / cw.max(1), y / ch_.max(1));
                match frames.get(cy * cols + cx) {
                    Some(f) => sample(f, x - cx * cw, cw, y - cy * ch_, ch_),
                    None => b' ',
                }
            };
            out.push(ch);
        }
        if y + 1 < height {
            out.push(b'\n');
        }
    }
    String::from_utf8(out).expect("the ramp is ASCII")
}

/// The character for position (`x` of `w`, `y` of `h`) of a cell showing `f`, nearest-pixel sampled.
fn sample(f: &RgbFrame, x: usize, w: usize, y: usize, h: usize) -> u8 {
    let (fw, fh) = (f.width as usize, f.height as usize);
    if fw == 0 || fh == 0 {
        return b' ';
    }
    let px = (x * fw / w.max(1)).min(fw - 1);
    let py = (y * fh / h.max(1)).min(fh - 1);
    let i = (py * fw + px) * 3;
    let Some(rgb) = f.pixels.get(i..i + 3) else { return b' ' };
    // Rec. 709 luma in integer arithmetic (weights sum to 10000).
    let luma = (2126 * rgb[0] as u32 + 7152 * rgb[1] as u32 + 722 * rgb[2] as u32) / 10000;
    RAMP[(luma as usize * RAMP.len()) / 256]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn solid(w: u32, h: u32, v: u8) -> RgbFrame {
        RgbFrame { width: w, height: h, pixels: vec![v; (w * h * 3) as usize].into() }
    }

    #[test]
    fn grid_is_near_square() {
        assert_eq!(grid_shape(1), (1, 1));
        assert_eq!(grid_shape(2), (2, 1));
        assert_eq!(grid_shape(3), (2, 2));
        assert_eq!(grid_shape(9), (3, 3));
        assert_eq!(grid_shape(10), (4, 3));
    }

    #[test]
    fn two_sources_render_side_by_side() {
        let (black, white) = (solid(4, 4, 0), solid(4, 4, 255));
        let text = render_grid(&[&black, &white], 8, 2);
        assert_eq!(text, "    @@@@\n    @@@@");
        assert_eq!(text.len(), 8 * 2 + 1);
    }

    #[test]
    fn short_pixel_buffers_render_black_instead_of_panicking() {
        let f = RgbFrame { width: 100, height: 100, pixels: vec![255; 30].into() };
        let text = render_grid(&[&f], 10, 10);
        assert_eq!(text.as_bytes()[0], b'@');
        assert_eq!(text.as_bytes()[text.len() - 1], b' ');
    }
}
