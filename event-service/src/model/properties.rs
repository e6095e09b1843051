//! Event properties: a `google.protobuf.Struct` on the wire, a JSON object in storage.
//!
//! What either backend cannot store is refused here, before anything reaches a database, and
//! alike on both: the NUL character (PostgreSQL's `jsonb` has no room for it), numbers JSON
//! cannot hold, nesting deeper than [`MAX_PROPERTIES_DEPTH`], and more than
//! [`MAX_PROPERTIES_BYTES`] of JSON.

use prost_types::value::Kind;
use prost_types::{Struct, Value};
use tollgate::json::{map_to_struct, struct_to_json};
pub use tollgate::limits::MAX_PROPERTIES_DEPTH;

/// Largest serialized properties object, in bytes.
pub const MAX_PROPERTIES_BYTES: usize = 64 * 1024;

/// Why properties cannot be stored: where in them (`.plan.tier`, `.tags[2]`, or empty for the
/// whole object) and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The path below `properties`.
    pub path: String,
    /// What is wrong, to follow the field's name.
    pub problem: String,
}

impl Refused {
    fn at(path: &str, problem: impl Into<String>) -> Self {
        Self {
            path: path.to_owned(),
            problem: problem.into(),
        }
    }
}

/// Serializes wire properties (absent means `{}`), or says why they cannot be stored.
pub fn to_json(properties: Option<&Struct>) -> Result<String, Refused> {
    let Some(properties) = properties else {
        return Ok("{}".to_owned());
    };
    check_object(properties, &mut String::new(), 1)?;
    let text = struct_to_json(properties).map_err(|problem| Refused::at("", problem))?;
    if text.len() > MAX_PROPERTIES_BYTES {
        return Err(Refused::at(
            "",
            format!(
                "is {} bytes as JSON; at most {MAX_PROPERTIES_BYTES} are allowed",
                text.len()
            ),
        ));
    }
    Ok(text)
}

/// Checks an object at `depth` (the properties themselves are depth 1) and all it holds.
fn check_object(object: &Struct, path: &mut String, depth: usize) -> Result<(), Refused> {
    if depth > MAX_PROPERTIES_DEPTH {
        return Err(too_deep(path));
    }
    for (key, value) in &object.fields {
        let len = path.len();
        path.push('.');
        path.extend(key.escape_debug());
        if key.contains('\0') {
            return Err(Refused::at(
                path,
                "has a NUL character (\\u0000) in its name, which cannot be stored",
            ));
        }
        check_value(value, path, depth)?;
        path.truncate(len);
    }
    Ok(())
}

fn check_value(value: &Value, path: &mut String, depth: usize) -> Result<(), Refused> {
    match &value.kind {
        Some(Kind::StringValue(s)) if s.contains('\0') => Err(Refused::at(
            path,
            "has a NUL character (\\u0000), which cannot be stored",
        )),
        Some(Kind::NumberValue(n)) if !n.is_finite() => Err(Refused::at(
            path,
            "must not be NaN or infinite (JSON cannot hold it)",
        )),
        Some(Kind::StructValue(object)) => check_object(object, path, depth + 1),
        Some(Kind::ListValue(list)) => {
            if depth + 1 > MAX_PROPERTIES_DEPTH {
                return Err(too_deep(path));
            }
            for (i, item) in list.values.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                check_value(item, path, depth + 1)?;
                path.truncate(len);
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn too_deep(path: &str) -> Refused {
    Refused::at(
        path,
        format!("is nested more than {MAX_PROPERTIES_DEPTH} levels deep"),
    )
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

    fn nested(depth: usize) -> Struct {
        let mut s = map_to_struct(serde_json::json!({"leaf": 1}).as_object().unwrap().clone());
        for _ in 1..depth {
            s = Struct {
                fields: [(
                    "a".to_owned(),
                    Value {
                        kind: Some(Kind::StructValue(s)),
                    },
                )]
                .into(),
            };
        }
        s
    }

    #[test]
    fn refusals_name_the_place() {
        assert!(to_json(Some(&nested(MAX_PROPERTIES_DEPTH))).is_ok());
        let deep = to_json(Some(&nested(MAX_PROPERTIES_DEPTH + 1))).unwrap_err();
        assert_eq!(deep.path, ".a".repeat(MAX_PROPERTIES_DEPTH));
        assert_eq!(deep.problem, "is nested more than 16 levels deep");
        let nul_value = map_to_struct(
            serde_json::json!({"tags": ["ok", "x\u{0}y"]})
                .as_object()
                .unwrap()
                .clone(),
        );
        let refused = to_json(Some(&nul_value)).unwrap_err();
        assert_eq!(refused.path, ".tags[1]");
        assert!(refused.problem.contains("NUL"), "{refused:?}");
        let nul_key = map_to_struct(
            serde_json::json!({"a\u{0}b": 1})
                .as_object()
                .unwrap()
                .clone(),
        );
        assert_eq!(to_json(Some(&nul_key)).unwrap_err().path, ".a\\0b");
    }
}
