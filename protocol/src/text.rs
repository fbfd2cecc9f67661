//! Text from the other side made safe to show: a guest picks the messages its agent
//! answers with, and they reach operators' terminals (the CLI's errors), logs and
//! containerd. Control characters (terminal escapes, carriage returns, bells) are
//! written as escapes, and the text is cut at a bound.

/// The longest message, in characters, that [`printable`] keeps.
pub const MAX_MESSAGE_CHARS: usize = 2048;

/// `text` with every control character escaped (`\u{1b}`, `\n`, ...) and cut after
/// `max` characters, saying how much was left out.
pub fn printable(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max) + 32);
    for (kept, (at, c)) in text.char_indices().enumerate() {
        if kept == max {
            out.push_str(&format!(" [{} more bytes]", text.len() - at));
            return out;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_kept() {
        assert_eq!(
            printable("no such file: /bin/sh", 100),
            "no such file: /bin/sh"
        );
        assert_eq!(printable("héllo", 100), "héllo");
    }

    /// A hostile guest's message cannot drive the operator's terminal.
    #[test]
    fn escapes_and_control_characters_are_written_out() {
        let hostile = "ok\x1b]0;pwned\x07\r\x1b[2Jdone\n";
        let shown = printable(hostile, 100);
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert_eq!(shown, "ok\\u{1b}]0;pwned\\u{7}\\r\\u{1b}[2Jdone\\n");
    }

    #[test]
    fn long_text_is_cut_and_says_so() {
        let long = "x".repeat(4 << 20);
        let shown = printable(&long, MAX_MESSAGE_CHARS);
        assert!(shown.len() < MAX_MESSAGE_CHARS + 40, "{}", shown.len());
        assert!(shown.ends_with(&format!(" [{} more bytes]", (4 << 20) - MAX_MESSAGE_CHARS)));
        assert_eq!(printable("abc", 3), "abc");
    }
}
