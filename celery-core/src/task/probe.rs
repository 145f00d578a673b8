//! Checks, when a task is built, that each parameter's default decodes into
//! the Rust type the body takes for it — so `"pause_time='soon'"` for an
//! `f64` is an error when the app starts, not when the first message that
//! leaves the parameter out arrives.
//!
//! The body's argument type is one `Deserialize` tuple, and Rust cannot
//! name its elements' types one by one. So the check decodes the whole
//! tuple from the defaults, with a stand-in for each required parameter
//! that answers whatever type is asked of it with an empty value of that
//! type (0, "", [], none…). If a default is the element that fails, it is
//! the wrong type; if a stand-in fails (an enum, a struct that refuses
//! empty values), the check cannot tell and says nothing.

use std::{cell::Cell, fmt};

use serde::{
    Deserializer,
    de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, SeqAccess, Visitor},
    forward_to_deserialize_any,
};
use serde_json::Value;

use super::params::{Signature, Slot};

/// `Err(text)` when a default does not decode into its parameter's type.
pub(crate) fn check_defaults<A: DeserializeOwned>(signature: &Signature) -> Result<(), String> {
    let slots = signature.slots();
    let items: Vec<Item> = slots
        .iter()
        .map(|slot| match slot {
            Slot::Named(parameter) | Slot::KeywordOnly(parameter) => match &parameter.default {
                Some(default) => Item::Value(default.clone()),
                None => Item::StandIn,
            },
            Slot::VarArgs => Item::Value(Value::Array(Vec::new())),
            Slot::VarKwargs => Item::Value(Value::Object(serde_json::Map::new())),
        })
        .collect();
    let current = Cell::new(None);
    let outcome = A::deserialize(Tuple {
        items: &items,
        current: &current,
    });
    match (outcome, current.get()) {
        (Err(error), Some(index)) => match (slots.get(index), items.get(index)) {
            (
                Some(Slot::Named(parameter) | Slot::KeywordOnly(parameter)),
                Some(Item::Value(default)),
            ) => Err(format!(
                "the default of '{}' ({default}) does not decode into the body's type for it: {error}",
                parameter.name
            )),
            _ => Ok(()),
        },
        _ => Ok(()),
    }
}

enum Item {
    Value(Value),
    StandIn,
}

#[derive(Debug)]
struct ProbeError(String);

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ProbeError {}

impl de::Error for ProbeError {
    fn custom<T: fmt::Display>(message: T) -> Self {
        ProbeError(message.to_string())
    }
}

/// The body's arguments, as the worker hands them over: a sequence (`()`
/// for a task without parameters).
struct Tuple<'a> {
    items: &'a [Item],
    current: &'a Cell<Option<usize>>,
}

impl<'de> Deserializer<'de> for Tuple<'_> {
    type Error = ProbeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        visitor.visit_seq(Elements {
            items: self.items,
            next: 0,
            current: self.current,
        })
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        match self.items.is_empty() {
            true => visitor.visit_unit(),
            false => self.deserialize_any(visitor),
        }
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

struct Elements<'a> {
    items: &'a [Item],
    next: usize,
    current: &'a Cell<Option<usize>>,
}

impl<'de> SeqAccess<'de> for Elements<'_> {
    type Error = ProbeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, ProbeError> {
        let index = self.next;
        let Some(item) = self.items.get(index) else {
            return Ok(None);
        };
        self.next = index.saturating_add(1);
        self.current.set(Some(index));
        let value = match item {
            Item::Value(value) => seed
                .deserialize(value.clone().into_deserializer())
                .map_err(|error: serde_json::Error| ProbeError(error.to_string()))?,
            Item::StandIn => seed.deserialize(StandIn)?,
        };
        self.current.set(None);
        Ok(Some(value))
    }
}

/// Answers each type with an empty value of it.
struct StandIn;

impl<'de> Deserializer<'de> for StandIn {
    type Error = ProbeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        visitor.visit_unit()
    }
    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        visitor.visit_bool(false)
    }
    fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        visitor.visit_i8(0)
    }
    fn deserialize_i16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        visitor.visit_i16(0)
    }
    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        visitor.visit_i32(0)
    }
    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        visitor.visit_i64(0)
    }
    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        visitor.visit_u8(0)
    }
    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        visitor.visit_u16(0)
    }
    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        visitor.visit_u32(0)
    }
    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        visitor.visit_u64(0)
    }
    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        visitor.visit_f32(0.0)
    }
    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        visitor.visit_f64(0.0)
    }
    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        visitor.visit_char(' ')
    }
    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        visitor.visit_str("")
    }
    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        visitor.visit_str("")
    }
    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        visitor.visit_bytes(&[])
    }
    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        visitor.visit_bytes(&[])
    }
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        visitor.visit_none()
    }
    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        visitor.visit_unit()
    }
    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ProbeError> {
        visitor.visit_unit()
    }
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ProbeError> {
        visitor.visit_newtype_struct(self)
    }
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        visitor.visit_seq(de::value::SeqDeserializer::new(std::iter::empty::<()>()))
    }
    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, ProbeError> {
        visitor.visit_seq(StandIns(len))
    }
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, ProbeError> {
        visitor.visit_seq(StandIns(len))
    }
    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        visitor.visit_map(de::value::MapDeserializer::new(
            std::iter::empty::<((), ())>(),
        ))
    }
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ProbeError> {
        visitor.visit_map(Fields { fields, next: 0 })
    }
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        _variants: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, ProbeError> {
        Err(ProbeError(format!("no stand-in for the enum {name}")))
    }
    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        visitor.visit_str("")
    }
    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        visitor.visit_unit()
    }
}

/// `len` stand-ins, for a tuple.
struct StandIns(usize);

impl<'de> SeqAccess<'de> for StandIns {
    type Error = ProbeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, ProbeError> {
        match self.0 {
            0 => Ok(None),
            left => {
                self.0 = left.saturating_sub(1);
                seed.deserialize(StandIn).map(Some)
            }
        }
    }
}

/// A struct's fields, each with a stand-in.
struct Fields {
    fields: &'static [&'static str],
    next: usize,
}

impl<'de> de::MapAccess<'de> for Fields {
    type Error = ProbeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, ProbeError> {
        match self.fields.get(self.next) {
            Some(field) => seed
                .deserialize(de::value::StrDeserializer::<ProbeError>::new(field))
                .map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, ProbeError> {
        self.next = self.next.saturating_add(1);
        seed.deserialize(StandIn)
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    fn check<A: DeserializeOwned>(specs: &[&str]) -> Result<(), String> {
        check_defaults::<A>(&Signature::parse(specs).unwrap())
    }

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Point {
        x: i64,
        y: i64,
    }

    #[test]
    fn defaults_of_the_right_type_pass() {
        assert_eq!(
            check::<(i64, i64, Option<i64>)>(&["x", "y", "z=None"]),
            Ok(())
        );
        assert_eq!(
            check::<(Vec<f64>, f64)>(&["numbers", "pause_time=1"]),
            Ok(())
        );
        assert_eq!(
            check::<(String, String)>(&["m", "key='redis-echo'"]),
            Ok(())
        );
        assert_eq!(check::<(Point, bool)>(&["p", "flag=True"]), Ok(()));
        assert_eq!(check::<((i64, String), u8)>(&["pair", "n=3"]), Ok(()));
        assert_eq!(check::<(Vec<Value>,)>(&["*args"]), Ok(()));
        assert_eq!(
            check::<(i64, serde_json::Map<String, Value>)>(&["i", "**_"]),
            Ok(())
        );
        assert_eq!(check::<()>(&[]), Ok(()));
    }

    #[test]
    fn a_default_of_the_wrong_type_is_named() {
        let error = check::<(Vec<f64>, f64)>(&["numbers", "pause_time='soon'"]).unwrap_err();
        assert!(
            error.starts_with("the default of 'pause_time' (\"soon\") does not decode"),
            "{error}"
        );
        let error = check::<(i64, u8)>(&["x", "n=300"]).unwrap_err();
        assert!(error.contains("'n'"), "{error}");
        let error = check::<(Option<String>,)>(&["key=5"]).unwrap_err();
        assert!(error.contains("'key'"), "{error}");
    }
}
