//! Event properties: a `google.protobuf.Struct` on the wire, a JSON object in storage.

use prost_types::Struct;
use tollgate::json::{map_to_struct, struct_to_json};

/// Largest serialized properties object, in bytes.
pub const MAX_PROPERTIES_BYTES: usize = 64 * 1024;

/// Serializes wire properties (absent means `{}`), or says why they cannot be stored.
pub fn to_json(properties: Option<&Struct>) -> Result<String, String> {
    let text = match properties {
        None => "{}".to_owned(),
        Some(s) => struct_to_json(s)?,
    };
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

#[cfg(test)]
mod tests {
    use super::*;
    use prost_types::Value;
    use prost_types::value::Kind;

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
