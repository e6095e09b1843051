//! Event properties: a `google.protobuf.Struct` on the wire, a JSON object in storage.

use prost_types::value::Kind;
use prost_types::{ListValue, Struct, Value};
use serde_json::{Map, Number};

/// Largest serialized properties object, in bytes.
pub const MAX_PROPERTIES_BYTES: usize = 64 * 1024;

/// Serializes wire properties (absent means `{}`), or says why they cannot be stored.
pub fn to_json(properties: Option<&Struct>) -> Result<String, String> {
    let object = match properties {
        None => Map::new(),
        Some(s) => struct_to_map(s)?,
    };
    let text = serde_json::Value::Object(object).to_string();
    if text.len() > MAX_PROPERTIES_BYTES {
        return Err(format!(
            "is {} bytes as JSON; at most {MAX_PROPERTIES_BYTES} are allowed",
            text.len()
        ));
    }
    Ok(text)
}

/// Reads stored properties back for the wire. Stored text was written by [`to_json`]; anything
/// else reads as an empty object rather than failing the whole request.
pub fn from_json(text: &str) -> Struct {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(map)) => map_to_struct(map),
        _ => Struct::default(),
    }
}

fn struct_to_map(s: &Struct) -> Result<Map<String, serde_json::Value>, String> {
    s.fields
        .iter()
        .map(|(k, v)| value_to_json(v).map(|v| (k.clone(), v)))
        .collect()
}

fn value_to_json(v: &Value) -> Result<serde_json::Value, String> {
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

fn map_to_struct(map: Map<String, serde_json::Value>) -> Struct {
    Struct {
        fields: map
            .into_iter()
            .map(|(k, v)| (k, json_to_value(v)))
            .collect(),
    }
}

fn json_to_value(v: serde_json::Value) -> Value {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_bounds() {
        let wire = map_to_struct(
            serde_json::json!({"tokens": 1200, "model": "m", "ratio": 0.5, "tags": ["a"], "n": null})
                .as_object()
                .unwrap()
                .clone(),
        );
        let text = to_json(Some(&wire)).unwrap();
        assert!(text.contains("\"tokens\":1200"), "{text}");
        assert_eq!(from_json(&text), wire);
        assert_eq!(to_json(None).unwrap(), "{}");
        let big = map_to_struct(
            serde_json::json!({"blob": "x".repeat(MAX_PROPERTIES_BYTES)})
                .as_object()
                .unwrap()
                .clone(),
        );
        assert!(to_json(Some(&big)).is_err());
        let nan = Struct {
            fields: [(
                "x".to_owned(),
                Value {
                    kind: Some(Kind::NumberValue(f64::NAN)),
                },
            )]
            .into(),
        };
        assert!(to_json(Some(&nan)).is_err());
    }
}
