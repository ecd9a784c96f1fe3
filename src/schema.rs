//! The JSON Schema (2020-12) of the configuration, generated from the model.

use crate::config::model::Config;

/// The schema as pretty-printed JSON (what `garrison schema` prints and
/// `schemas/garrison.schema.json` holds).
pub fn config_schema_json() -> String {
    let generator = schemars::generate::SchemaSettings::draft2020_12().into_generator();
    let schema = generator.into_root_schema_for::<Config>();
    serde_json::to_string_pretty(&schema).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}
