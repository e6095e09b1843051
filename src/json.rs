//! JSON and `google.protobuf.Struct`, both ways: event properties travel as a `Struct` on the
//! wire and are kept and shown as JSON objects.

use prost_types::value::Kind;
use prost_types::{ListValue, Struct, Value};
use serde::ser::{Error as _, Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::{Map, Number};

/// A `Struct` as JSON text, written straight from the `Struct` (no intermediate JSON tree: this
/// runs for every ingested event). Same output as serializing [`struct_to_map`]; fails on NaN or
/// infinite numbers, which JSON cannot hold.
pub fn struct_to_json(s: &Struct) -> Result<String, String> {
    serde_json::to_string(&AsJson::Struct(s)).map_err(|e| e.to_string())
}

/// The error text for numbers JSON cannot hold.
const NOT_FINITE: &str = "must not contain NaN or infinite numbers";

/// A borrowed `Struct` or `Value` that serializes as the JSON [`value_to_json`] would build.
enum AsJson<'a> {
    Struct(&'a Struct),
    Value(&'a Value),
}

impl Serialize for AsJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let kind = match self {
            AsJson::Struct(s) => {
                let mut map = serializer.serialize_map(Some(s.fields.len()))?;
                for (k, v) in &s.fields {
                    map.serialize_entry(k, &AsJson::Value(v))?;
                }
                return map.end();
            }
            AsJson::Value(v) => &v.kind,
        };
        match kind {
            None | Some(Kind::NullValue(_)) => serializer.serialize_unit(),
            Some(Kind::BoolValue(b)) => serializer.serialize_bool(*b),
            Some(Kind::StringValue(s)) => serializer.serialize_str(s),
            Some(Kind::NumberValue(n)) if !n.is_finite() => Err(S::Error::custom(NOT_FINITE)),
            Some(Kind::NumberValue(n)) if is_integral(*n) => serializer.serialize_i64(*n as i64),
            Some(Kind::NumberValue(n)) => serializer.serialize_f64(*n),
            Some(Kind::StructValue(s)) => AsJson::Struct(s).serialize(serializer),
            Some(Kind::ListValue(l)) => {
                let mut seq = serializer.serialize_seq(Some(l.values.len()))?;
                for v in &l.values {
                    seq.serialize_element(&AsJson::Value(v))?;
                }
                seq.end()
            }
        }
    }
}

/// Integral values are stored as integers so that `{"tokens": 3}` reads back as 3.
fn is_integral(n: f64) -> bool {
    n.fract() == 0.0 && n.abs() < 9.0e15
}

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
            let number = if is_integral(*n) {
                Number::from(*n as i64)
            } else {
                Number::from_f64(*n).ok_or(NOT_FINITE)?
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_read_back_exactly() {
        // Found by the property test below: without serde_json's float_roundtrip, this one read
        // back as a neighbouring double.
        let json = serde_json::json!({"tiny": 2.3151757625605916e-296, "pi": std::f64::consts::PI});
        let text = struct_to_json(&map_to_struct(json.as_object().unwrap().clone())).unwrap();
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, json);
    }

    #[test]
    fn direct_serialization_matches_the_json_tree() {
        let json = serde_json::json!({
            "tokens": 1200, "ratio": 0.25, "big": 1.0e20, "neg": -3, "model": "m\"1\"\n",
            "ok": true, "none": null, "tags": ["a", 2, {"deep": [false]}], "nested": {"b": 1, "a": 2}
        });
        let wire = map_to_struct(json.as_object().unwrap().clone());
        let tree = serde_json::Value::Object(struct_to_map(&wire).unwrap()).to_string();
        assert_eq!(struct_to_json(&wire).unwrap(), tree);
        assert!(tree.contains(r#""tokens":1200"#) && tree.contains(r#""ratio":0.25"#));
        assert_eq!(struct_to_json(&Struct::default()).unwrap(), "{}");
        for bad in [f64::NAN, f64::INFINITY] {
            let nested = Struct {
                fields: [(
                    "list".to_owned(),
                    Value {
                        kind: Some(Kind::ListValue(ListValue {
                            values: vec![Value {
                                kind: Some(Kind::NumberValue(bad)),
                            }],
                        })),
                    },
                )]
                .into(),
            };
            assert_eq!(struct_to_json(&nested).unwrap_err(), NOT_FINITE);
            assert!(struct_to_map(&nested).is_err());
        }
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;
    use serde_json::Value as Json;

    use super::*;

    /// JSON as the services keep it: integers below 9e15 and finite doubles, any text, nested.
    fn json() -> impl Strategy<Value = Json> {
        let leaf = prop_oneof![
            Just(Json::Null),
            any::<bool>().prop_map(Json::Bool),
            (-8_999_999_999_999_999i64..9_000_000_000_000_000).prop_map(Json::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Json::from),
            "\\PC{0,12}".prop_map(Json::String),
        ];
        leaf.prop_recursive(6, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Json::Array),
                proptest::collection::btree_map("\\PC{0,8}", inner, 0..6)
                    .prop_map(|m| Json::Object(m.into_iter().collect())),
            ]
        })
    }

    /// The same JSON, numbers compared as the doubles the wire carries.
    fn same(a: &Json, b: &Json) -> bool {
        match (a, b) {
            (Json::Number(x), Json::Number(y)) => x.as_f64() == y.as_f64(),
            (Json::Array(x), Json::Array(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
            }
            (Json::Object(x), Json::Object(y)) => {
                x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
            }
            _ => a == b,
        }
    }

    proptest! {
        /// JSON → Struct → JSON text → JSON is exact (a number reads back as the same double),
        /// and the direct serializer writes what the JSON tree would.
        #[test]
        fn json_round_trips_through_struct(object in proptest::collection::btree_map("\\PC{0,8}", json(), 0..8)) {
            let object: Map<String, Json> = object.into_iter().collect();
            let wire = map_to_struct(object.clone());
            let text = struct_to_json(&wire).unwrap();
            let back: Json = serde_json::from_str(&text).unwrap();
            prop_assert!(same(&back, &Json::Object(object)), "{}", text);
            prop_assert_eq!(
                text,
                Json::Object(struct_to_map(&wire).unwrap()).to_string()
            );
        }
    }
}
