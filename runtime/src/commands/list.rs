//! `husk list`.

use crate::cli::OutputFormat;
use crate::container;
use crate::error::RuntimeError;
use crate::state::{Status, Store};
use std::fmt::Write as _;

/// Prints the containers: runc's table (ID PID STATUS BUNDLE CREATED OWNER), a JSON
/// array of OCI states, or (`--quiet`) ids only.
pub fn list(store: &Store, format: OutputFormat, quiet: bool) -> Result<(), RuntimeError> {
    let rows = container::state::list(store)?;
    if quiet {
        for (state, _) in &rows {
            println!("{}", state.id);
        }
        return Ok(());
    }
    match format {
        OutputFormat::Json => {
            let all: Vec<_> = rows.iter().map(|(s, st)| s.to_oci_json(*st)).collect();
            let json = serde_json::to_string(&all)
                .map_err(|e| RuntimeError::io("format list", std::io::Error::other(e)))?;
            println!("{json}");
        }
        OutputFormat::Table => {
            let table: Vec<[String; 6]> = rows
                .iter()
                .map(|(s, status)| {
                    let pid = match status {
                        Status::Stopped => 0,
                        _ => s.pid.unwrap_or(0),
                    };
                    [
                        s.id.clone(),
                        pid.to_string(),
                        status.to_string(),
                        s.bundle.display().to_string(),
                        s.created.clone(),
                        s.owner.clone(),
                    ]
                })
                .collect();
            print!("{}", format_table(&table));
        }
    }
    Ok(())
}

/// Left-aligned columns, each as wide as its widest cell plus 3 spaces; the last
/// column is not padded.
pub fn format_table(rows: &[[String; 6]]) -> String {
    let header = ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from);
    let all: Vec<&[String; 6]> = std::iter::once(&header).chain(rows).collect();
    let widths: Vec<usize> = (0..6)
        .map(|c| all.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in all {
        for (c, cell) in row.iter().enumerate() {
            if c == 5 {
                let _ = writeln!(out, "{cell}");
            } else {
                let _ = write!(out, "{cell:<w$}", w = widths[c] + 3);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let row = ["c1", "42", "running", "/b", "T", "root"].map(String::from);
        let out = format_table(&[row]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "ID   PID   STATUS    BUNDLE   CREATED   OWNER");
        assert_eq!(lines[1], "c1   42    running   /b       T         root");
    }
}
