//! Backend-neutral SQL values: what a query binds ([`ToValue`] → [`ValueRef`]) and what a row
//! holds ([`Value`] → [`FromValue`]). The storage classes are SQLite's (integer, real, text,
//! blob, null); booleans are integers 0/1 on both backends, so one SQL text fits both.

use std::fmt;

/// A parameter as bound to a statement (borrowed from the caller's value).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValueRef<'a> {
    Null,
    Integer(i64),
    Real(f64),
    Text(&'a str),
    Blob(&'a [u8]),
}

/// A column value read from a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl Value {
    /// The storage class, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Integer(_) => "integer",
            Self::Real(_) => "real",
            Self::Text(_) => "text",
            Self::Blob(_) => "blob",
        }
    }
}

/// A Rust value that can be bound as a query parameter.
pub trait ToValue {
    fn to_value(&self) -> ValueRef<'_>;
}

impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> ValueRef<'_> {
        (**self).to_value()
    }
}

impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> ValueRef<'_> {
        self.as_ref().map_or(ValueRef::Null, ToValue::to_value)
    }
}

impl ToValue for str {
    fn to_value(&self) -> ValueRef<'_> {
        ValueRef::Text(self)
    }
}

impl ToValue for String {
    fn to_value(&self) -> ValueRef<'_> {
        ValueRef::Text(self)
    }
}

impl ToValue for [u8] {
    fn to_value(&self) -> ValueRef<'_> {
        ValueRef::Blob(self)
    }
}

impl ToValue for Vec<u8> {
    fn to_value(&self) -> ValueRef<'_> {
        ValueRef::Blob(self)
    }
}

impl ToValue for bool {
    fn to_value(&self) -> ValueRef<'_> {
        ValueRef::Integer(i64::from(*self))
    }
}

impl ToValue for f64 {
    fn to_value(&self) -> ValueRef<'_> {
        ValueRef::Real(*self)
    }
}

impl ToValue for ValueRef<'_> {
    fn to_value(&self) -> ValueRef<'_> {
        *self
    }
}

impl ToValue for Value {
    fn to_value(&self) -> ValueRef<'_> {
        match self {
            Self::Null => ValueRef::Null,
            Self::Integer(i) => ValueRef::Integer(*i),
            Self::Real(f) => ValueRef::Real(*f),
            Self::Text(s) => ValueRef::Text(s),
            Self::Blob(b) => ValueRef::Blob(b),
        }
    }
}

macro_rules! int_to_value {
    ($($t:ty),*) => {$(
        impl ToValue for $t {
            fn to_value(&self) -> ValueRef<'_> {
                ValueRef::Integer(i64::from(*self))
            }
        }
    )*};
}
int_to_value!(i8, i16, i32, i64, u8, u16, u32);

macro_rules! wide_int_to_value {
    ($($t:ty),*) => {$(
        impl ToValue for $t {
            /// Counts and sizes; a value beyond `i64::MAX` (never stored in practice) saturates.
            fn to_value(&self) -> ValueRef<'_> {
                ValueRef::Integer(i64::try_from(*self).unwrap_or(i64::MAX))
            }
        }
    )*};
}
wide_int_to_value!(u64, usize);

/// Why a column value could not become the requested Rust type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FromValueError(pub String);

impl fmt::Display for FromValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn mismatch<T>(want: &str, v: &Value) -> Result<T, FromValueError> {
    Err(FromValueError(format!("expected {want}, found {}", v.kind())))
}

/// A Rust type a column value can be read as (see [`super::Row::get`]).
pub trait FromValue: Sized {
    fn from_value(v: &Value) -> Result<Self, FromValueError>;
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: &Value) -> Result<Self, FromValueError> {
        match v {
            Value::Null => Ok(None),
            v => T::from_value(v).map(Some),
        }
    }
}

impl FromValue for i64 {
    fn from_value(v: &Value) -> Result<Self, FromValueError> {
        match v {
            Value::Integer(i) => Ok(*i),
            v => mismatch("integer", v),
        }
    }
}

macro_rules! narrow_int_from_value {
    ($($t:ty),*) => {$(
        impl FromValue for $t {
            fn from_value(v: &Value) -> Result<Self, FromValueError> {
                let i = i64::from_value(v)?;
                <$t>::try_from(i).map_err(|_| {
                    FromValueError(format!("integer {i} out of range for {}", stringify!($t)))
                })
            }
        }
    )*};
}
narrow_int_from_value!(i32, u32, u64, usize, u16, u8);

impl FromValue for f64 {
    fn from_value(v: &Value) -> Result<Self, FromValueError> {
        match v {
            Value::Real(f) => Ok(*f),
            Value::Integer(i) => Ok(*i as f64),
            v => mismatch("real", v),
        }
    }
}

impl FromValue for bool {
    fn from_value(v: &Value) -> Result<Self, FromValueError> {
        match v {
            Value::Integer(i) => Ok(*i != 0),
            v => mismatch("integer (boolean)", v),
        }
    }
}

impl FromValue for String {
    fn from_value(v: &Value) -> Result<Self, FromValueError> {
        match v {
            Value::Text(s) => Ok(s.clone()),
            v => mismatch("text", v),
        }
    }
}

impl FromValue for Vec<u8> {
    fn from_value(v: &Value) -> Result<Self, FromValueError> {
        match v {
            Value::Blob(b) => Ok(b.clone()),
            Value::Text(s) => Ok(s.as_bytes().to_vec()),
            v => mismatch("blob", v),
        }
    }
}

impl FromValue for Value {
    fn from_value(v: &Value) -> Result<Self, FromValueError> {
        Ok(v.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_round_trip_and_mismatches_are_errors() {
        assert_eq!(Some(5i64).to_value(), ValueRef::Integer(5));
        assert_eq!(None::<String>.to_value(), ValueRef::Null);
        assert_eq!(true.to_value(), ValueRef::Integer(1));
        assert_eq!(usize::MAX.to_value(), ValueRef::Integer(i64::MAX));
        assert_eq!(<Option<i64>>::from_value(&Value::Null), Ok(None));
        assert!(bool::from_value(&Value::Integer(2)).unwrap());
        assert!(u32::from_value(&Value::Integer(-1)).is_err());
        assert!(String::from_value(&Value::Integer(1)).unwrap_err().0.contains("expected text"));
    }
}
