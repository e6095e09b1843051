//! Output: readable tables by default, JSON with `--json`.

use comfy_table::Table;
use serde_json::Value;

/// Prints `json` or, for people, `table`.
pub fn print(json_mode: bool, json: Value, table: Table) {
    if json_mode {
        println!(
            "{}",
            serde_json::to_string_pretty(&json).unwrap_or_default()
        );
    } else {
        println!("{table}");
    }
}

/// A table with a header row.
pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY);
    t.set_header(header.to_vec());
    t
}

/// A wire timestamp as RFC 3339, or empty.
pub fn time(t: Option<&prost_types::Timestamp>) -> String {
    t.and_then(tollgate::time::from_proto)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}
