//! How a text value containing `@` is split into JID parts for the wire.
//!
//! Baileys (the reference encoder the test vectors come from) writes any string
//! containing `@` as a JID, splitting it with JavaScript semantics. To stay
//! byte-identical we reproduce those rules exactly, including their lossy edges:
//! extra `:`/`_` parts are dropped, a device is read with `Number()` and an agent
//! with `parseInt()`, and both are truncated to a byte.

/// JID parts of a string, as the encoder writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StrJid<'s> {
    /// `AD_JID`: domain type, device byte, user.
    Ad { domain: u8, device: u8, user: &'s str },
    /// `JID_PAIR`: user (possibly empty), server (any string, itself encoded as a string).
    Pair { user: &'s str, server: &'s str },
}

/// Splits `s` (which contains `@`) into wire JID parts.
pub(crate) fn split(s: &str) -> Option<StrJid<'_>> {
    let b = s.as_bytes();
    // One scan up to the first '@' finds the first two ':' and the first '_'.
    let (mut at, mut colon, mut colon2, mut first_underscore) = (None, None, None, None);
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'@' => {
                at = Some(i);
                break;
            }
            b':' if colon.is_none() => colon = Some(i),
            b':' if colon2.is_none() => colon2 = Some(i),
            b'_' if first_underscore.is_none() => first_underscore = Some(i),
            _ => {}
        }
    }
    let at = at?;
    let server = s.get(at + 1..)?;
    // `user_agent[:device[:ignored…]]`; all separators are ASCII, so every
    // index below is a char boundary.
    let ua_end = colon.unwrap_or(at);
    let underscore = first_underscore.filter(|&u| u < ua_end);
    let user = s.get(..underscore.unwrap_or(ua_end))?;
    let device = match colon {
        Some(c) => s.get(c + 1..colon2.unwrap_or(at))?,
        None => "",
    };
    if device.is_empty() {
        return Some(StrJid::Pair { user, server });
    }
    let domain = match server {
        "lid" => 1,
        "hosted" => 128,
        "hosted.lid" => 129,
        _ => match underscore {
            Some(u) => {
                let rest = &b[u + 1..ua_end];
                let end = rest.iter().position(|&x| x == b'_').unwrap_or(rest.len());
                let agent = s.get(u + 1..u + 1 + end)?;
                if agent.is_empty() {
                    0
                } else {
                    small_uint(agent).unwrap_or_else(|| js_to_byte(js_parse_int(agent)))
                }
            }
            None => 0,
        },
    };
    let device = small_uint(device).unwrap_or_else(|| js_to_byte(js_number(device)));
    Some(StrJid::Ad { domain, device, user })
}

/// Fast path for the usual case: a short run of ASCII digits (what both
/// `Number()` and `parseInt()` read as that decimal number).
#[inline]
fn small_uint(s: &str) -> Option<u8> {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > 9 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let v = b.iter().fold(0u32, |v, &d| v * 10 + u32::from(d - b'0'));
    Some(v as u8)
}

/// JavaScript `ToInt32(x) & 0xff` (NaN and infinities give 0).
fn js_to_byte(x: f64) -> u8 {
    if !x.is_finite() {
        return 0;
    }
    let t = x.trunc();
    let m = t.rem_euclid(4_294_967_296.0);
    (m as u64 & 0xff) as u8
}

fn is_js_space(c: char) -> bool {
    matches!(
        c,
        '\u{9}' | '\u{a}' | '\u{b}' | '\u{c}' | '\u{d}' | ' ' | '\u{a0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200a}' | '\u{2028}' | '\u{2029}' | '\u{202f}' | '\u{205f}' | '\u{3000}' | '\u{feff}'
    )
}

/// JavaScript `Number(string)`.
fn js_number(s: &str) -> f64 {
    let t = s.trim_matches(is_js_space);
    if t.is_empty() {
        return 0.0;
    }
    for (prefix, radix) in [("0x", 16), ("0X", 16), ("0o", 8), ("0O", 8), ("0b", 2), ("0B", 2)] {
        if let Some(digits) = t.strip_prefix(prefix) {
            return radix_value(digits, radix).unwrap_or(f64::NAN);
        }
    }
    let unsigned = t.strip_prefix(['+', '-']).unwrap_or(t);
    if unsigned == "Infinity" {
        return if t.starts_with('-') { f64::NEG_INFINITY } else { f64::INFINITY };
    }
    // StrDecimalLiteral: digits [. digits] [e[+-]digits], with at least one digit in the mantissa.
    let b = unsigned.as_bytes();
    let mut i = 0;
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let mut mantissa_digits = i - int_start;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let frac_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        mantissa_digits += i - frac_start;
    }
    if mantissa_digits == 0 {
        return f64::NAN;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        let exp_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == exp_start {
            return f64::NAN;
        }
    }
    if i != b.len() {
        return f64::NAN;
    }
    t.parse::<f64>().unwrap_or(f64::NAN)
}

fn radix_value(digits: &str, radix: u32) -> Option<f64> {
    if digits.is_empty() {
        return None;
    }
    let mut v = 0f64;
    for c in digits.chars() {
        v = v * f64::from(radix) + f64::from(c.to_digit(radix)?);
    }
    Some(v)
}

/// JavaScript `parseInt(string)` (radix 10, or 16 after `0x`).
fn js_parse_int(s: &str) -> f64 {
    let t = s.trim_start_matches(is_js_space);
    let (neg, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let (radix, t) = match t.get(..2) {
        Some("0x") | Some("0X") => (16, &t[2..]),
        _ => (10, t),
    };
    let digits: String = t.chars().take_while(|c| c.is_digit(radix)).collect();
    match radix_value(&digits, radix) {
        Some(v) if neg => -v,
        Some(v) => v,
        None => f64::NAN,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn js_semantics() {
        assert_eq!(js_to_byte(js_number("300")), 44);
        assert_eq!(js_to_byte(js_number("x1")), 0);
        assert_eq!(js_to_byte(js_number(" 12 ")), 12);
        assert_eq!(js_to_byte(js_number("0x1f")), 31);
        assert_eq!(js_to_byte(js_number("-1")), 255);
        assert_eq!(js_to_byte(js_number("1.9")), 1);
        assert_eq!(js_to_byte(js_number("1e2")), 100);
        assert_eq!(js_to_byte(js_number("Infinity")), 0);
        assert_eq!(js_to_byte(js_number("inf")), 0);
        assert_eq!(js_to_byte(js_parse_int("12abc")), 12);
        assert_eq!(js_to_byte(js_parse_int("agent")), 0);
        assert_eq!(js_to_byte(js_parse_int("0x10")), 16);
        assert_eq!(js_to_byte(js_parse_int("-1")), 255);
    }

    #[test]
    fn splitting() {
        assert_eq!(split("1555:12@s.whatsapp.net"), Some(StrJid::Ad { domain: 0, device: 12, user: "1555" }));
        assert_eq!(split("1555_1:2@s.whatsapp.net"), Some(StrJid::Ad { domain: 1, device: 2, user: "1555" }));
        assert_eq!(split("@s.whatsapp.net"), Some(StrJid::Pair { user: "", server: "s.whatsapp.net" }));
        assert_eq!(split("a_b@g.us"), Some(StrJid::Pair { user: "a", server: "g.us" }));
        assert_eq!(split("a@b@c"), Some(StrJid::Pair { user: "a", server: "b@c" }));
        assert_eq!(split("a:1:2@lid"), Some(StrJid::Ad { domain: 1, device: 1, user: "a" }));
        assert_eq!(split("a:@lid"), Some(StrJid::Pair { user: "a", server: "lid" }));
        assert_eq!(split("abc"), None);
        assert_eq!(split("a:1_2@x"), Some(StrJid::Ad { domain: 0, device: 0, user: "a" }));
        assert_eq!(split("a_7:1:9@x"), Some(StrJid::Ad { domain: 7, device: 1, user: "a" }));
        assert_eq!(split("a_b_c:3@x:y@z"), Some(StrJid::Ad { domain: 0, device: 3, user: "a" }));
        assert_eq!(split("::@s"), Some(StrJid::Pair { user: "", server: "s" }));
    }
}
