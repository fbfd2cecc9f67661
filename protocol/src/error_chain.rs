//! The one way husk prints an error: the error and each of its sources, joined with
//! `: ` (every `thiserror` message leaves its cause to `#[source]`, so nothing is
//! said twice).

/// An error and its sources, joined with `: `.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot open the state")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn each_source_is_said_once() {
        let e = Outer(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no such file",
        ));
        assert_eq!(error_chain(&e), "cannot open the state: no such file");
    }
}
