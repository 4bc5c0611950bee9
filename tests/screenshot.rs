//! `selm-tui inspect RUN --screenshot FILE` and `scripts/screenshots.sh`, the command that
//! makes the README's pictures: on a real run of the embedded default, every view the script
//! draws is written as SVG and PNG, and each holds the TUI's frame: the SVG's text at the
//! cells' columns with their colours, the PNG's pixels in the cells' backgrounds.

use ratatui::buffer::Buffer;
use ratatui::style::Color;
use selm_tui::tui::screenshot::palette::{BACKGROUND, FOREGROUND, cell_colors, hex};
use selm_tui::tui::screenshot::svg::{CELL_H, CELL_W, MARGIN};
use selm_tui::tui::screenshot::{Shot, ShotView, frame};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_selm-tui")
}

fn ok(out: Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// A finished run of the embedded default in `dir`.
fn default_run(dir: &Path) -> PathBuf {
    ok(Command::new(bin())
        .args(["run", "--headless", "--out-dir"])
        .arg(dir.join("runs"))
        .env_remove("SELM_BACKEND")
        .output()
        .unwrap());
    std::fs::read_dir(dir.join("runs"))
        .unwrap()
        .next()
        .expect("a run directory")
        .unwrap()
        .path()
}

/// Each `<text>` of an SVG as (row, column, fill, text).
fn svg_texts(svg: &str) -> Vec<(usize, usize, String, String)> {
    let attr = |tag: &str, name: &str| -> String {
        let start = tag.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
        tag[start..][..tag[start..].find('"').unwrap()].to_string()
    };
    svg.split("<text ")
        .skip(1)
        .map(|t| {
            let (tag, rest) = t.split_once('>').unwrap();
            let tag = &format!(" {tag}");
            let text = rest.split_once("</text>").unwrap().0;
            let x: f64 = attr(tag, "x").parse().unwrap();
            let y: f64 = attr(tag, "y").parse().unwrap();
            let col = ((x - MARGIN) / CELL_W).round() as usize;
            let row = ((y - MARGIN) / CELL_H).floor() as usize;
            let text = text
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&amp;", "&");
            (row, col, attr(tag, "fill"), text)
        })
        .collect()
}

/// The buffer's rows as text.
fn rows(buf: &Buffer) -> Vec<String> {
    (0..buf.area.height)
        .map(|y| (0..buf.area.width).map(|x| buf[(x, y)].symbol()).collect())
        .collect()
}

/// The SVG holds the frame: every text at its cells' columns, every colour the cells have.
fn check_svg(svg: &str, buf: &Buffer) {
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    let want = rows(buf);
    let mut got: Vec<Vec<char>> = want.iter().map(|r| vec![' '; r.chars().count()]).collect();
    let mut fills = BTreeSet::new();
    for (row, col, fill, text) in svg_texts(svg) {
        for (i, c) in text.chars().enumerate() {
            got[row][col + i] = c;
        }
        fills.insert(fill);
    }
    for (y, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(&g.iter().collect::<String>(), w, "row {y}");
    }
    let want_fills: BTreeSet<String> = buf
        .content
        .iter()
        .filter(|c| !c.symbol().trim().is_empty())
        .map(|c| hex(cell_colors(c.fg, c.bg, c.modifier).0))
        .collect();
    assert_eq!(fills, want_fills);
}

/// The PNG is the frame's size in whole cells, and each blank cell is its background.
fn check_png(path: &Path, buf: &Buffer) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    let (w, h) = (info.width as usize, info.height as usize);
    let (cols, lines) = (buf.area.width as usize, buf.area.height as usize);
    assert!(
        w % cols == 0 && h % lines == 0,
        "{w}x{h} for {cols}x{lines} cells"
    );
    let (cw, ch) = (w / cols, h / lines);
    let mut coloured = 0;
    for y in 0..lines {
        for x in 0..cols {
            let cell = &buf[(x as u16, y as u16)];
            if !cell.symbol().trim().is_empty() {
                continue;
            }
            let (_, bg) = cell_colors(cell.fg, cell.bg, cell.modifier);
            let i = (y * ch * w + x * cw) * 3;
            assert_eq!(
                (pixels[i], pixels[i + 1], pixels[i + 2]),
                bg,
                "cell ({x}, {y}) {:?}",
                cell.symbol()
            );
            coloured += (bg != BACKGROUND) as usize;
        }
    }
    assert!(coloured > 0, "no cell with a background of its own");
    // Text is drawn: more foreground-coloured pixels than a blank frame has.
    let lit = pixels
        .chunks(3)
        .filter(|p| (p[0], p[1], p[2]) == FOREGROUND)
        .count();
    assert!(lit > 100, "{lit} text pixels");
}

#[test]
fn the_readme_pictures_command_draws_every_view_of_a_real_run() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("pictures");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/screenshots.sh");
    ok(Command::new(&script)
        .arg(&out)
        .env("SELM_TUI", bin())
        .env_remove("SELM_BACKEND")
        .output()
        .unwrap());
    for view in ["dashboard", "pair", "rank"] {
        for ext in ["svg", "png"] {
            let f = out.join(format!("{view}.{ext}"));
            assert!(
                std::fs::metadata(&f).unwrap().len() > 1000,
                "{}",
                f.display()
            );
        }
    }
    let pair = std::fs::read_to_string(out.join("pair.svg")).unwrap();
    for part in ["chosen", "rejected", "y_ref", "log-ratio", "READ-ONLY"] {
        assert!(pair.contains(part), "pair.svg lacks {part}");
    }
}

#[test]
fn each_view_is_the_tuis_frame() {
    let tmp = tempfile::tempdir().unwrap();
    let run = default_run(tmp.path());
    let views = [
        (ShotView::Dashboard, None),
        (ShotView::Pairs, None),
        (ShotView::Pair, Some(2)),
        (ShotView::Rank, Some(3)),
        (ShotView::Log, None),
    ];
    for (view, item) in views {
        let shot = Shot {
            view,
            width: 120,
            height: 40,
            iteration: Some(2),
            item,
        };
        let buf = frame(&run, shot).unwrap();
        let name = format!("{view:?}").to_lowercase();
        let svg_path = tmp.path().join(format!("{name}.svg"));
        let png_path = tmp.path().join(format!("{name}.png"));
        for path in [&svg_path, &png_path] {
            let mut cmd = Command::new(bin());
            cmd.arg("inspect").arg(&run).arg("--screenshot").arg(path);
            cmd.args(["--view", &name, "--size", "120x40", "--iteration", "2"]);
            if let Some(i) = item {
                cmd.args(["--item", &i.to_string()]);
            }
            ok(cmd.output().unwrap());
        }
        check_svg(&std::fs::read_to_string(&svg_path).unwrap(), &buf);
        check_png(&png_path, &buf);
    }
    // The pair inspector colours tokens by their log-ratio: more than one text colour.
    let pair = frame(
        &run,
        Shot {
            view: ShotView::Pair,
            width: 120,
            height: 40,
            iteration: None,
            item: None,
        },
    )
    .unwrap();
    let colours: std::collections::HashSet<_> = pair.content.iter().map(|c| c.fg).collect();
    assert!(colours.len() >= 4, "{colours:?}");
    assert!(colours.contains(&Color::Green) || colours.contains(&Color::LightRed));
}

#[test]
fn bad_screenshot_requests_name_the_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let run = default_run(tmp.path());
    let fails = |args: &[&str], what: &str| {
        let out = Command::new(bin())
            .arg("inspect")
            .arg(&run)
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(what),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    };
    let file = tmp.path().join("x.jpg");
    fails(&["--screenshot", file.to_str().unwrap()], ".svg or .png");
    let file = tmp.path().join("x.svg");
    let f = file.to_str().unwrap();
    fails(
        &["--screenshot", f, "--view", "pair", "--item", "100000"],
        "--item 100000",
    );
    fails(&["--screenshot", f, "--iteration", "9"], "--iteration 9");
    fails(&["--screenshot", f, "--size", "20x5"], "at least 60x20");
    fails(&["--view", "pair"], "--screenshot");
    assert!(!file.exists(), "a failed request wrote {}", file.display());
}
