//! Container ids: runc's rule.

use crate::error::RuntimeError;

/// The longest id accepted (a file name must fit in 255 bytes with room to spare
/// for the store's temporary names, so well below that in practice, but runc's
/// limit is the file-name limit).
const MAX_ID_LEN: usize = 200;

/// Checks an id against runc's rule `^[\w+-\.]+$` (in that class `+-\.` is the range
/// `+ , - .`), refusing `.` and `..`, so that an id is always one plain path
/// component of the store.
pub fn validate_id(id: &str) -> Result<(), RuntimeError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | ',' | '-' | '.');
    if id.is_empty() || id.len() > MAX_ID_LEN || id == "." || id == ".." || !id.chars().all(allowed)
    {
        return Err(RuntimeError::InvalidId(id.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_runc_ids() {
        for id in [
            "a",
            "abc-123",
            "my_container.1",
            "x+y,z",
            "A.B",
            "0",
            ".hidden",
        ] {
            assert!(validate_id(id).is_ok(), "{id}");
        }
    }

    #[test]
    fn refuses_paths_and_odd_characters() {
        for id in [
            "", ".", "..", "a/b", "../x", "/abs", "a b", "a\nb", "é", "a@b", "a:b",
        ] {
            let err = validate_id(id).unwrap_err();
            assert!(matches!(err, RuntimeError::InvalidId(_)), "{id}");
        }
        assert!(validate_id(&"x".repeat(MAX_ID_LEN + 1)).is_err());
    }
}
