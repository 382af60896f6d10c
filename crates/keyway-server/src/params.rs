//! Reading a request's parameters the way Seam's SDKs send them.
//!
//! The same route takes a JSON body (POST/PUT/PATCH/DELETE), a query string (GET/DELETE), or an
//! empty body of any content type (= `{}`). Query values arrive as strings, so the parameter
//! types read booleans, numbers and arrays leniently (see `lenient`). Unknown keys such as
//! `_strict` are ignored. Errors name the offending field in the API's envelope.

use axum::body::to_bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::ApiError;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let mut map = Map::new();
        if let Some(query) = parts.uri.query() {
            merge_pairs(&mut map, query);
        }
        let bytes = to_bytes(body, MAX_BODY_BYTES)
            .await
            .map_err(|_| ApiError::PayloadTooLarge)?;
        if !bytes.iter().all(u8::is_ascii_whitespace) {
            let content_type = parts
                .headers
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if content_type.starts_with("application/x-www-form-urlencoded") {
                merge_pairs(&mut map, &String::from_utf8_lossy(&bytes));
            } else {
                match serde_json::from_slice::<Value>(&bytes) {
                    Ok(Value::Object(body)) => map.extend(body),
                    Ok(_) => {
                        return Err(ApiError::invalid_input(
                            "Request body must be a JSON object",
                        ))
                    }
                    Err(e) => {
                        return Err(ApiError::invalid_input(format!("Malformed JSON body: {e}")))
                    }
                }
            }
        }
        parse(Value::Object(map)).map(Params)
    }
}

/// Deserializes parameters, turning serde's complaint into a field-level `invalid_input`.
pub fn parse<T: DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner().to_string();
        if let Some(field) = missing_field(&inner) {
            return ApiError::invalid(field, format!("{field} is required"));
        }
        if path == "." || path.is_empty() {
            ApiError::invalid_input(inner)
        } else {
            ApiError::invalid(&path, format!("{inner} for \"{path}\""))
        }
    })
}

fn missing_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split('`').next()
}

/// Adds `key=value` pairs; a key seen twice (or written `key[]`) becomes an array.
fn merge_pairs(map: &mut Map<String, Value>, raw: &str) {
    for (key, value) in form_urlencoded::parse(raw.as_bytes()) {
        let value = value.into_owned();
        let (key, is_array) = match key.strip_suffix("[]") {
            Some(stripped) => (stripped.to_owned(), true),
            None => (key.into_owned(), false),
        };
        match map.get_mut(&key) {
            Some(Value::Array(items)) => items.push(Value::String(value)),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, Value::String(value)]);
            }
            None if is_array => {
                map.insert(key, Value::Array(vec![Value::String(value)]));
            }
            None => {
                map.insert(key, Value::String(value));
            }
        }
    }
}

/// Deserializers that accept both JSON types and the strings a query string carries.
pub mod lenient {
    use serde::de::{self, Deserializer};
    use serde::Deserialize;
    use serde_json::Value;

    pub fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
        match Option::<Value>::deserialize(d)? {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(Value::String(s)) => match s.as_str() {
                "true" | "1" => Ok(Some(true)),
                "false" | "0" => Ok(Some(false)),
                _ => Err(de::Error::custom("Expected boolean")),
            },
            Some(_) => Err(de::Error::custom("Expected boolean")),
        }
    }

    pub fn opt_u32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
        let number = match Option::<Value>::deserialize(d)? {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Number(n)) => n.as_f64(),
            Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
            Some(_) => None,
        };
        match number {
            Some(n) if n.is_finite() && n >= 0.0 && n <= f64::from(u32::MAX) => Ok(Some(n as u32)),
            _ => Err(de::Error::custom("Expected a non-negative number")),
        }
    }

    /// An array of strings; a single string counts as an array of one.
    pub fn opt_strings<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
        match Option::<Value>::deserialize(d)? {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(vec![s])),
            Some(Value::Array(items)) => items
                .into_iter()
                .map(|item| match item {
                    Value::String(s) => Ok(s),
                    _ => Err(de::Error::custom("Expected an array of strings")),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(de::Error::custom("Expected an array of strings")),
        }
    }

    /// A required array of strings (a single string counts as an array of one).
    pub fn strings<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        opt_strings(d)?.ok_or_else(|| de::Error::custom("Expected an array of strings"))
    }

    /// An array of non-negative integers (query strings give them as strings).
    pub fn opt_u32s<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u32>>, D::Error> {
        let items = match Option::<Value>::deserialize(d)? {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Array(items)) => items,
            Some(single) => vec![single],
        };
        items
            .into_iter()
            .map(|item| match item {
                Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
                Value::String(s) => s.trim().parse::<u32>().ok(),
                _ => None,
            })
            .collect::<Option<Vec<u32>>>()
            .map(Some)
            .ok_or_else(|| de::Error::custom("Expected an array of integers"))
    }

    /// A string, or null meaning absent.
    pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        match Option::<Value>::deserialize(d)? {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(de::Error::custom("Expected string")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Sample {
        device_id: String,
        #[serde(default, deserialize_with = "lenient::opt_bool")]
        sync: Option<bool>,
        #[serde(default, deserialize_with = "lenient::opt_strings")]
        ids: Option<Vec<String>>,
    }

    #[test]
    fn query_pairs_become_values_and_arrays() {
        let mut map = Map::new();
        merge_pairs(
            &mut map,
            "device_id=a%20b&sync=true&ids=1&ids=2&_strict=true",
        );
        let sample: Sample = parse(Value::Object(map)).expect("valid");
        assert_eq!(sample.device_id, "a b");
        assert_eq!(sample.sync, Some(true));
        assert_eq!(sample.ids, Some(vec!["1".into(), "2".into()]));
    }

    #[test]
    fn missing_and_mistyped_fields_are_named() {
        let err = parse::<Sample>(serde_json::json!({})).unwrap_err();
        assert_eq!(err.to_string(), "device_id is required");
        let err = parse::<Sample>(serde_json::json!({"device_id": 5})).unwrap_err();
        assert!(err.to_string().contains("\"device_id\""), "{err}");
    }
}
