//! What the guest sees of its virtio devices, for the boot report.

use std::path::Path;

/// The name of a virtio device ID (virtio 1.2, section 5).
pub fn virtio_name(id: u32) -> Option<&'static str> {
    Some(match id {
        1 => "net",
        2 => "block",
        3 => "console",
        4 => "entropy",
        19 => "vsock",
        26 => "fs",
        _ => return None,
    })
}

/// Parses a sysfs `device` attribute such as `0x0004`.
pub fn parse_device_id(text: &str) -> Option<u32> {
    u32::from_str_radix(text.trim().strip_prefix("0x")?, 16).ok()
}

/// Names of the virtio devices under `sysfs_virtio` (normally
/// `/sys/bus/virtio/devices`), sorted; unknown IDs appear as `id N`.
pub fn virtio_devices(sysfs_virtio: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(sysfs_virtio) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("device")).ok())
        .filter_map(|text| parse_device_id(&text))
        .map(|id| virtio_name(id).map_or_else(|| format!("id {id}"), str::to_owned))
        .collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysfs_ids_parse_and_name() {
        assert_eq!(parse_device_id("0x0004\n"), Some(4));
        assert_eq!(parse_device_id("4"), None);
        assert_eq!(virtio_name(4), Some("entropy"));
        assert_eq!(virtio_name(999), None);
    }

    #[test]
    fn devices_are_read_from_a_sysfs_like_tree() {
        let root = std::env::temp_dir().join(format!("husk-agent-sysfs-{}", std::process::id()));
        for (dir, id) in [
            ("virtio0", "0x0013\n"),
            ("virtio1", "0x0004\n"),
            ("virtio2", "0x0063\n"),
        ] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
            std::fs::write(root.join(dir).join("device"), id).unwrap();
        }
        assert_eq!(virtio_devices(&root), vec!["entropy", "id 99", "vsock"]);
        assert!(virtio_devices(&root.join("missing")).is_empty());
        std::fs::remove_dir_all(root).unwrap();
    }
}
