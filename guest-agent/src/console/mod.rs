//! Requests typed on the serial console.
//!
//! The console is read by whoever started the VM (husk-vmm's user, a test), never by
//! the guest's containers: a line `poweroff` ends the VM, a line `status` prints what
//! the guest is doing ([`status`]), a look inside a guest that stopped answering on
//! vsock. Anything else is answered with a short notice.

pub mod status;

/// A request read from the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleRequest {
    /// End the VM now.
    PowerOff,
    /// Print the guest's processes and TCP sockets ([`status::report`]).
    Status,
}

/// Reads one console line. Surrounding blanks and a trailing `\r` are ignored;
/// blank lines give `Ok(None)`; an unknown word gives back the trimmed line.
pub fn parse_line(line: &str) -> Result<Option<ConsoleRequest>, &str> {
    match line.trim() {
        "" => Ok(None),
        "poweroff" => Ok(Some(ConsoleRequest::PowerOff)),
        "status" => Ok(Some(ConsoleRequest::Status)),
        other => Err(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poweroff_is_recognised_with_serial_line_endings() {
        assert_eq!(
            parse_line("poweroff\r\n"),
            Ok(Some(ConsoleRequest::PowerOff))
        );
        assert_eq!(
            parse_line("  poweroff "),
            Ok(Some(ConsoleRequest::PowerOff))
        );
    }

    #[test]
    fn status_is_recognised() {
        assert_eq!(parse_line("status\r\n"), Ok(Some(ConsoleRequest::Status)));
    }

    #[test]
    fn blank_lines_are_not_requests() {
        assert_eq!(parse_line("\r\n"), Ok(None));
    }

    #[test]
    fn unknown_words_are_reported_back() {
        assert_eq!(parse_line("reboot now\n"), Err("reboot now"));
    }
}
