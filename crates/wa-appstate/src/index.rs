//! The index of a mutation: a JSON array of strings such as `["mute","1555…@s.whatsapp.net"]`.
//! Its index MAC is taken over the exact bytes, so the encoder must write them as WhatsApp
//! Web (and Baileys) do, with `JSON.stringify`: no spaces; `"` and `\` escaped; the control
//! characters below U+0020 as `\b \t \n \f \r` or `\u00xx` in lowercase hex; everything
//! else (`/`, `<`, `&`, `>`, U+2028, non-ASCII) as raw UTF-8. Go's `json.Marshal` escapes
//! `<>&` and U+2028 and so would produce other MACs.

/// Writes `index` as `JSON.stringify` does.
pub fn encode_index<S: AsRef<str>>(index: &[S]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + index.iter().map(|s| s.as_ref().len() + 3).sum::<usize>());
    out.push(b'[');
    for (i, s) in index.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_json_string(&mut out, s.as_ref());
    }
    out.push(b']');
    out
}

fn push_json_string(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for &b in s.as_bytes() {
        // Every byte of a multi-byte UTF-8 sequence is ≥ 0x80, so byte-wise is exact here.
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            0x0c => out.extend_from_slice(b"\\f"),
            b'\r' => out.extend_from_slice(b"\\r"),
            0x00..=0x1f => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 15) as usize],
            ]),
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

/// Parses an index; `None` unless it is a JSON array of strings.
pub fn decode_index(bytes: &[u8]) -> Option<Vec<String>> {
    serde_json::from_slice::<Vec<String>>(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_json_stringify() {
        let got = encode_index(&["a\"b\\c", "\u{1}\u{8}\t\n\u{c}\r\u{1f}", "/<&>\u{2028}é😀\u{7f}"]);
        let want = "[\"a\\\"b\\\\c\",\"\\u0001\\b\\t\\n\\f\\r\\u001f\",\"/<&>\u{2028}é😀\u{7f}\"]";
        assert_eq!(String::from_utf8(got.clone()).ok().as_deref(), Some(want));
        assert_eq!(
            decode_index(&got),
            Some(vec![
                "a\"b\\c".to_owned(),
                "\u{1}\u{8}\t\n\u{c}\r\u{1f}".to_owned(),
                "/<&>\u{2028}é😀\u{7f}".to_owned()
            ])
        );
        assert_eq!(encode_index::<&str>(&[]), b"[]");
        assert_eq!(decode_index(b"[1]"), None);
        assert_eq!(decode_index(b"{}"), None);
    }
}
