//! The pieces of a typed PATCH body: a field that is absent leaves the value
//! as it is, `null` clears a nullable one (`Option<Option<T>>`), and a field
//! that can never change is read only to be refused with its name.

use serde::{Deserialize, Deserializer};

/// `#[serde(default, deserialize_with = "patch::nullable")]` on an
/// `Option<Option<T>>`: absent is `None` (by `default`), `null` is
/// `Some(None)`, a value is `Some(Some(value))`.
pub fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// `#[serde(default, deserialize_with = "patch::present")]` on an
/// `Option<T>` whose value cannot be cleared: `null` is refused as the wrong
/// type instead of being read as "absent".
pub fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// A field that is fixed at creation: any value is read, so that the service
/// can refuse it by name ("kind cannot change after creation") rather than
/// as an unknown field. Not part of the documented body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fixed(bool);

impl Fixed {
    pub fn given(self) -> bool {
        self.0
    }
}

impl<'de> Deserialize<'de> for Fixed {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Fixed, D::Error> {
        serde::de::IgnoredAny::deserialize(deserializer).map(|_| Fixed(true))
    }
}
