//! CSV cells from untrusted strings: formula-looking text neutralised for spreadsheets, then
//! quoted per RFC 4180.

/// One CSV cell: text whose first character, after any white space and invisible marks, is
/// `=`, `+`, `-`, `@`, tab, CR or LF is prefixed with `'` so spreadsheets show it as text
/// (importers that trim spaces made ` =HYPERLINK(…)` a formula again), then the cell is quoted
/// when needed (RFC 4180), and also when it holds `;` or a tab, where spreadsheets of
/// semicolon locales split cells.
pub fn csv_cell(s: &str) -> String {
    // Invisible: white space and every mark the log and report treat as hidden (controls,
    // bidirectional and zero-width marks), one rule with `error::hidden`.
    let invisible = |c: char| c.is_whitespace() || crate::error::hidden(c);
    let first = s.chars().find(|&c| !invisible(c) || matches!(c, '\t' | '\r' | '\n'));
    let neutral = match first {
        Some('=' | '+' | '-' | '@' | '\t' | '\r' | '\n') => format!("'{s}"),
        _ => s.to_string(),
    };
    if neutral.contains([',', '"', '\n', '\r', ';', '\t']) || neutral.starts_with(' ') || neutral.ends_with(' ') {
        format!("\"{}\"", neutral.replace('"', "\"\""))
    } else {
        neutral
    }
}

pub fn csv_line(cells: &[String]) -> String {
    let mut line = cells.join(",");
    line.push_str("\r\n");
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_are_neutralised_and_quoted() {
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_cell("+1"), "'+1");
        assert_eq!(csv_cell("-2"), "'-2");
        assert_eq!(csv_cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("plain"), "plain");
        assert_eq!(csv_cell("a-b"), "a-b");
        // Regression: only the very first character was looked at.
        assert_eq!(csv_cell(" =1+1"), "' =1+1");
        assert_eq!(csv_cell("\u{a0}=1+1"), "'\u{a0}=1+1");
        assert_eq!(csv_cell("\u{3000}@x"), "'\u{3000}@x");
        assert_eq!(csv_cell("\u{feff}-1"), "'\u{feff}-1");
        assert_eq!(csv_cell("\u{200b}+1"), "'\u{200b}+1");
        // Regression: bidirectional marks, word joiners and controls hid a formula too.
        for mark in ['\u{2066}', '\u{202e}', '\u{061c}', '\u{2063}', '\u{1f}', '\u{0}'] {
            assert_eq!(csv_cell(&format!("{mark}=cmd")), format!("'{mark}=cmd"), "{:?}", mark);
        }
        // Semicolons and tabs are quoted, so no locale splits the cell.
        assert_eq!(csv_cell("x;=cmd"), "\"x;=cmd\"");
        assert_eq!(csv_cell("a\tb"), "\"a\tb\"");
    }
}
