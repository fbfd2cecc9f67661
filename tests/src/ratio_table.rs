//! The benchmarks' tables: a metric per row, husk's figure beside the reference's
//! from the same run, and their ratio, as markdown.

/// Prints the table: `columns` names husk's and the reference's columns and the
/// ratio's; each row is a metric's name, husk's figure and the reference's.
pub fn print(columns: [&str; 3], rows: &[(&str, f64, f64)]) {
    println!(
        "| metric | {} | {} | {} |",
        columns[0], columns[1], columns[2]
    );
    println!("|---|---:|---:|---:|");
    for (name, ours, reference) in rows {
        println!(
            "| {name} | {ours:.1} | {reference:.1} | {:.2} |",
            ours / reference
        );
    }
}
