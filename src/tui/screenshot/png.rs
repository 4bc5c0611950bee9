//! A drawn frame as PNG, for viewers that take no SVG: each cell's background, then its glyph
//! from the embedded DejaVu Sans Mono (assets/fonts/README.md); Braille patterns, which DejaVu
//! lacks and the charts are made of, are drawn as dots.

use ab_glyph::{Font, FontRef, PxScale, ScaleFont, point};
use anyhow::Result;
use ratatui::buffer::Buffer;
use ratatui::style::Modifier;

use super::palette::{Rgb, cell_colors};

static FONT: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSansMono-subset.ttf");
/// Glyph height (ascent to descent) and so the cell's height, in pixels.
const SCALE: f32 = 18.0;

pub fn render(buffer: &Buffer) -> Result<Vec<u8>> {
    let font = FontRef::try_from_slice(FONT)?;
    let scaled = font.as_scaled(PxScale::from(SCALE));
    let cell_w = scaled.h_advance(font.glyph_id('M')).round() as usize;
    let cell_h = SCALE as usize;
    let area = buffer.area;
    let mut canvas = Canvas {
        width: area.width as usize * cell_w,
        pixels: vec![0; area.width as usize * cell_w * area.height as usize * cell_h * 3],
    };
    for y in 0..area.height {
        for x in 0..area.width {
            let cell = &buffer[(area.x + x, area.y + y)];
            let (mut fg, bg) = cell_colors(cell.fg, cell.bg, cell.modifier);
            if cell.modifier.contains(Modifier::DIM) {
                fg = mix(bg, fg, 0.6);
            }
            let (left, top) = (x as usize * cell_w, y as usize * cell_h);
            canvas.fill(left, top, cell_w, cell_h, bg);
            if cell.modifier.contains(Modifier::HIDDEN) {
                continue;
            }
            let Some(c) = cell.symbol().chars().next() else {
                continue;
            };
            if let Some(dots) = braille(c) {
                canvas.braille(left, top, (cell_w, cell_h), dots, fg);
                continue;
            }
            let bold = cell.modifier.contains(Modifier::BOLD) as usize;
            for dx in 0..=bold {
                canvas.glyph(&font, c, (left + dx, top), scaled.ascent(), fg);
            }
            if cell.modifier.contains(Modifier::UNDERLINED) {
                canvas.fill(left, top + cell_h - 2, cell_w, 1, fg);
            }
        }
    }
    crate::io::encode_png_rgb(
        canvas.width as u32,
        (area.height as usize * cell_h) as u32,
        &canvas.pixels,
    )
}

/// The dots of a Braille pattern (bit i = dot i + 1), or None for other characters.
fn braille(c: char) -> Option<u8> {
    let c = c as u32;
    (0x2800..=0x28ff).contains(&c).then(|| (c - 0x2800) as u8)
}

fn mix(a: Rgb, b: Rgb, t: f32) -> Rgb {
    let m = |a: u8, b: u8| (a as f32 + (b as f32 - a as f32) * t).round() as u8;
    (m(a.0, b.0), m(a.1, b.1), m(a.2, b.2))
}

struct Canvas {
    width: usize,
    pixels: Vec<u8>,
}

impl Canvas {
    /// Blends `color` into pixel (x, y) with coverage `alpha`.
    fn blend(&mut self, x: usize, y: usize, color: Rgb, alpha: f32) {
        let i = (y * self.width + x) * 3;
        if x >= self.width || i + 2 >= self.pixels.len() {
            return;
        }
        let old = (self.pixels[i], self.pixels[i + 1], self.pixels[i + 2]);
        let (r, g, b) = mix(old, color, alpha.clamp(0.0, 1.0));
        self.pixels[i..i + 3].copy_from_slice(&[r, g, b]);
    }

    fn fill(&mut self, left: usize, top: usize, w: usize, h: usize, color: Rgb) {
        for y in top..top + h {
            for x in left..left + w {
                self.blend(x, y, color, 1.0);
            }
        }
    }

    fn glyph(
        &mut self,
        font: &FontRef,
        c: char,
        (left, top): (usize, usize),
        ascent: f32,
        fg: Rgb,
    ) {
        let glyph = font
            .glyph_id(c)
            .with_scale_and_position(SCALE, point(left as f32, top as f32 + ascent));
        // Characters outside the embedded subset draw as nothing.
        if let Some(outline) = font.outline_glyph(glyph) {
            let bounds = outline.px_bounds();
            outline.draw(|gx, gy, coverage| {
                let (x, y) = (
                    bounds.min.x as i64 + gx as i64,
                    bounds.min.y as i64 + gy as i64,
                );
                if x >= 0 && y >= 0 {
                    self.blend(x as usize, y as usize, fg, coverage);
                }
            });
        }
    }

    /// Dots 1-3 and 7 down the left column, 4-6 and 8 down the right (Unicode's order).
    fn braille(&mut self, left: usize, top: usize, (w, h): (usize, usize), dots: u8, fg: Rgb) {
        const PLACES: [(usize, usize); 8] = [
            (0, 0),
            (0, 1),
            (0, 2),
            (1, 0),
            (1, 1),
            (1, 2),
            (0, 3),
            (1, 3),
        ];
        let size = (w / 4).max(1);
        for (bit, (col, row)) in PLACES.iter().enumerate() {
            if dots & (1 << bit) != 0 {
                let x = left + w / 4 + col * w / 2 - size / 2;
                let y = top + h / 8 + row * h / 4 - size / 2;
                self.fill(x, y, size, size, fg);
            }
        }
    }
}
