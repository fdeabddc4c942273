//! Turning a file name chosen by the other peer into one that is safe to create locally.
//!
//! The peer is not trusted: its name may contain `..`, path separators of any platform, NUL,
//! control characters, reserved Windows device names, or be 10,000 characters long. The result of
//! [`sanitize_file_name`] is always a single, non-empty path component of at most
//! [`MAX_LOCAL_NAME_BYTES`] bytes, so joining it to the downloads folder can never leave it.

/// Longest name written to disk, in bytes (the common file system limit is 255).
pub const MAX_LOCAL_NAME_BYTES: usize = 200;

/// Name used when nothing printable is left.
const FALLBACK: &str = "file";

/// Device names Windows opens instead of a file, whatever the extension (`con.txt` too). The
/// superscript digits are reserved as well: Windows reads `COM¹` as `COM1`.
const WINDOWS_RESERVED: [&str; 32] = [
    "CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$", "COM0", "COM1", "COM2", "COM3", "COM4",
    "COM5", "COM6", "COM7", "COM8", "COM9", "COM¹", "COM²", "COM³", "LPT0", "LPT1", "LPT2", "LPT3",
    "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9", "LPT¹", "LPT²", "LPT³",
];

/// Whether `c` is invisible or reorders text: Unicode's format characters (category Cf: bidi
/// embeddings, overrides and isolates, zero-width spaces and joiners, the BOM, tag characters...),
/// the line and paragraph separators, and the invisible fillers that render as nothing. A name
/// holding one can show as something else than it is: `invoice\u{202E}fdp.exe` reads
/// "invoiceexe.pdf".
pub fn is_invisible_or_bidi(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{0600}'..='\u{0605}'
            | '\u{06DD}'
            | '\u{070F}'
            | '\u{0890}'..='\u{0891}'
            | '\u{08E2}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{110BD}'
            | '\u{110CD}'
            | '\u{13430}'..='\u{1343F}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

/// `text` without control, invisible or bidi characters (see [`is_invisible_or_bidi`]): what a
/// name from the peer may show. Other characters, emoji and every script, are kept.
pub fn visible_text(text: &str) -> String {
    text.chars()
        .filter(|&c| !c.is_control() && !is_invisible_or_bidi(c))
        .collect()
}

/// A safe single-component file name derived from `wire_name`, keeping its extension when it can.
pub fn sanitize_file_name(wire_name: &str) -> String {
    // Keep only the last path component of any platform's separators.
    let last = wire_name.rsplit(['/', '\\']).next().unwrap_or_default();
    let mut cleaned: String = last
        .chars()
        .filter(|&c| !is_invisible_or_bidi(c))
        .map(|c| match c {
            c if c.is_control() => '_',
            ':' | '*' | '?' | '"' | '<' | '>' | '|' => '_',
            c => c,
        })
        .collect();
    // No leading dots (hidden files, `.`/`..`) and no trailing dots or spaces (Windows).
    cleaned = cleaned
        .trim_start_matches(['.', ' '])
        .trim_end_matches(['.', ' '])
        .to_owned();
    if cleaned.is_empty() {
        cleaned = FALLBACK.to_owned();
    }
    // Windows ignores trailing spaces before the extension: `nul .txt` is `NUL` too.
    let stem = cleaned.split('.').next().unwrap_or_default().trim_end();
    if WINDOWS_RESERVED
        .iter()
        .any(|r| r.eq_ignore_ascii_case(stem))
    {
        cleaned.insert(0, '_');
    }
    shorten(&cleaned, MAX_LOCAL_NAME_BYTES)
}

/// Cuts `name` to `max` bytes on a character boundary, keeping a short extension.
fn shorten(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_owned();
    }
    let (stem, ext) = split_extension(name);
    let ext = if ext.len() <= 16 { ext } else { "" };
    let room = max - ext.len();
    let mut end = room.min(stem.len());
    while !stem.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{}", &stem[..end], ext)
}

/// `("report", ".pdf")` for `report.pdf`; the extension includes its dot.
fn split_extension(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(0) | None => (name, ""),
        Some(i) => name.split_at(i),
    }
}

/// A name like `name` (`name (1)`, `name (2)`, … before the extension) for which `taken`
/// returns false, so a received file never overwrites another: the first free one when the
/// taken ones are numbered without gaps, as received files are.
///
/// Why not simply try 1, 2, 3…: a peer sending ten thousand files called `a.txt` would make the
/// n-th cost n probes of the disk (quadratic). Past the first 16 this gallops (32, 64, …) to a
/// free number and bisects back, so any name costs O(log n) probes.
pub fn unique_file_name(name: &str, taken: impl Fn(&str) -> bool) -> String {
    if !taken(name) {
        return name.to_owned();
    }
    let (stem, ext) = split_extension(name);
    let numbered = |n: u64| {
        let suffix = format!(" ({n}){ext}");
        let stem = shorten(stem, MAX_LOCAL_NAME_BYTES.saturating_sub(suffix.len()));
        format!("{stem}{suffix}")
    };
    if let Some(free) = (1..=16).map(numbered).find(|c| !taken(c)) {
        return free;
    }
    // 16 is taken: find a free power of two, then the first free number after the last taken
    // one between it and the previous power.
    let (mut lo, mut hi) = (16u64, 32u64);
    while taken(&numbered(hi)) {
        if hi >= 1 << 40 {
            return FALLBACK.to_owned();
        }
        (lo, hi) = (hi, hi * 2);
    }
    // `lo` taken, `hi` free.
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if taken(&numbered(mid)) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    numbered(hi)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ten_thousand_same_names_cost_few_probes_each() {
        let taken: std::collections::HashSet<String> = std::iter::once("a.txt".to_owned())
            .chain((1..=10_000).map(|n| format!("a ({n}).txt")))
            .collect();
        let probes = std::cell::Cell::new(0);
        let name = unique_file_name("a.txt", |c| {
            probes.set(probes.get() + 1);
            taken.contains(c)
        });
        assert_eq!(name, "a (10001).txt");
        assert!(probes.get() <= 50, "{} probes", probes.get());
        // Few taken: the first free number, as before.
        let few = ["a.txt", "a (1).txt", "a (2).txt"];
        assert_eq!(unique_file_name("a.txt", |c| few.contains(&c)), "a (3).txt");
        // With gaps the answer is free, if not the smallest.
        let gappy: std::collections::HashSet<String> = (1..=100)
            .filter(|n| n % 7 != 0)
            .map(|n| format!("b ({n}).txt"))
            .chain(["b.txt".to_owned(), "b (7).txt".into(), "b (14).txt".into()])
            .collect();
        let picked = unique_file_name("b.txt", |c| gappy.contains(c));
        assert!(!gappy.contains(&picked), "{picked}");
    }

    #[test]
    fn hostile_names_become_single_components() {
        let cases = [
            ("../../etc/passwd", "passwd"),
            ("..\\..\\windows\\system32\\evil.dll", "evil.dll"),
            ("..", "file"),
            (".", "file"),
            ("", "file"),
            ("/", "file"),
            ("a\0b.txt", "a_b.txt"),
            ("line\nbreak.txt", "line_break.txt"),
            (".bashrc", "bashrc"),
            ("CON", "_CON"),
            ("con.txt", "_con.txt"),
            ("report. ", "report"),
            ("C:evil.txt", "C_evil.txt"),
            ("holiday photo.jpg", "holiday photo.jpg"),
            ("résumé 📄.pdf", "résumé 📄.pdf"),
        ];
        for (wire, local) in cases {
            assert_eq!(sanitize_file_name(wire), local, "{wire:?}");
        }
    }

    #[test]
    fn invisible_and_reordering_characters_are_removed() {
        let cases = [
            // Right-to-left override: shows as "invoiceexe.pdf".
            ("invoice\u{202E}fdp.exe", "invoicefdp.exe"),
            ("a\u{200B}b\u{200D}c\u{FEFF}.txt", "abc.txt"),
            ("\u{2066}evil\u{2069}.pdf", "evil.pdf"),
            ("tag\u{E0041}\u{E007F}s.txt", "tags.txt"),
            ("line\u{2028}sep.txt", "linesep.txt"),
            ("\u{202E}\u{200B}", "file"),
        ];
        for (wire, local) in cases {
            assert_eq!(sanitize_file_name(wire), local, "{wire:?}");
        }
        assert_eq!(visible_text("Ada\u{202E}\u{200B} ✨"), "Ada ✨");
        assert_eq!(visible_text("日本語 عربى"), "日本語 عربى");
    }

    #[test]
    fn every_windows_device_name_is_defused() {
        for name in [
            "CONIN$",
            "conout$.txt",
            "COM¹",
            "lpt³.log",
            "COM0",
            "LPT9.x",
            "nul .txt",
            "AUX",
        ] {
            let safe = sanitize_file_name(name);
            assert!(safe.starts_with('_'), "{name} -> {safe}");
        }
        assert_eq!(sanitize_file_name("COM10"), "COM10");
        assert_eq!(sanitize_file_name("console.txt"), "console.txt");
    }

    #[test]
    fn very_long_names_are_cut_keeping_the_extension() {
        let name = format!("{}.tar.gz", "ü".repeat(10_000));
        let safe = sanitize_file_name(&name);
        assert!(safe.len() <= MAX_LOCAL_NAME_BYTES);
        assert!(safe.ends_with(".gz"), "{safe}");
    }

    #[test]
    fn duplicates_get_numbered() {
        let existing = ["a.txt", "a (1).txt", "noext"];
        let taken = |n: &str| existing.contains(&n);
        assert_eq!(unique_file_name("a.txt", taken), "a (2).txt");
        assert_eq!(unique_file_name("b.txt", taken), "b.txt");
        assert_eq!(unique_file_name("noext", taken), "noext (1)");
    }

    proptest! {
        #[test]
        fn sanitized_names_are_always_safe(name in "\\PC{0,300}|[./\\\\\\x00-\\x1f]{0,40}") {
            let safe = sanitize_file_name(&name);
            prop_assert!(!safe.is_empty());
            prop_assert!(safe.len() <= MAX_LOCAL_NAME_BYTES);
            prop_assert!(!safe.contains(['/', '\\', '\0']));
            prop_assert!(!safe.chars().any(char::is_control));
            prop_assert!(!safe.chars().any(is_invisible_or_bidi));
            prop_assert!(safe != "." && safe != ".." && !safe.starts_with('.'));
            let joined = std::path::Path::new("/downloads").join(&safe);
            prop_assert_eq!(joined.parent(), Some(std::path::Path::new("/downloads")));
        }
    }
}
