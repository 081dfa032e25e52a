//! `JsonBody<T>`: poem-openapi's `Json<T>` request payload with errors that name the field.
//!
//! poem-openapi parses objects without saying which field failed ("Expected input type
//! "string", found null (occurred while parsing "Cluster")", poem-web/poem#622), and its
//! strings accept numbers and booleans. This checks the body against the type's own schema
//! first and reports the first offending field with its path (`platform_components[2].enabled:
//! expected boolean, found string`). The schema in the spec is exactly `Json<T>`'s.

use poem::{FromRequest, Request, RequestBody};
use poem_openapi::impl_apirequest_for_payload;
use poem_openapi::payload::{ParsePayload, Payload};
use poem_openapi::registry::{MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::types::{ParseFromJSON, Type};
use serde_json::Value;

/// A JSON request body of type `T`.
pub struct JsonBody<T>(pub T);

/// `application/json` or `application/<something>+json`, with any parameters.
fn is_json(content_type: &str) -> bool {
    content_type.split(';').next().is_some_and(|essence| {
        let essence = essence.trim().to_ascii_lowercase();
        essence == "application/json"
            || (essence.starts_with("application/") && essence.ends_with("+json"))
    })
}

impl<T: Type> Payload for JsonBody<T> {
    const CONTENT_TYPE: &'static str = "application/json; charset=utf-8";

    fn check_content_type(content_type: &str) -> bool {
        is_json(content_type)
    }

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: ParseFromJSON> ParsePayload for JsonBody<T> {
    const IS_REQUIRED: bool = true;

    async fn from_request(request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        let data = Vec::<u8>::from_request(request, body).await?;
        if data.is_empty() {
            return Err(bad_request(
                "the request body is empty; a JSON object is expected".into(),
            ));
        }
        let value: Value = serde_json::from_slice(&data)
            .map_err(|err| bad_request(format!("the request body is not valid JSON: {err}")))?;
        if let Some(number) = oversized_integer(&data) {
            return Err(bad_request(format!(
                "the request body holds the integer {number}, which does not fit in 64 bits and \
                 would silently lose digits; send it as a string"
            )));
        }
        // The schema is the contract: poem-openapi alone would accept `"id": false` as the
        // string "false", so the body is checked against the schema first.
        let mut registry = Registry::new();
        T::register(&mut registry);
        if let Some(problem) = first_problem(&registry, &T::schema_ref(), &value, "") {
            return Err(bad_request(problem));
        }
        T::parse_from_json(Some(value))
            .map(JsonBody)
            .map_err(|err| bad_request(err.into_message()))
    }
}

impl_apirequest_for_payload!(JsonBody<T>, T: ParseFromJSON);

/// A JSON request body parsed by serde, for bodies another program sends (Flux's events):
/// unknown fields are ignored (they evolve upstream) and errors name the field serde stopped
/// at. Like every JSON route, a body that is not declared as JSON is a `415`
/// (notification-controller always sends `application/json`). The spec shows `T`'s schema.
pub struct SerdeJson<T>(pub T);

impl<T: Type> Payload for SerdeJson<T> {
    const CONTENT_TYPE: &'static str = "application/json; charset=utf-8";

    fn check_content_type(content_type: &str) -> bool {
        is_json(content_type)
    }

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: Type + serde::de::DeserializeOwned> ParsePayload for SerdeJson<T> {
    const IS_REQUIRED: bool = true;

    async fn from_request(request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        let data = Vec::<u8>::from_request(request, body).await?;
        serde_json::from_slice(&data)
            .map(SerdeJson)
            .map_err(|err| bad_request(format!("the request body is not a valid event: {err}")))
    }
}

impl_apirequest_for_payload!(SerdeJson<T>, T: Type + serde::de::DeserializeOwned);

fn bad_request(message: String) -> poem::Error {
    poem::Error::from_string(message, poem::http::StatusCode::BAD_REQUEST)
}

fn resolve<'a>(registry: &'a Registry, schema: &'a MetaSchemaRef) -> Option<&'a MetaSchema> {
    match schema {
        MetaSchemaRef::Inline(schema) => Some(schema),
        MetaSchemaRef::Reference(name) => registry.schemas.get(name),
    }
}

fn field_path(parent: &str, child: &str) -> String {
    if parent.is_empty() {
        child.to_owned()
    } else {
        format!("{parent}.{child}")
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The first way `value` departs from `schema`, phrased with its path; `None` if none found.
fn first_problem(
    registry: &Registry,
    schema: &MetaSchemaRef,
    value: &Value,
    path: &str,
) -> Option<String> {
    let schema = resolve(registry, schema)?;
    let at = if path.is_empty() {
        "body".to_owned()
    } else {
        path.to_owned()
    };
    if value.is_null() {
        return (!schema.nullable && !schema.ty.is_empty())
            .then(|| format!("{at}: must not be null"));
    }
    for part in &schema.all_of {
        if let Some(problem) = first_problem(registry, part, value, path) {
            return Some(problem);
        }
    }
    let found = json_type(value);
    let type_ok = match schema.ty {
        "" => true,
        "number" => matches!(found, "integer" | "number"),
        "integer" => found == "integer",
        ty => ty == found,
    };
    if !type_ok {
        return Some(format!("{at}: expected {}, found {found}", schema.ty));
    }
    if !schema.enum_items.is_empty() && !schema.enum_items.contains(value) {
        let allowed: Vec<String> = schema.enum_items.iter().map(Value::to_string).collect();
        return Some(format!(
            "{at}: {value} is not one of {}",
            allowed.join(", ")
        ));
    }
    if let Some(problem) = constraint_problem(schema, value, &at) {
        return Some(problem);
    }
    match value {
        Value::Object(map) => {
            for required in &schema.required {
                if map.get(*required).is_none_or(Value::is_null) {
                    return Some(format!(
                        "{}: missing required field",
                        field_path(path, required)
                    ));
                }
            }
            for (name, property) in &schema.properties {
                if let Some(child) = map.get(*name)
                    && let Some(problem) =
                        first_problem(registry, property, child, &field_path(path, name))
                {
                    return Some(problem);
                }
            }
            if !schema.properties.is_empty()
                && let Some(unknown) = map
                    .keys()
                    .find(|key| !schema.properties.iter().any(|(name, _)| name == key))
            {
                return Some(format!("{}: unknown field", field_path(path, unknown)));
            }
            let additional = schema.additional_properties.as_deref()?;
            map.iter().find_map(|(key, child)| {
                first_problem(registry, additional, child, &field_path(path, key))
            })
        }
        Value::Array(items) => {
            let item_schema = schema.items.as_deref()?;
            items.iter().enumerate().find_map(|(index, item)| {
                first_problem(registry, item_schema, item, &format!("{at}[{index}]"))
            })
        }
        _ => None,
    }
}

/// The first integer literal in a JSON text (already known to be valid JSON) that fits in
/// neither `i64` nor `u64`: serde_json would turn it into a float, changing its digits.
fn oversized_integer(json: &[u8]) -> Option<&str> {
    let mut i = 0;
    while i < json.len() {
        match json[i] {
            b'"' => {
                // Skip the string, escapes included.
                i += 1;
                while i < json.len() && json[i] != b'"' {
                    i += if json[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                i += 1;
                while i < json.len()
                    && matches!(json[i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
                {
                    i += 1;
                }
                let literal = std::str::from_utf8(&json[start..i]).ok()?;
                let integer = !literal.contains(['.', 'e', 'E']);
                if integer && literal.parse::<i64>().is_err() && literal.parse::<u64>().is_err() {
                    return Some(literal);
                }
            }
            _ => i += 1,
        }
    }
    None
}

/// Length, pattern and range constraints (validators declared on the field), and no control
/// characters in declared strings: names and versions reach feeds, logs and terminals.
/// Annotation values may hold any text, and patch values are free-form JSON.
fn constraint_problem(schema: &MetaSchema, value: &Value, at: &str) -> Option<String> {
    if let Value::String(text) = value
        && schema.ty == "string"
        && !at.contains("annotations.")
        && let Some(bad) = text.chars().find(|c| c.is_control())
    {
        return Some(format!(
            "{at}: contains the control character U+{:04X}; names and values must be printable",
            u32::from(bad)
        ));
    }
    if let Value::String(text) = value {
        let length = text.chars().count();
        if let Some(max) = schema.max_length.filter(|max| length > *max) {
            return Some(format!("{at}: longer than {max} characters"));
        }
        if let Some(min) = schema.min_length.filter(|min| length < *min) {
            return Some(format!("{at}: shorter than {min} character(s)"));
        }
        if let Some(pattern) = &schema.pattern {
            return Some(format!("{at}: '{text}' must match {pattern}"))
                .filter(|_| !regex_matches(pattern, text));
        }
    }
    if let (Some(number), Some(min)) = (value.as_f64(), schema.minimum)
        && number < min
    {
        return Some(format!("{at}: must be at least {min}"));
    }
    None
}

fn regex_matches(pattern: &str, text: &str) -> bool {
    // An invalid pattern cannot come from our own schema; treat it as "no opinion".
    regex::Regex::new(pattern).map_or(true, |re| re.is_match(text))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::domain::model::Cluster;

    fn problem(value: Value) -> Option<String> {
        let mut registry = Registry::new();
        Cluster::register(&mut registry);
        first_problem(&registry, &Cluster::schema_ref(), &value, "")
    }

    fn valid() -> Value {
        json!({"id": "c1", "cluster_name": "c1", "cluster_dns": "c1.example.com", "environment": "dev",
               "platform_components": [{"id": "a", "enabled": true, "oci_tag": null, "component_path": null}]})
    }

    #[test]
    fn integers_beyond_64_bits_are_found_outside_strings_only() {
        assert_eq!(
            oversized_integer(br#"{"a": 123456789012345678901234567890}"#),
            Some("123456789012345678901234567890")
        );
        assert_eq!(
            oversized_integer(br#"{"a": -9223372036854775809}"#),
            Some("-9223372036854775809")
        );
        assert_eq!(
            oversized_integer(br#"{"a": 18446744073709551615, "b": -9223372036854775808}"#),
            None
        );
        assert_eq!(
            oversized_integer(br#"{"a": "123456789012345678901234567890", "b": 1.5e300}"#),
            None
        );
        assert_eq!(
            oversized_integer(br#"{"a\"1": "x\\", "b": 0.123456789012345678901234567890}"#),
            None
        );
    }

    #[test]
    fn control_characters_in_names_are_named_but_annotation_text_is_free() {
        let mut body = valid();
        body["cluster_name"] = json!("edge\u{1b}[31m");
        let found = problem(body).unwrap();
        assert!(
            found.contains("cluster_name") && found.contains("U+001B"),
            "{found}"
        );
    }

    #[test]
    fn a_valid_body_has_no_problem() {
        assert_eq!(problem(valid()), None);
    }

    #[test]
    fn missing_field_is_named() {
        let mut body = valid();
        body.as_object_mut().unwrap().remove("cluster_dns");
        assert_eq!(
            problem(body).unwrap(),
            "cluster_dns: missing required field"
        );
    }

    #[test]
    fn nested_wrong_type_is_named_with_its_path() {
        let mut body = valid();
        body["platform_components"][0]["enabled"] = json!("yes");
        assert_eq!(
            problem(body).unwrap(),
            "platform_components[0].enabled: expected boolean, found string"
        );
    }

    #[test]
    fn unknown_enum_value_is_named() {
        let mut body = valid();
        body["environment"] = json!("staging");
        let text = problem(body).unwrap();
        assert!(
            text.starts_with("environment: \"staging\" is not one of"),
            "{text}"
        );
    }

    #[test]
    fn unknown_field_is_named() {
        let mut body = valid();
        body["cluster_nmae"] = json!("typo");
        assert_eq!(problem(body).unwrap(), "cluster_nmae: unknown field");
    }

    #[test]
    fn pattern_violation_is_named() {
        let mut body = valid();
        body["cluster_dns"] = json!("Not A Name");
        assert!(
            problem(body)
                .unwrap()
                .starts_with("cluster_dns: 'Not A Name' must match")
        );
    }
}
