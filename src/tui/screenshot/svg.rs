//! A drawn frame as SVG: one rectangle per run of cells sharing a background, one `<text>` per
//! run sharing a style, each stretched to exactly its cells so that columns line up whatever
//! monospace font the viewer has.

use ratatui::buffer::{Buffer, Cell};
use ratatui::style::Modifier;
use std::fmt::Write;

use super::palette::{BACKGROUND, Rgb, cell_colors, hex};

/// A cell's size in pixels at the 14 px font: DejaVu Sans Mono's advance (0.602 em) and
/// its ascent to descent (1.164 em), so that box-drawing lines meet from row to row.
pub const CELL_W: f64 = 8.43;
pub const CELL_H: f64 = 16.3;
/// From a row's top to its text's baseline (the ascent, 0.928 em).
const BASELINE: f64 = 13.0;
pub const MARGIN: f64 = 10.0;

/// How one cell is drawn; runs of equal styles become one element.
#[derive(Clone, Copy, PartialEq)]
struct Look {
    fg: Rgb,
    bg: Rgb,
    modifier: Modifier,
}

fn look(cell: &Cell) -> Look {
    let (fg, bg) = cell_colors(cell.fg, cell.bg, cell.modifier);
    Look {
        fg,
        bg,
        modifier: cell.modifier,
    }
}

pub fn render(buffer: &Buffer) -> String {
    let area = buffer.area;
    let (w, h) = (
        area.width as f64 * CELL_W + 2.0 * MARGIN,
        area.height as f64 * CELL_H + 2.0 * MARGIN,
    );
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" \
         viewBox=\"0 0 {w} {h}\" font-family=\"'DejaVu Sans Mono', Menlo, Consolas, \
         'Liberation Mono', monospace\" font-size=\"14\" xml:space=\"preserve\" \
         shape-rendering=\"crispEdges\">\n\
         <rect width=\"100%\" height=\"100%\" rx=\"6\" fill=\"{}\"/>\n",
        hex(BACKGROUND)
    );
    for y in 0..area.height {
        let row: Vec<&Cell> = (0..area.width)
            .map(|x| &buffer[(area.x + x, area.y + y)])
            .collect();
        backgrounds(&mut svg, &row, y);
        texts(&mut svg, &row, y);
    }
    svg.push_str("</svg>\n");
    svg
}

/// Runs of `row` whose `key` is equal, as (first column, cells).
fn runs<'a, K: PartialEq>(
    row: &'a [&'a Cell],
    key: impl Fn(&Cell) -> K,
) -> impl Iterator<Item = (usize, &'a [&'a Cell])> {
    let mut start = 0;
    std::iter::from_fn(move || {
        if start >= row.len() {
            return None;
        }
        let k = key(row[start]);
        let len = row[start..].iter().take_while(|c| key(c) == k).count();
        let run = (start, &row[start..start + len]);
        start += len;
        Some(run)
    })
}

fn backgrounds(svg: &mut String, row: &[&Cell], y: u16) {
    for (x, cells) in runs(row, |c| look(c).bg) {
        let bg = look(cells[0]).bg;
        if bg != BACKGROUND {
            let _ = writeln!(
                svg,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{CELL_H}\" fill=\"{}\"/>",
                MARGIN + x as f64 * CELL_W,
                MARGIN + y as f64 * CELL_H,
                cells.len() as f64 * CELL_W,
                hex(bg)
            );
        }
    }
}

fn texts(svg: &mut String, row: &[&Cell], y: u16) {
    for (x, cells) in runs(row, look) {
        let text: String = cells.iter().map(|c| c.symbol()).collect();
        let look = look(cells[0]);
        if text.trim().is_empty() || look.modifier.contains(Modifier::HIDDEN) {
            continue;
        }
        // Leading and trailing blanks need no glyphs: the text starts at its first mark.
        let lead = text.chars().take_while(|c| *c == ' ').count();
        let body = text.trim();
        let cols = cells.len() - lead - (text.chars().rev().take_while(|c| *c == ' ').count());
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" textLength=\"{:.1}\" lengthAdjust=\"spacingAndGlyphs\" \
             fill=\"{}\"{}>{}</text>",
            MARGIN + (x + lead) as f64 * CELL_W,
            MARGIN + y as f64 * CELL_H + BASELINE,
            cols as f64 * CELL_W,
            hex(look.fg),
            attributes(look.modifier),
            escape(body)
        );
    }
}

fn attributes(m: Modifier) -> String {
    let mut a = String::new();
    if m.contains(Modifier::BOLD) {
        a.push_str(" font-weight=\"bold\"");
    }
    if m.contains(Modifier::DIM) {
        a.push_str(" fill-opacity=\"0.6\"");
    }
    if m.contains(Modifier::ITALIC) {
        a.push_str(" font-style=\"italic\"");
    }
    match (
        m.contains(Modifier::UNDERLINED),
        m.contains(Modifier::CROSSED_OUT),
    ) {
        (true, true) => a.push_str(" text-decoration=\"underline line-through\""),
        (true, false) => a.push_str(" text-decoration=\"underline\""),
        (false, true) => a.push_str(" text-decoration=\"line-through\""),
        (false, false) => {}
    }
    a
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            // XML 1.0 has no place for other control characters.
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::layout::Rect;
    use ratatui::style::{Color, Style};

    #[test]
    fn runs_of_one_style_become_one_text_at_their_column() {
        let mut buf = Buffer::empty(Rect::new(0, 0, 12, 2));
        buf.set_string(1, 0, "ab<c", Style::default().fg(Color::Red));
        buf.set_string(5, 0, "d", Style::default().fg(Color::Red).bg(Color::Blue));
        buf.set_string(0, 1, "x", Style::default().add_modifier(Modifier::BOLD));
        let svg = render(&buf);
        // "ab<c" starts at column 1, spans 4 cells, escaped.
        assert!(
            svg.contains(&format!(
                "<text x=\"{:.1}\" y=\"{:.1}\" textLength=\"{:.1}\" lengthAdjust=\"spacingAndGlyphs\" \
                 fill=\"#cd3131\">ab&lt;c</text>",
                MARGIN + CELL_W,
                MARGIN + BASELINE,
                4.0 * CELL_W
            )),
            "{svg}"
        );
        // The blue cell: its own background and text run.
        assert!(svg.contains("fill=\"#2472c8\"/>"), "{svg}");
        assert!(svg.contains(">d</text>"), "{svg}");
        assert!(svg.contains("font-weight=\"bold\">x</text>"), "{svg}");
        assert_eq!(svg.matches("<text").count(), 3, "{svg}");
    }
}
