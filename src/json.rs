//! JSON and `google.protobuf.Struct`, both ways: event properties travel as a `Struct` on the
//! wire and are kept and shown as JSON objects.

use prost_types::value::Kind;
use prost_types::{ListValue, Struct, Value};
use serde_json::{Map, Number};

/// A `Struct` as a JSON object; fails on NaN or infinite numbers, which JSON cannot hold.
pub fn struct_to_map(s: &Struct) -> Result<Map<String, serde_json::Value>, String> {
    s.fields
        .iter()
        .map(|(k, v)| value_to_json(v).map(|v| (k.clone(), v)))
        .collect()
}

/// A `Value` as JSON.
pub fn value_to_json(v: &Value) -> Result<serde_json::Value, String> {
    Ok(match &v.kind {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::BoolValue(b)) => serde_json::Value::Bool(*b),
        Some(Kind::StringValue(s)) => serde_json::Value::String(s.clone()),
        Some(Kind::NumberValue(n)) => {
            // Integral values are stored as integers so that `{"tokens": 3}` reads back as 3.
            let number = if n.fract() == 0.0 && n.abs() < 9.0e15 {
                Number::from(*n as i64)
            } else {
                Number::from_f64(*n).ok_or("must not contain NaN or infinite numbers")?
            };
            serde_json::Value::Number(number)
        }
        Some(Kind::StructValue(s)) => serde_json::Value::Object(struct_to_map(s)?),
        Some(Kind::ListValue(l)) => serde_json::Value::Array(
            l.values
                .iter()
                .map(value_to_json)
                .collect::<Result<_, _>>()?,
        ),
    })
}

/// A JSON object as a `Struct`.
pub fn map_to_struct(map: Map<String, serde_json::Value>) -> Struct {
    Struct {
        fields: map
            .into_iter()
            .map(|(k, v)| (k, json_to_value(v)))
            .collect(),
    }
}

/// JSON as a `Value`.
pub fn json_to_value(v: serde_json::Value) -> Value {
    let kind = match v {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        serde_json::Value::String(s) => Kind::StringValue(s),
        serde_json::Value::Array(a) => Kind::ListValue(ListValue {
            values: a.into_iter().map(json_to_value).collect(),
        }),
        serde_json::Value::Object(m) => Kind::StructValue(map_to_struct(m)),
    };
    Value { kind: Some(kind) }
}
