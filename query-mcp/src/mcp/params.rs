//! Tool arguments, deserialized so that a wrong type names the field: rmcp's own `Parameters`
//! reports only "invalid type: string, expected i64", which leaves an agent guessing which
//! argument to fix. The `#[tool]` macro finds the input schema by this type's name. The error is
//! marked so that `call_tool` answers it as a tool result with `isError` (the spec's place for
//! input errors a model can correct), not as a protocol error.

use rmcp::handler::server::common::FromContextPart;
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::model::ErrorData;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;

/// A tool's arguments of type `P`; the schema is `P`'s.
pub struct Parameters<P>(pub P);

impl<P: JsonSchema> JsonSchema for Parameters<P> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        P::schema_name()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        P::json_schema(generator)
    }
}

impl<S, P: DeserializeOwned> FromContextPart<ToolCallContext<'_, S>> for Parameters<P> {
    fn from_context_part(context: &mut ToolCallContext<S>) -> Result<Self, ErrorData> {
        let arguments = serde_json::Value::Object(context.arguments.take().unwrap_or_default());
        parse(arguments)
            .map(Parameters)
            .map_err(|message| ErrorData::invalid_params(message, Some(MARK.clone())))
    }
}

/// The `data` that marks an argument error.
static MARK: std::sync::LazyLock<serde_json::Value> =
    std::sync::LazyLock::new(|| serde_json::json!({ "causeway": "invalid-argument" }));

/// Whether `e` came from deserializing a tool's arguments.
pub fn is_argument_error(e: &ErrorData) -> bool {
    e.data.as_ref() == Some(&*MARK)
}

/// Deserializes `arguments`, naming the offending argument on error.
pub fn parse<P: DeserializeOwned>(arguments: serde_json::Value) -> Result<P, String> {
    serde_path_to_error::deserialize(arguments).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            format!("invalid arguments: {}", e.inner())
        } else {
            format!("invalid argument `{path}`: {}", e.inner())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Args {
        #[allow(dead_code)]
        limit: Option<i64>,
    }

    #[test]
    fn a_wrong_type_names_the_argument() {
        let err = parse::<Args>(serde_json::json!({"limit": "ten"})).unwrap_err();
        assert!(err.contains("`limit`"), "{err}");
        assert!(err.contains("expected i64"), "{err}");
    }

    #[test]
    fn an_unknown_argument_is_named() {
        let err = parse::<Args>(serde_json::json!({"limt": 3})).unwrap_err();
        assert!(err.contains("limt"), "{err}");
    }
}
