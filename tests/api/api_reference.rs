//! docs/api.md, the API reference in the repository, is generated from the
//! OpenAPI document the server serves (`GET /openapi.json`), and this test
//! fails when the two disagree. To regenerate it:
//!
//! ```sh
//! UPDATE_API_DOC=1 cargo test --test api api_reference
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

use crate::helpers::{spawn_app, Auth};

const REGENERATE: &str = "UPDATE_API_DOC=1 cargo test --test api api_reference";

#[test]
fn api_reference_in_docs_api_md_is_the_openapi_document() {
    let app = spawn_app();
    let document = app.get("/openapi.json", Auth::None).json();
    let generated = render(&document);
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/api.md");
    if std::env::var_os("UPDATE_API_DOC").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let written = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        written == generated,
        "docs/api.md is out of date with the OpenAPI document; regenerate it with\n    {REGENERATE}"
    );
}

/// An operation: method, path and its part of the document.
type Operation<'a> = (String, String, &'a Value);

/// The document as Markdown: endpoints by tag, then the schemas they use.
fn render(doc: &Value) -> String {
    let mut out = String::new();
    let info = &doc["info"];
    let _ = writeln!(out, "# {} API reference\n", text(&info["title"]));
    let _ = writeln!(
        out,
        "<!-- Generated from the OpenAPI document (`GET /openapi.json`) by \
         tests/api/api_reference.rs. Do not edit: run `{REGENERATE}`. -->\n"
    );
    let _ = writeln!(
        out,
        "{} Version {}, OpenAPI {}. The same document is served at `GET /openapi.json`.\n",
        text(&info["description"]),
        text(&info["version"]),
        text(&doc["openapi"])
    );

    out.push_str("## Authentication\n\n");
    if let Some(schemes) = doc["components"]["securitySchemes"].as_object() {
        for (name, scheme) in schemes {
            let _ = writeln!(
                out,
                "- `{name}`: {} `{}`{}",
                text(&scheme["type"]),
                text(&scheme["scheme"]),
                description_suffix(scheme)
            );
        }
    }
    out.push_str(
        "\nAn operation lists the ways it accepts; a bearer way names the scopes \
         the token must hold.\n\n",
    );

    // Tags in the order their first path sorts; operations in path order.
    let mut by_tag: Vec<(String, Vec<Operation>)> = Vec::new();
    for (path, operations) in doc["paths"].as_object().into_iter().flatten() {
        for (method, operation) in operations.as_object().into_iter().flatten() {
            let tag = operation["tags"][0].as_str().unwrap_or("other").to_string();
            let entry = match by_tag.iter().position(|(t, _)| *t == tag) {
                Some(i) => &mut by_tag[i].1,
                None => {
                    by_tag.push((tag, Vec::new()));
                    &mut by_tag.last_mut().unwrap().1
                }
            };
            entry.push((method.to_uppercase(), path.clone(), operation));
        }
    }
    out.push_str("## Endpoints\n\n");
    for (tag, operations) in &by_tag {
        let _ = writeln!(out, "- {tag}");
        for (method, path, _) in operations {
            let _ = writeln!(
                out,
                "  - [`{method} {path}`](#{})",
                anchor(&format!("{method} {path}"))
            );
        }
    }
    out.push('\n');
    for (tag, operations) in &by_tag {
        let _ = writeln!(out, "## {tag}\n");
        for (method, path, operation) in operations {
            render_operation(&mut out, method, path, operation);
        }
    }

    out.push_str("## Schemas\n\n");
    for (name, schema) in doc["components"]["schemas"]
        .as_object()
        .into_iter()
        .flatten()
    {
        render_schema(&mut out, name, schema);
    }
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

fn render_operation(out: &mut String, method: &str, path: &str, operation: &Value) {
    let _ = writeln!(out, "### {method} {path}\n");
    if let Some(summary) = operation["summary"].as_str() {
        let _ = writeln!(out, "{}\n", summary.trim());
    }
    if let Some(description) = operation["description"].as_str() {
        let _ = writeln!(out, "{}\n", description.trim());
    }
    let _ = writeln!(
        out,
        "Authentication: {}.\n",
        security(&operation["security"])
    );
    if let Some(parameters) = operation["parameters"].as_array() {
        out.push_str("| parameter | in | required | type | description |\n");
        out.push_str("| --- | --- | --- | --- | --- |\n");
        for p in parameters {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} | {} |",
                text(&p["name"]),
                text(&p["in"]),
                yes_no(p["required"].as_bool().unwrap_or(false)),
                cell(&type_of(&p["schema"])),
                cell(p["description"].as_str().unwrap_or(""))
            );
        }
        out.push('\n');
    }
    let body = &operation["requestBody"];
    if let Some(content) = body["content"].as_object() {
        for (media, media_type) in content {
            let _ = writeln!(
                out,
                "Request body ({}): `{media}`, {}.\n",
                if body["required"].as_bool().unwrap_or(false) {
                    "required"
                } else {
                    "optional"
                },
                type_of(&media_type["schema"])
            );
        }
    }
    out.push_str("| status | meaning | body |\n| --- | --- | --- |\n");
    for (status, response) in operation["responses"].as_object().into_iter().flatten() {
        let bodies: Vec<String> = response["content"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(media, m)| match m.get("schema") {
                Some(schema) => format!("`{media}`: {}", type_of(schema)),
                None => format!("`{media}`"),
            })
            .collect();
        let _ = writeln!(
            out,
            "| {status} | {} | {} |",
            cell(response["description"].as_str().unwrap_or("")),
            cell(&bodies.join("; "))
        );
    }
    out.push('\n');
}

fn render_schema(out: &mut String, name: &str, schema: &Value) {
    let _ = writeln!(out, "### {name}\n");
    if let Some(description) = schema["description"].as_str() {
        let _ = writeln!(out, "{}\n", description.trim());
    }
    let Some(properties) = schema["properties"].as_object() else {
        let _ = writeln!(
            out,
            "{}.\n",
            capitalised(&type_of(&strip_description(schema)))
        );
        return;
    };
    let required: Vec<&str> = schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    out.push_str("| field | type | required | description |\n| --- | --- | --- | --- |\n");
    for (field, property) in properties {
        let _ = writeln!(
            out,
            "| `{field}` | {} | {} | {} |",
            cell(&type_of(property)),
            yes_no(required.contains(&field.as_str())),
            cell(property["description"].as_str().unwrap_or(""))
        );
    }
    if schema["additionalProperties"] == Value::Bool(false) {
        out.push_str("\nNo other fields.\n");
    }
    if let Some(exclusive) = schema["not"]["required"].as_array() {
        let names: Vec<String> = exclusive.iter().map(|f| format!("`{}`", text(f))).collect();
        let _ = writeln!(out, "\nNot both of {}.", names.join(" and "));
    }
    out.push('\n');
}

/// A schema in a few words: `string (date-time)`, `array of ClientView`...
fn type_of(schema: &Value) -> String {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.rsplit('/').next().unwrap_or(reference);
        return format!("[{name}](#{})", anchor(name));
    }
    for (key, joiner) in [("oneOf", " or "), ("anyOf", " or "), ("allOf", " and ")] {
        if let Some(options) = schema[key].as_array() {
            let parts: Vec<String> = options.iter().map(type_of).collect();
            let joined = parts.join(joiner);
            return match schema["type"].as_str() {
                Some(t) => format!("{t}: {joined}"),
                None => joined,
            };
        }
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(list) => list.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let mut described: Vec<String> = types
        .iter()
        .filter(|t| **t != "null")
        .map(|t| match *t {
            "array" => format!("array of {}", type_of(&schema["items"])),
            "object" => match &schema["additionalProperties"] {
                Value::Object(_) => {
                    format!("object of {}", type_of(&schema["additionalProperties"]))
                }
                _ => "object".to_string(),
            },
            other => other.to_string(),
        })
        .collect();
    if described.is_empty() && types.is_empty() {
        // A branch of anyOf that only narrows its parent's type.
        if let Some(format) = schema["format"].as_str() {
            return format.to_string();
        }
        if schema["pattern"].is_string() {
            return "a pattern".to_string();
        }
    }
    if described.is_empty() {
        described.push(if types.is_empty() { "any" } else { "null" }.to_string());
    }
    let mut words = described.join(" or ");
    let mut limits = Vec::new();
    if let Some(format) = schema["format"].as_str() {
        limits.push(format.to_string());
    }
    match (&schema["minimum"], &schema["maximum"]) {
        (Value::Number(min), Value::Number(max)) => limits.push(format!("{min} to {max}")),
        (Value::Number(min), _) => limits.push(format!("at least {min}")),
        (_, Value::Number(max)) => limits.push(format!("at most {max}")),
        _ => {}
    }
    match (&schema["minLength"], &schema["maxLength"]) {
        (Value::Number(min), Value::Number(max)) => {
            limits.push(format!("{min} to {max} characters"))
        }
        (Value::Number(min), _) => limits.push(format!("at least {min} character(s)")),
        (_, Value::Number(max)) => limits.push(format!("at most {max} characters")),
        _ => {}
    }
    if let Some(values) = schema["enum"].as_array() {
        let values: Vec<String> = values
            .iter()
            .map(|v| match v.as_str() {
                Some("") => "`\"\"`".to_string(),
                Some(s) => format!("`{s}`"),
                None => format!("`{v}`"),
            })
            .collect();
        limits.push(format!("one of {}", values.join(", ")));
    }
    if !limits.is_empty() {
        words = format!("{words} ({})", limits.join("; "));
    }
    if types.contains(&"null") {
        words.push_str(", nullable");
    }
    words
}

fn security(requirements: &Value) -> String {
    let Some(list) = requirements.as_array() else {
        return "none".to_string();
    };
    let ways: Vec<String> = list
        .iter()
        .map(|requirement| {
            let schemes: BTreeMap<&String, &Value> =
                requirement.as_object().into_iter().flatten().collect();
            if schemes.is_empty() {
                return "none".to_string();
            }
            schemes
                .into_iter()
                .map(|(scheme, scopes)| {
                    let scopes: Vec<String> = scopes
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|s| format!("`{}`", text(s)))
                        .collect();
                    if scopes.is_empty() {
                        format!("`{scheme}`")
                    } else {
                        format!("`{scheme}` with {}", scopes.join(", "))
                    }
                })
                .collect::<Vec<_>>()
                .join(" and ")
        })
        .collect();
    ways.join(", or ")
}

fn strip_description(schema: &Value) -> Value {
    let mut schema = schema.clone();
    if let Some(object) = schema.as_object_mut() {
        object.remove("description");
    }
    schema
}

fn text(value: &Value) -> String {
    value.as_str().map(str::to_string).unwrap_or_default()
}

fn description_suffix(value: &Value) -> String {
    match value["description"].as_str() {
        Some(d) => format!(", {}", d.trim()),
        None => String::new(),
    }
}

fn yes_no(value: bool) -> &'static str {
    if value {
        "yes"
    } else {
        "no"
    }
}

fn capitalised(words: &str) -> String {
    let mut chars = words.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Text that stays inside one Markdown table cell.
fn cell(value: &str) -> String {
    value
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

/// The anchor GitHub gives a heading.
fn anchor(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            'a'..='z' | '0'..='9' | '-' | '_' => Some(c),
            ' ' => Some('-'),
            _ => None,
        })
        .collect()
}
