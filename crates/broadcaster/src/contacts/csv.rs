//! A small RFC 4180 CSV reader and writer (quoted fields, doubled quotes, CRLF or LF, a UTF-8
//! BOM). Contact files are small enough to hold in memory; errors carry the 1-based line.

/// Why a CSV document could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CsvError {
    #[error("line {line}: a quoted field is never closed")]
    UnclosedQuote { line: usize },
    #[error("line {line}: unexpected character after a closing quote")]
    TextAfterQuote { line: usize },
    #[error("the file has no header row")]
    Empty,
}

/// One record and the line it starts on (for per-row error reports).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub line: usize,
    pub fields: Vec<String>,
}

/// Parses a whole document into records. Blank lines are skipped.
pub fn parse(input: &str) -> Result<Vec<Record>, CsvError> {
    let input = input.strip_prefix('\u{feff}').unwrap_or(input);
    let mut records = Vec::new();
    let mut fields: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut line = 1usize;
    let mut record_line = 1usize;
    let mut in_quotes = false;
    let mut after_quote = false;
    let mut field_started = false;
    let mut chars = input.chars().peekable();
    while let Some(c) = chars.next() {
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => {
                    in_quotes = false;
                    after_quote = true;
                }
                '\n' => {
                    line += 1;
                    field.push('\n');
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            ',' => {
                fields.push(std::mem::take(&mut field));
                after_quote = false;
                field_started = true;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' | '\r' => {
                if field_started || !field.is_empty() || after_quote {
                    fields.push(std::mem::take(&mut field));
                    records.push(Record { line: record_line, fields: std::mem::take(&mut fields) });
                }
                after_quote = false;
                field_started = false;
                line += 1;
                record_line = line;
            }
            '"' if field.is_empty() && !after_quote => {
                in_quotes = true;
                field_started = true;
            }
            _ if after_quote => return Err(CsvError::TextAfterQuote { line }),
            _ => {
                field.push(c);
                field_started = true;
            }
        }
    }
    if in_quotes {
        return Err(CsvError::UnclosedQuote { line: record_line });
    }
    if field_started || !field.is_empty() || after_quote {
        fields.push(field);
        records.push(Record { line: record_line, fields });
    }
    Ok(records)
}

/// Appends one CSV field, quoting when needed. Fields starting with `=`, `+`, `-` or `@` are
/// prefixed with `'` so spreadsheets do not evaluate them as formulas (CSV injection).
pub fn write_field(out: &mut String, value: &str) {
    let guarded;
    let value = if value.starts_with(['=', '@']) || (value.starts_with(['+', '-']) && !is_number(value)) {
        guarded = format!("'{value}");
        guarded.as_str()
    } else {
        value
    };
    if value.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(value);
    }
}

fn is_number(v: &str) -> bool {
    v.len() > 1 && v[1..].chars().all(|c| c.is_ascii_digit())
}

/// Appends a record and a CRLF.
pub fn write_record<'a>(out: &mut String, fields: impl IntoIterator<Item = &'a str>) {
    for (i, f) in fields.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_field(out, f);
    }
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(input: &str) -> Vec<Vec<String>> {
        parse(input).unwrap().into_iter().map(|r| r.fields).collect()
    }

    #[test]
    fn reads_quotes_crlf_bom_and_blank_lines() {
        let doc = "\u{feff}phone,name\r\n+441,\"Smith, Ann\"\r\n\r\n+442,\"say \"\"hi\"\"\"\n+443,\"two\nlines\"\n+444,";
        assert_eq!(
            fields(doc),
            vec![
                vec!["phone", "name"],
                vec!["+441", "Smith, Ann"],
                vec!["+442", "say \"hi\""],
                vec!["+443", "two\nlines"],
                vec!["+444", ""],
            ]
        );
        let recs = parse(doc).unwrap();
        assert_eq!(recs.iter().map(|r| r.line).collect::<Vec<_>>(), vec![1, 2, 4, 5, 7]);
    }

    #[test]
    fn malformed_input_is_a_typed_error() {
        assert_eq!(parse("a,\"b\nc"), Err(CsvError::UnclosedQuote { line: 1 }));
        assert_eq!(parse("a,\"b\"x\n"), Err(CsvError::TextAfterQuote { line: 1 }));
    }

    #[test]
    fn writer_round_trips_and_guards_formulas() {
        let mut out = String::new();
        write_record(&mut out, ["+14155550123", "a,b", "q\"x", "=HYPERLINK()", "-5"]);
        assert_eq!(out, "+14155550123,\"a,b\",\"q\"\"x\",'=HYPERLINK(),-5\r\n");
        assert_eq!(fields(&out), vec![vec!["+14155550123", "a,b", "q\"x", "'=HYPERLINK()", "-5"]]);
    }
}
