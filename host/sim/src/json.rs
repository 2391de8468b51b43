//! A tiny ordered JSON tree with a pretty printer, so documents keep the key order Alpha Vantage uses (dates newest
//! first) whatever features `serde_json` is built with.

/// A JSON value made only of strings and objects, which is all Alpha Vantage documents contain.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    /// A string; escaped on output.
    Str(String),
    /// An object whose entries are printed in this order.
    Obj(Vec<(String, Json)>),
}

/// Indentation per nesting level, as in Alpha Vantage's own answers.
const INDENT: &str = "    ";

impl Json {
    /// A string value.
    pub fn str(s: impl Into<String>) -> Self {
        Self::Str(s.into())
    }

    /// Renders the value pretty-printed with four-space indentation, without a trailing newline.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.write(&mut out, 0);
        out
    }

    fn write(&self, out: &mut String, depth: usize) {
        match self {
            Self::Str(s) => push_str_literal(out, s),
            Self::Obj(entries) if entries.is_empty() => out.push_str("{}"),
            Self::Obj(entries) => {
                out.push_str("{\n");
                for (i, (key, value)) in entries.iter().enumerate() {
                    out.push_str(&INDENT.repeat(depth + 1));
                    push_str_literal(out, key);
                    out.push_str(": ");
                    value.write(out, depth + 1);
                    if i + 1 < entries.len() {
                        out.push(',');
                    }
                    out.push('\n');
                }
                out.push_str(&INDENT.repeat(depth));
                out.push('}');
            }
        }
    }
}

/// Appends `s` as a JSON string literal; `serde_json` does the escaping.
fn push_str_literal(out: &mut String, s: &str) {
    out.push_str(&serde_json::Value::String(s.to_owned()).to_string());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_in_insertion_order() {
        let obj = |entries: Vec<(&str, Json)>| Json::Obj(entries.into_iter().map(|(k, v)| (k.to_owned(), v)).collect());
        for (value, want) in [
            (Json::str("a\"b"), r#""a\"b""#.to_owned()),
            (obj(vec![]), "{}".to_owned()),
            (obj(vec![("b", Json::str("1")), ("a", obj(vec![]))]), "{\n    \"b\": \"1\",\n    \"a\": {}\n}".to_owned()),
            (obj(vec![("z", obj(vec![("y", Json::str("2"))]))]), "{\n    \"z\": {\n        \"y\": \"2\"\n    }\n}".to_owned()),
        ] {
            let text = value.render();
            assert_eq!(text, want);
            assert!(serde_json::from_str::<serde_json::Value>(&text).is_ok());
        }
    }
}
