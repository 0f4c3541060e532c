//! A struct's serialized fields, one at a time: `(name, JSON value)` in declaration order,
//! without building the JSON object (a map with an owned key per field) that
//! `serde_json::to_value` would. The planner compares thousands of configurations field by
//! field; the map was most of that work.

use serde::Serialize;
use serde::ser::{self, Impossible};

/// Calls `each` with every field `value` serializes (a struct with named fields, as derived),
/// in declaration order. Anything else serializes nothing and is an error.
pub(crate) fn for_each_field<T: Serialize>(
    value: &T,
    each: impl FnMut(&'static str, serde_json::Value),
) -> Result<(), NotAStruct> {
    value.serialize(Walker { each })
}

/// The value was not a struct with named fields.
#[derive(Debug)]
pub(crate) struct NotAStruct(String);

impl std::fmt::Display for NotAStruct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "not a struct with named fields: {}", self.0)
    }
}

impl std::error::Error for NotAStruct {}

impl ser::Error for NotAStruct {
    fn custom<M: std::fmt::Display>(message: M) -> NotAStruct {
        NotAStruct(message.to_string())
    }
}

struct Walker<F> {
    each: F,
}

fn refuse<T>(what: &str) -> Result<T, NotAStruct> {
    Err(NotAStruct(what.to_string()))
}

impl<F: FnMut(&'static str, serde_json::Value)> ser::SerializeStruct for Walker<F> {
    type Ok = ();
    type Error = NotAStruct;

    fn serialize_field<V: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &V,
    ) -> Result<(), NotAStruct> {
        let value = serde_json::to_value(value).map_err(|error| NotAStruct(error.to_string()))?;
        (self.each)(key, value);
        Ok(())
    }

    fn end(self) -> Result<(), NotAStruct> {
        Ok(())
    }
}

impl<F: FnMut(&'static str, serde_json::Value)> ser::Serializer for Walker<F> {
    type Ok = ();
    type Error = NotAStruct;
    type SerializeSeq = Impossible<(), NotAStruct>;
    type SerializeTuple = Impossible<(), NotAStruct>;
    type SerializeTupleStruct = Impossible<(), NotAStruct>;
    type SerializeTupleVariant = Impossible<(), NotAStruct>;
    type SerializeMap = Impossible<(), NotAStruct>;
    type SerializeStruct = Self;
    type SerializeStructVariant = Impossible<(), NotAStruct>;

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, NotAStruct> {
        Ok(self)
    }

    fn serialize_bool(self, _: bool) -> Result<(), NotAStruct> {
        refuse("a bool")
    }
    fn serialize_i8(self, _: i8) -> Result<(), NotAStruct> {
        refuse("a number")
    }
    fn serialize_i16(self, _: i16) -> Result<(), NotAStruct> {
        refuse("a number")
    }
    fn serialize_i32(self, _: i32) -> Result<(), NotAStruct> {
        refuse("a number")
    }
    fn serialize_i64(self, _: i64) -> Result<(), NotAStruct> {
        refuse("a number")
    }
    fn serialize_u8(self, _: u8) -> Result<(), NotAStruct> {
        refuse("a number")
    }
    fn serialize_u16(self, _: u16) -> Result<(), NotAStruct> {
        refuse("a number")
    }
    fn serialize_u32(self, _: u32) -> Result<(), NotAStruct> {
        refuse("a number")
    }
    fn serialize_u64(self, _: u64) -> Result<(), NotAStruct> {
        refuse("a number")
    }
    fn serialize_f32(self, _: f32) -> Result<(), NotAStruct> {
        refuse("a number")
    }
    fn serialize_f64(self, _: f64) -> Result<(), NotAStruct> {
        refuse("a number")
    }
    fn serialize_char(self, _: char) -> Result<(), NotAStruct> {
        refuse("a character")
    }
    fn serialize_str(self, _: &str) -> Result<(), NotAStruct> {
        refuse("a string")
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<(), NotAStruct> {
        refuse("bytes")
    }
    fn serialize_none(self) -> Result<(), NotAStruct> {
        refuse("none")
    }
    fn serialize_some<V: Serialize + ?Sized>(self, _: &V) -> Result<(), NotAStruct> {
        refuse("an option")
    }
    fn serialize_unit(self) -> Result<(), NotAStruct> {
        refuse("a unit")
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), NotAStruct> {
        refuse("a unit struct")
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> Result<(), NotAStruct> {
        refuse("an enum")
    }
    fn serialize_newtype_struct<V: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: &V,
    ) -> Result<(), NotAStruct> {
        refuse("a newtype")
    }
    fn serialize_newtype_variant<V: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &V,
    ) -> Result<(), NotAStruct> {
        refuse("an enum")
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, NotAStruct> {
        refuse("a sequence")
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, NotAStruct> {
        refuse("a tuple")
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, NotAStruct> {
        refuse("a tuple struct")
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, NotAStruct> {
        refuse("an enum")
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, NotAStruct> {
        refuse("a map")
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, NotAStruct> {
        refuse("an enum")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Sample {
        b: Option<String>,
        a: i32,
        #[serde(skip_serializing_if = "Option::is_none")]
        skipped: Option<i32>,
    }

    #[test]
    fn fields_come_in_declaration_order_as_serde_json_writes_them() {
        let sample = Sample {
            b: Some("x".into()),
            a: 3,
            skipped: None,
        };
        let mut seen = Vec::new();
        for_each_field(&sample, |key, value| seen.push((key, value))).unwrap();
        assert_eq!(
            seen,
            vec![("b", serde_json::json!("x")), ("a", serde_json::json!(3))]
        );
        let whole = serde_json::to_value(&sample).unwrap();
        for (key, value) in &seen {
            assert_eq!(&whole[*key], value);
        }
        assert!(
            for_each_field(&3, |_, _| {}).is_err(),
            "a number has no fields"
        );
    }
}
