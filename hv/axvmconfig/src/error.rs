//! [`ParseError`]: why a text is not a VM description.

use alloc::string::{String, ToString};
use core::fmt;

/// The TOML text is not a well-formed VM description: bad TOML syntax, an unknown or
/// missing field, a value of the wrong type, an unknown device kind or policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// What is wrong, as the TOML parser says it (e.g. "unknown variant `uart`, expected
    /// `pl011` or `ns16550`").
    pub message: String,
    /// Dotted path of the table key the error is in (e.g. `devices.kind`), when the parser
    /// knows it: array indices are not included, except that an error about a whole
    /// `[[devices]]` or `[[passthrough]]` entry names it (`devices[1]`) and is placed at its
    /// start. Errors at the top level (syntax errors, a missing top-level field) have none;
    /// their message names the field.
    pub key: Option<String>,
    /// 1-based line of the error in the text, when known.
    pub line: Option<usize>,
    /// 1-based column (in characters) of the error in the text, when known.
    pub column: Option<usize>,
}

impl ParseError {
    pub(crate) fn from_toml(text: &str, err: &toml::de::Error) -> Self {
        let bare = err.message();
        let mut key = key_path(err, bare);
        let mut at = err.span().map(|span| span.start);
        // The checks of a `[[devices]]` or `[[passthrough]]` entry as a whole run after the
        // parser has read the entry, and it places their errors at the start of the array:
        // name the entry that fails, and place the error there.
        if let Some((index, start)) = key.as_deref().and_then(|k| failing_entry(text, k)) {
            key = key.map(|k| alloc::format!("{k}[{index}]"));
            at = Some(start);
        }
        let (line, column) = match at {
            Some(offset) => {
                let (line, column) = line_column(text, offset);
                (Some(line), Some(column))
            }
            None => (None, None),
        };
        // The parser's "duplicate key" names no key; its span is the repeated key.
        let repeated = (bare == "duplicate key")
            .then(|| err.span().and_then(|span| text.get(span)))
            .flatten()
            .map(str::trim)
            .filter(|key| !key.is_empty() && !key.contains('\n'));
        let message = match repeated {
            Some(key) => alloc::format!("duplicate key `{key}`: a key may be given once"),
            None => bare.to_string(),
        };
        Self {
            key,
            message,
            line,
            column,
        }
    }
}

/// The key path the toml error carries. `toml` keeps it private but prints it as
/// "MESSAGE\nin `a.b`\n" when the error has no input attached; a different rendering only
/// loses the key (a unit test pins the format of the version in use).
fn key_path(err: &toml::de::Error, message: &str) -> Option<String> {
    let mut bare = err.clone();
    bare.set_input(None);
    let rendered = bare.to_string();
    let rest = rendered.strip_prefix(message)?.trim();
    let key = rest.strip_prefix("in `")?.strip_suffix('`')?;
    (!key.is_empty()).then(|| key.to_string())
}

/// For an error in the `[[devices]]` or `[[passthrough]]` array (`key`), the index of its
/// first entry that does not parse on its own, and where that entry starts in `text`.
fn failing_entry(text: &str, key: &str) -> Option<(usize, usize)> {
    use serde::de::IntoDeserializer;
    use serde::Deserialize;
    use toml::de::{DeTable, DeValue};

    let fails = |entry: &toml::Spanned<DeValue<'_>>| {
        let entry = entry.clone().into_deserializer();
        match key {
            "devices" => crate::DeviceConfig::deserialize(entry).is_err(),
            _ => crate::PassthroughConfig::deserialize(entry).is_err(),
        }
    };
    if !matches!(key, "devices" | "passthrough") {
        return None;
    }
    let root = DeTable::parse(text).ok()?;
    let (_, value) = root.get_ref().iter().find(|(k, _)| k.get_ref() == key)?;
    let DeValue::Array(entries) = value.get_ref() else {
        return None;
    };
    entries
        .iter()
        .enumerate()
        .find(|(_, entry)| fails(entry))
        .map(|(index, entry)| (index, entry.span().start))
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |nl| nl + 1);
    let line = before.matches('\n').count() + 1;
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(column)) => write!(f, "line {line}, column {column}: ")?,
            (Some(line), None) => write!(f, "line {line}: ")?,
            _ => {}
        }
        if let Some(key) = &self.key {
            write!(f, "in `{key}`: ")?;
        }
        f.write_str(&self.message)
    }
}

impl core::error::Error for ParseError {}
