//! Every response a test receives is checked against the server's own
//! OpenAPI document: for a documented path and method, the status must be
//! documented, and a JSON body must match the schema given for that status.
//!
//! The validator covers the JSON Schema that utoipa emits and that
//! `declare_constraints` adds: `$ref`, `type` (one or a list, `null`
//! included), `properties`, `required`, `additionalProperties`, `items`,
//! `enum`, `oneOf`/`anyOf`/`allOf`/`not`, `minimum`/`maximum`,
//! `minLength`/`maxLength`, `minItems`/`maxItems`, `nullable`. Other keywords
//! (`pattern`, `format`) are not checked: response schemas carry none that a
//! test depends on. Why not a crate: see the README's design notes.

use std::sync::LazyLock;

use serde_json::Value;

static DOCUMENT: LazyLock<Value> = LazyLock::new(|| {
    serde_json::from_str(keyward::http::openapi::document_text()).expect("the document is JSON")
});

/// Checks one response. `path` may carry a query string.
pub fn check_response(method: &str, path: &str, status: u16, content_type: &str, body: &str) {
    if let Err(problem) = check(&DOCUMENT, method, path, status, content_type, body) {
        panic!("{method} {path} answered {status} against its OpenAPI document: {problem}\nbody: {body}");
    }
}

/// The documented operation for a concrete path, if any: (template, operation).
pub fn operation<'a>(doc: &'a Value, method: &str, path: &str) -> Option<(&'a str, &'a Value)> {
    let path = path.split('?').next().unwrap_or(path);
    let paths = doc["paths"].as_object()?;
    let (template, item) = paths.iter().find(|(template, _)| matches(template, path))?;
    let operation = item.get(method.to_ascii_lowercase())?;
    Some((template.as_str(), operation))
}

fn matches(template: &str, path: &str) -> bool {
    let a: Vec<&str> = template.split('/').collect();
    let b: Vec<&str> = path.split('/').collect();
    a.len() == b.len()
        && a.iter()
            .zip(&b)
            .all(|(t, p)| (t.starts_with('{') && t.ends_with('}') && !p.is_empty()) || t == p)
}

pub fn check(
    doc: &Value,
    method: &str,
    path: &str,
    status: u16,
    content_type: &str,
    body: &str,
) -> Result<(), String> {
    // An undocumented path or method (404, 405 tests) has nothing to check.
    let Some((template, operation)) = operation(doc, method, path) else {
        return Ok(());
    };
    let responses = &operation["responses"];
    let Some(response) = responses
        .get(status.to_string())
        .or_else(|| responses.get("default"))
    else {
        return Err(format!(
            "status {status} is not documented for {} {template}",
            method.to_ascii_uppercase()
        ));
    };
    let Some(content) = response.get("content").and_then(Value::as_object) else {
        return Ok(());
    };
    // A page (the console's HTML) is checked for its media type only; JSON
    // is checked against its schema, strictly.
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    if media_type != "application/json" && content.contains_key(media_type) {
        return Ok(());
    }
    let Some(schema) = content.get("application/json").map(|c| &c["schema"]) else {
        if !content_type.starts_with("application/json") {
            return Ok(());
        }
        return Err(format!(
            "answered JSON where the document says {:?}",
            content.keys().collect::<Vec<_>>()
        ));
    };
    if !content_type.starts_with("application/json") {
        return Err(format!(
            "answered {content_type:?} where the document says JSON"
        ));
    }
    let value: Value = serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
    validate(doc, schema, &value, "$")
}

/// `Ok` when `value` matches `schema`; otherwise where and why not.
pub fn validate(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let Some(schema) = schema.as_object() else {
        // `true`, or a schema of no keywords.
        return if schema == &Value::Bool(false) {
            Err(format!("{at}: nothing is allowed here"))
        } else {
            Ok(())
        };
    };
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let name = reference
            .strip_prefix("#/components/schemas/")
            .ok_or_else(|| format!("{at}: unsupported $ref {reference}"))?;
        let target = &doc["components"]["schemas"][name];
        if target.is_null() {
            return Err(format!("{at}: $ref to a missing schema {name}"));
        }
        validate(doc, target, value, at)?;
    }
    if value.is_null() && schema.get("nullable") == Some(&Value::Bool(true)) {
        return Ok(());
    }
    if let Some(types) = schema.get("type") {
        let allowed: Vec<&str> = match types {
            Value::String(t) => vec![t.as_str()],
            Value::Array(list) => list.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !allowed.iter().any(|t| is_type(value, t)) {
            return Err(format!("{at}: {value} is not of type {allowed:?}"));
        }
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        if !options.contains(value) {
            return Err(format!("{at}: {value} is not one of {options:?}"));
        }
    }
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        for part in all {
            validate(doc, part, value, at)?;
        }
    }
    if let Some(any) = schema.get("anyOf").and_then(Value::as_array) {
        let errors: Vec<String> = any
            .iter()
            .filter_map(|s| validate(doc, s, value, at).err())
            .collect();
        if errors.len() == any.len() {
            return Err(format!("{at}: matches none of anyOf: {errors:?}"));
        }
    }
    if let Some(one) = schema.get("oneOf").and_then(Value::as_array) {
        let matched = one
            .iter()
            .filter(|s| validate(doc, s, value, at).is_ok())
            .count();
        if matched != 1 {
            return Err(format!("{at}: matches {matched} of oneOf, not exactly one"));
        }
    }
    if let Some(not) = schema.get("not") {
        if validate(doc, not, value, at).is_ok() {
            return Err(format!("{at}: matches a `not` schema"));
        }
    }
    if let Some(number) = value.as_f64() {
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
            if number < min {
                return Err(format!("{at}: {number} is below {min}"));
            }
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
            if number > max {
                return Err(format!("{at}: {number} is above {max}"));
            }
        }
    }
    if let Some(text) = value.as_str() {
        let length = text.chars().count() as u64;
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64) {
            if length < min {
                return Err(format!("{at}: shorter than {min}"));
            }
        }
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64) {
            if length > max {
                return Err(format!("{at}: longer than {max}"));
            }
        }
    }
    if let Some(items) = value.as_array() {
        if let Some(min) = schema.get("minItems").and_then(Value::as_u64) {
            if (items.len() as u64) < min {
                return Err(format!("{at}: fewer than {min} items"));
            }
        }
        if let Some(max) = schema.get("maxItems").and_then(Value::as_u64) {
            if (items.len() as u64) > max {
                return Err(format!("{at}: more than {max} items"));
            }
        }
        if let Some(item_schema) = schema.get("items") {
            for (i, item) in items.iter().enumerate() {
                validate(doc, item_schema, item, &format!("{at}[{i}]"))?;
            }
        }
    }
    if let Some(object) = value.as_object() {
        let properties = schema.get("properties").and_then(Value::as_object);
        if let Some(required) = schema.get("required").and_then(Value::as_array) {
            for name in required.iter().filter_map(Value::as_str) {
                if !object.contains_key(name) {
                    return Err(format!("{at}: required field {name:?} is missing"));
                }
            }
        }
        for (name, field) in object {
            let here = format!("{at}.{name}");
            match properties.and_then(|p| p.get(name)) {
                Some(field_schema) => validate(doc, field_schema, field, &here)?,
                None => match schema.get("additionalProperties") {
                    Some(Value::Bool(false)) => {
                        return Err(format!("{here}: not a documented field"))
                    }
                    Some(extra) => validate(doc, extra, field, &here)?,
                    None => {}
                },
            }
        }
    }
    Ok(())
}

fn is_type(value: &Value, name: &str) -> bool {
    match name {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => value.is_i64() || value.is_u64(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{check, validate};

    fn doc() -> serde_json::Value {
        json!({
            "paths": {"/things/{id}": {"get": {"responses": {
                "200": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}}},
                "404": {"description": "not_found"}
            }}}},
            "components": {"schemas": {"Thing": {
                "type": "object",
                "required": ["id", "tags"],
                "properties": {
                    "id": {"type": "string"},
                    "size": {"type": ["integer", "null"], "minimum": 0},
                    "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}},
                    "aud": {"oneOf": [{"type": "string"}, {"type": "array"}]}
                },
                "additionalProperties": false
            }}}
        })
    }

    #[test]
    fn the_validator_accepts_what_the_schema_allows_and_names_what_it_does_not() {
        let doc = doc();
        let thing = json!({"$ref": "#/components/schemas/Thing"});
        let ok = json!({"id": "x", "size": null, "tags": ["a"], "aud": "r"});
        assert_eq!(validate(&doc, &thing, &ok, "$"), Ok(()));
        for (bad, needle) in [
            (json!({"tags": []}), "\"id\""),
            (json!({"id": 1, "tags": []}), "$.id"),
            (json!({"id": "x", "tags": ["c"]}), "$.tags[0]"),
            (json!({"id": "x", "tags": [], "size": -1}), "below"),
            (json!({"id": "x", "tags": [], "size": 1.5}), "$.size"),
            (json!({"id": "x", "tags": [], "extra": true}), "$.extra"),
            (json!({"id": "x", "tags": [], "aud": 3}), "oneOf"),
        ] {
            let error = validate(&doc, &thing, &bad, "$").unwrap_err();
            assert!(error.contains(needle), "{bad}: {error}");
        }
    }

    #[test]
    fn an_undocumented_status_of_a_documented_operation_fails_and_other_paths_pass() {
        let doc = doc();
        let body = r#"{"id": "x", "tags": []}"#;
        assert!(check(&doc, "GET", "/things/1?x=y", 200, "application/json", body).is_ok());
        assert!(check(&doc, "GET", "/things/1", 404, "application/json", "{}").is_ok());
        let error = check(&doc, "GET", "/things/1", 409, "application/json", "{}").unwrap_err();
        assert!(error.contains("409"), "{error}");
        assert!(check(&doc, "GET", "/things/1", 200, "application/json", "[]").is_err());
        assert!(check(&doc, "PUT", "/things/1", 405, "application/json", "{}").is_ok());
        assert!(check(&doc, "GET", "/nothing", 404, "application/json", "{}").is_ok());
    }

    #[test]
    fn a_page_documented_as_html_passes_and_json_beside_it_is_still_checked() {
        let doc = json!({"paths": {"/page": {"post": {"responses": {"401": {"content": {
            "application/json": {"schema": {"type": "object", "required": ["error"]}},
            "text/html": {"schema": {"type": "string"}}
        }}}}}}});
        let html = "<!DOCTYPE html><p>no</p>";
        assert!(check(&doc, "POST", "/page", 401, "text/html; charset=utf-8", html).is_ok());
        assert!(check(&doc, "POST", "/page", 401, "application/json", "{}").is_err());
        assert!(check(&doc, "POST", "/page", 401, "text/plain", "no").is_err());
    }
}
