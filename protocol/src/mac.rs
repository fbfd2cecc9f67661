//! MAC addresses in the text form both sides exchange (`xx:xx:xx:xx:xx:xx`).

/// Formats a MAC address as `xx:xx:xx:xx:xx:xx`.
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parses `xx:xx:xx:xx:xx:xx` (two hex digits a byte).
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut out {
        let part = parts.next().filter(|p| p.len() == 2)?;
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_addresses_round_trip_and_bad_ones_are_refused() {
        let mac = [0x02, 0xab, 0x00, 0x10, 0xff, 0x7e];
        assert_eq!(format_mac(&mac), "02:ab:00:10:ff:7e");
        assert_eq!(parse_mac("02:ab:00:10:ff:7e"), Some(mac));
        for bad in [
            "",
            "02:ab:00:10:ff",
            "02:ab:00:10:ff:7e:00",
            "2:ab:00:10:ff:7e",
            "zz:ab:00:10:ff:7e",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
    }
}
