//! Line splitting and trimming as Mosquitto's file readers do them.

/// The lines of `bytes`, numbered from 0, without their `\n`. A final line without `\n` counts;
/// the empty remainder after a final `\n` does not.
pub(crate) fn lines(bytes: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let empty = bytes.is_empty();
    body.split(|&b| b == b'\n')
        .enumerate()
        .filter(move |_| !empty)
}

/// C's `isspace` in the "C" locale: space, `\t`, `\n`, `\v`, `\f`, `\r`.
pub(crate) fn is_c_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

/// Removes C whitespace from both ends.
pub(crate) fn trim(s: &str) -> &str {
    s.trim_matches(is_c_space)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_number_from_zero_and_drop_the_final_newline() {
        let got: Vec<_> = lines(b"a\n\nb").collect();
        assert_eq!(got, vec![(0, &b"a"[..]), (1, &b""[..]), (2, &b"b"[..])]);
        assert_eq!(lines(b"a\n").count(), 1);
        assert_eq!(lines(b"").count(), 0);
        assert_eq!(lines(b"\n").count(), 1);
    }

    #[test]
    fn trim_is_c_isspace() {
        assert_eq!(trim("\x0b\t a b\r\n\x0c"), "a b");
        assert_eq!(trim("\u{a0}x"), "\u{a0}x");
    }
}
