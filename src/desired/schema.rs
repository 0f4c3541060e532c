//! The JSON Schema of job files, generated from the field table so that editors complete and
//! check exactly what validation accepts.

use serde_json::{Map, Value, json};

use super::convert::{RESOURCE_CONFIG_FIELDS, RESOURCE_SPEC_FIELDS, RESTORE_FIELDS};
use super::environment::{RESOURCE_TYPES, TARGET_STATUSES};
use super::fields::{FieldSpec, FieldType, Kinds, fields_of};

/// JSON Schema (draft 2020-12) of one job document: a `oneOf` with one branch per kind.
/// Environment files are described under `$defs.environment`.
pub fn schema() -> Value {
    let branches: Vec<Value> = [
        (
            "FlinkSqlJob",
            Kinds::SQL,
            "A DLI Flink SQL job.",
            &["sql_file"][..],
        ),
        (
            "FlinkJarJob",
            Kinds::JAR,
            "A DLI Flink Jar job.",
            &["entrypoint"][..],
        ),
        (
            "DlfJob",
            Kinds::DLF,
            "A DataArts Factory (DLF) job, imported from its .job definition.",
            &["definition_file"][..],
        ),
    ]
    .into_iter()
    .map(|(kind, kinds, description, required)| branch(kind, kinds, description, required))
    .collect();
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://github.com/dli-gitops/dli-gitops/schema/job.json",
        "title": "dli-gitops job file",
        "description": "One job per YAML document. Values may use ${variable} references filled from environments/<env>.yaml; $${ writes a literal ${.",
        "type": "object",
        "oneOf": branches,
        "$defs": { "environment": environment_definition() },
    })
}

fn branch(kind: &str, kinds: Kinds, description: &str, required: &[&str]) -> Value {
    let mut properties = Map::new();
    for spec in fields_of(kinds) {
        let mut property = property(spec);
        if spec.name == "kind" {
            property = json!({ "const": kind, "description": spec.description });
        }
        properties.insert(spec.name.to_string(), property);
    }
    let mut required_fields = vec!["kind", "name"];
    // SQL jobs need sql_file or sql_body: expressed with anyOf rather than `required`.
    let any_of = if kind == "FlinkSqlJob" {
        Some(json!([{ "required": ["sql_file"] }, { "required": ["sql_body"] }]))
    } else {
        required_fields.extend_from_slice(required);
        None
    };
    let mut branch = json!({
        "title": kind,
        "description": description,
        "type": "object",
        "properties": properties,
        "required": required_fields,
        "additionalProperties": false,
    });
    if let (Some(any_of), Some(object)) = (any_of, branch.as_object_mut()) {
        object.insert("anyOf".into(), any_of);
    }
    if kind != "DlfJob" {
        if let Some(name) = branch.pointer_mut("/properties/name") {
            name["maxLength"] = json!(57);
            name["pattern"] = json!("^[A-Za-z0-9][A-Za-z0-9_-]*$");
        }
    } else if let Some(name) = branch.pointer_mut("/properties/name") {
        name["pattern"] = json!("^[A-Za-z0-9][A-Za-z0-9_.-]*$");
    }
    branch
}

/// A value that may also be a `${variable}` reference (filled before checking).
fn or_variable(schema: Value) -> Value {
    json!({ "anyOf": [schema, { "type": "string", "pattern": "\\$\\{[A-Za-z_][A-Za-z0-9_.-]*\\}" }] })
}

fn property(spec: &FieldSpec) -> Value {
    let mut schema = match spec.field_type {
        FieldType::Text {
            min_chars,
            max_chars,
        } => {
            json!({ "type": ["string", "number"], "minLength": min_chars, "maxLength": max_chars })
        }
        FieldType::Integer { min, max } => {
            or_variable(json!({ "type": "integer", "minimum": min, "maximum": max }))
        }
        FieldType::Boolean => or_variable(json!({ "type": "boolean" })),
        FieldType::Choice(choices) => or_variable(json!({ "enum": choices })),
        FieldType::TextMap {
            max_entries,
            max_key_chars,
            max_value_chars,
        } => json!({
            "type": "object",
            "maxProperties": max_entries,
            "propertyNames": { "minLength": 1, "maxLength": max_key_chars },
            "additionalProperties": { "type": ["string", "number", "boolean"], "maxLength": max_value_chars },
        }),
        FieldType::TextList { max_items } => json!({
            "type": "array",
            "maxItems": max_items,
            "items": { "type": "string", "minLength": 1 },
        }),
        FieldType::Restore => {
            let mut properties = Map::new();
            for (name, description) in RESTORE_FIELDS {
                let field = match *name {
                    "nonce" => {
                        json!({ "type": "integer", "minimum": 0, "description": description })
                    }
                    "savepoint_path" => {
                        json!({ "type": "string", "pattern": "^obs://", "description": description })
                    }
                    "from_catalog" => json!({
                        "oneOf": [{ "const": "latest" }, { "type": "integer", "minimum": 1 }],
                        "description": description,
                    }),
                    _ => json!({ "type": "string", "description": description }),
                };
                properties.insert(name.to_string(), field);
            }
            json!({ "type": "object", "properties": properties, "additionalProperties": false })
        }
        FieldType::ResourceConfig => {
            let mut spec_properties = Map::new();
            for (name, description) in RESOURCE_SPEC_FIELDS {
                let field = match *name {
                    "cpu" => {
                        json!({ "type": "number", "exclusiveMinimum": 0, "description": description })
                    }
                    _ => {
                        json!({ "type": ["string", "number"], "pattern": "^[0-9]+(\\.[0-9]+)?([MmGg][Bb]?)?$", "description": description })
                    }
                };
                spec_properties.insert(name.to_string(), field);
            }
            let spec_schema = json!({ "type": "object", "properties": spec_properties, "additionalProperties": false });
            let mut properties = Map::new();
            for (name, description) in RESOURCE_CONFIG_FIELDS {
                let mut field = match *name {
                    "max_slot" | "parallel_number" => {
                        json!({ "type": "integer", "minimum": 1, "maximum": 2000 })
                    }
                    _ => spec_schema.clone(),
                };
                field["description"] = json!(description);
                properties.insert(name.to_string(), field);
            }
            json!({ "type": "object", "properties": properties, "additionalProperties": false })
        }
    };
    schema["description"] = json!(spec.description);
    schema
}

/// JSON Schema (draft 2020-12) of an environment file (`environments/<env>.yaml`).
pub fn environment_schema() -> Value {
    let mut schema = environment_definition();
    schema["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
    schema
}

fn environment_definition() -> Value {
    json!({
        "title": "dli-gitops environment file (environments/<env>.yaml)",
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "$schema": { "type": "string" },
            "variables": {
                "description": "Values for ${name} references in job files, SQL files and DLF definitions.",
                "type": "object",
                "propertyNames": { "pattern": "^[A-Za-z_][A-Za-z0-9_.-]*$" },
                "additionalProperties": { "type": ["string", "number", "boolean"] },
            },
            "overrides": {
                "description": "Per job name, fields merged over the job (maps merge key by key).",
                "type": "object",
                "additionalProperties": { "type": "object" },
            },
            "dlf": {
                "description": "How DLF jobs are imported into this environment.",
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "params": { "type": "object", "additionalProperties": { "type": ["string", "number", "boolean"] } },
                    "resources": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "additionalProperties": false,
                            "required": ["name", "type"],
                            "properties": {
                                "name": { "type": "string" },
                                "type": { "enum": RESOURCE_TYPES },
                                "replace": { "type": "string" },
                            },
                        },
                    },
                    "target_status": { "enum": TARGET_STATUSES },
                    "approvers": { "type": "array", "items": { "type": "string" } },
                    "execute_user": { "type": "string" },
                },
            },
        },
    })
}
