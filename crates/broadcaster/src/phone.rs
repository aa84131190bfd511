//! Phone numbers: parse user input into E.164 (`+` and 8 to 15 digits, no leading zero).
//!
//! We accept common human formatting (spaces, dashes, dots, parentheses, a `00` international
//! prefix) and reject everything else with a reason, so the API can say what is wrong.

use std::fmt;

/// A phone number in E.164 form, e.g. `+14155550123`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct E164(String);

/// Why a phone number was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PhoneError {
    #[error("phone number is empty")]
    Empty,
    #[error("phone number contains `{0}`, which is not a digit or separator")]
    InvalidCharacter(char),
    #[error("phone number must be in international form: start with `+` or `00` and the country code")]
    MissingCountryCode,
    #[error("country code cannot start with 0")]
    LeadingZero,
    #[error("phone number has {0} digits; E.164 numbers have 8 to 15")]
    BadLength(usize),
}

impl E164 {
    pub fn parse(input: &str) -> Result<Self, PhoneError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(PhoneError::Empty);
        }
        let (international, rest) =
            if let Some(r) = trimmed.strip_prefix('+') { (true, r) } else { (false, trimmed) };
        let mut digits = String::with_capacity(16);
        for c in rest.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' | '.' | '(' | ')' | '\u{a0}' => {}
                other => return Err(PhoneError::InvalidCharacter(other)),
            }
        }
        let digits = if international {
            digits
        } else if let Some(d) = digits.strip_prefix("00") {
            d.to_owned()
        } else {
            return Err(PhoneError::MissingCountryCode);
        };
        if digits.starts_with('0') {
            return Err(PhoneError::LeadingZero);
        }
        if !(8..=15).contains(&digits.len()) {
            return Err(PhoneError::BadLength(digits.len()));
        }
        Ok(Self(format!("+{digits}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Digits only, the user part of a WhatsApp JID.
    pub fn digits(&self) -> &str {
        &self.0[1..]
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_formatted_numbers() {
        for (input, want) in [
            ("+1 (415) 555-0123", "+14155550123"),
            ("0044 20 7946 0958", "+442079460958"),
            ("+55.11.91234.5678", "+5511912345678"),
            ("  +919876543210 ", "+919876543210"),
        ] {
            assert_eq!(E164::parse(input).unwrap().as_str(), want, "{input}");
        }
        assert_eq!(E164::parse("+14155550123").unwrap().digits(), "14155550123");
    }

    #[test]
    fn rejects_with_reasons() {
        assert_eq!(E164::parse(""), Err(PhoneError::Empty));
        assert_eq!(E164::parse("4155550123"), Err(PhoneError::MissingCountryCode));
        assert_eq!(E164::parse("+0155550123"), Err(PhoneError::LeadingZero));
        assert_eq!(E164::parse("+1234567"), Err(PhoneError::BadLength(7)));
        assert_eq!(E164::parse("+1234567890123456"), Err(PhoneError::BadLength(16)));
        assert_eq!(E164::parse("+1415abc0123"), Err(PhoneError::InvalidCharacter('a')));
        assert_eq!(E164::parse("++14155550123"), Err(PhoneError::InvalidCharacter('+')));
    }
}
