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

const WINDOWS_RESERVED: [&str; 22] = [
    "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8",
    "COM9", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
];

/// A safe single-component file name derived from `wire_name`, keeping its extension when it can.
pub fn sanitize_file_name(wire_name: &str) -> String {
    // Keep only the last path component of any platform's separators.
    let last = wire_name.rsplit(['/', '\\']).next().unwrap_or_default();
    let mut cleaned: String = last
        .chars()
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
    let stem = cleaned.split('.').next().unwrap_or_default();
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

/// The first of `name`, `name (1)`, `name (2)`, … (before the extension) for which `taken`
/// returns false, so a received file never overwrites another.
pub fn unique_file_name(name: &str, taken: impl Fn(&str) -> bool) -> String {
    if !taken(name) {
        return name.to_owned();
    }
    let (stem, ext) = split_extension(name);
    (1u32..)
        .map(|n| {
            let suffix = format!(" ({n}){ext}");
            let stem = shorten(stem, MAX_LOCAL_NAME_BYTES.saturating_sub(suffix.len()));
            format!("{stem}{suffix}")
        })
        .find(|candidate| !taken(candidate))
        .unwrap_or_else(|| FALLBACK.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
            prop_assert!(safe != "." && safe != ".." && !safe.starts_with('.'));
            let joined = std::path::Path::new("/downloads").join(&safe);
            prop_assert_eq!(joined.parent(), Some(std::path::Path::new("/downloads")));
        }
    }
}
