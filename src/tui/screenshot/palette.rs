//! Terminal colours as RGB: the 16 named ones as a dark terminal theme draws them (close to
//! VS Code's default), the 256-colour cube, and the defaults for `Color::Reset`.

use ratatui::style::{Color, Modifier};

pub type Rgb = (u8, u8, u8);

/// The screen's own foreground and background (`Color::Reset`).
pub const FOREGROUND: Rgb = (0xd4, 0xd4, 0xd4);
pub const BACKGROUND: Rgb = (0x1e, 0x1e, 0x1e);

const NAMED: [Rgb; 16] = [
    (0x00, 0x00, 0x00), // black
    (0xcd, 0x31, 0x31), // red
    (0x0d, 0xbc, 0x79), // green
    (0xe5, 0xe5, 0x10), // yellow
    (0x24, 0x72, 0xc8), // blue
    (0xbc, 0x3f, 0xbc), // magenta
    (0x11, 0xa8, 0xcd), // cyan
    (0xe5, 0xe5, 0xe5), // gray (white)
    (0x76, 0x76, 0x76), // dark gray (bright black)
    (0xf1, 0x4c, 0x4c), // light red
    (0x23, 0xd1, 0x8b), // light green
    (0xf5, 0xf5, 0x43), // light yellow
    (0x3b, 0x8e, 0xea), // light blue
    (0xd6, 0x70, 0xd6), // light magenta
    (0x29, 0xb8, 0xdb), // light cyan
    (0xff, 0xff, 0xff), // white (bright white)
];

/// `color` as RGB; `Reset` is `default`.
pub fn rgb(color: Color, default: Rgb) -> Rgb {
    match color {
        Color::Reset => default,
        Color::Black => NAMED[0],
        Color::Red => NAMED[1],
        Color::Green => NAMED[2],
        Color::Yellow => NAMED[3],
        Color::Blue => NAMED[4],
        Color::Magenta => NAMED[5],
        Color::Cyan => NAMED[6],
        Color::Gray => NAMED[7],
        Color::DarkGray => NAMED[8],
        Color::LightRed => NAMED[9],
        Color::LightGreen => NAMED[10],
        Color::LightYellow => NAMED[11],
        Color::LightBlue => NAMED[12],
        Color::LightMagenta => NAMED[13],
        Color::LightCyan => NAMED[14],
        Color::White => NAMED[15],
        Color::Rgb(r, g, b) => (r, g, b),
        Color::Indexed(i) => indexed(i),
    }
}

/// xterm's 256 colours: the 16 named, a 6x6x6 cube, then 24 grays.
fn indexed(i: u8) -> Rgb {
    match i {
        0..=15 => NAMED[i as usize],
        16..=231 => {
            let level = |v: u8| if v == 0 { 0 } else { 55 + 40 * v };
            let v = i - 16;
            (level(v / 36), level(v / 6 % 6), level(v % 6))
        }
        _ => {
            let g = 8 + 10 * (i - 232);
            (g, g, g)
        }
    }
}

/// A cell's drawn colours (foreground, background), with `REVERSED` applied.
pub fn cell_colors(fg: Color, bg: Color, modifier: Modifier) -> (Rgb, Rgb) {
    let (fg, bg) = (rgb(fg, FOREGROUND), rgb(bg, BACKGROUND));
    if modifier.contains(Modifier::REVERSED) {
        (bg, fg)
    } else {
        (fg, bg)
    }
}

pub fn hex((r, g, b): Rgb) -> String {
    format!("#{r:02x}{g:02x}{b:02x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cube_and_the_grays_are_xterms() {
        assert_eq!(indexed(16), (0, 0, 0));
        assert_eq!(indexed(196), (255, 0, 0));
        assert_eq!(indexed(231), (255, 255, 255));
        assert_eq!(indexed(232), (8, 8, 8));
        assert_eq!(indexed(255), (238, 238, 238));
        assert_eq!(
            cell_colors(Color::Red, Color::Reset, Modifier::REVERSED),
            (BACKGROUND, NAMED[1])
        );
    }
}
