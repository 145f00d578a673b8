//! A task's parameters as Python declares them, and binding a message's
//! `args`/`kwargs` to them as Python binds a call — with Python's own
//! `TypeError` texts when the call does not fit.
//!
//! ```python
//! def add(x, y, z=None): …          # ["x", "y", "z=None"]
//! def fail(*args): …                # ["*args"]
//! def sleeping(i, **_): …           # ["i", "**_"]
//! def redis_echo(message, redis_key='redis-echo'): …
//! ```
//!
//! A default is written after `=` as Python writes it for the values JSON
//! has (`None`, `True`, `1.5`, `'text'`) or as JSON (`[1, 2]`, `{"a": 1}`).
//! What the body gets is one value per named parameter (a default filled
//! in), then the extra positional arguments as a list if there is a
//! `*args`, then the extra keyword arguments as an object if there is a
//! `**kwargs`.

use serde_json::{Map, Value};

/// One parameter of a task's signature.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Parameter {
    pub name: String,
    /// `None`: required.
    pub default: Option<Value>,
}

/// A task's signature: named parameters, then `*args`, then `**kwargs`.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Signature {
    pub named: Vec<Parameter>,
    /// The name after `*`, if the task takes extra positional arguments.
    pub var_args: Option<String>,
    /// The name after `**`, if the task takes extra keyword arguments.
    pub var_kwargs: Option<String>,
}

impl Signature {
    /// Reads `["x", "y=2", "*args", "**kwargs"]`; a spec that Python would
    /// not accept is an error naming it.
    pub fn parse(specs: &[&str]) -> Result<Signature, String> {
        let mut signature = Signature::default();
        for spec in specs {
            let spec = spec.trim();
            if let Some(name) = spec.strip_prefix("**") {
                check_name(name, spec)?;
                if signature.var_kwargs.is_some() {
                    return Err(format!("'{spec}': only one **kwargs parameter"));
                }
                signature.var_kwargs = Some(name.to_owned());
                continue;
            }
            if signature.var_kwargs.is_some() {
                return Err(format!("'{spec}': nothing may follow **kwargs"));
            }
            if let Some(name) = spec.strip_prefix('*') {
                check_name(name, spec)?;
                if signature.var_args.is_some() {
                    return Err(format!("'{spec}': only one *args parameter"));
                }
                signature.var_args = Some(name.to_owned());
                continue;
            }
            if signature.var_args.is_some() {
                return Err(format!(
                    "'{spec}': keyword-only parameters (after *args) are not supported"
                ));
            }
            let (name, default) = match spec.split_once('=') {
                Some((name, default)) => {
                    let value = python_literal(default.trim())
                        .ok_or_else(|| format!("'{spec}': the default is neither a Python literal (None, True, 1.5, 'text') nor JSON"))?;
                    (name.trim(), Some(value))
                }
                None => (spec, None),
            };
            check_name(name, spec)?;
            let after_default = signature.named.last().is_some_and(|p| p.default.is_some());
            if default.is_none() && after_default {
                return Err(format!(
                    "'{spec}': a parameter without a default follows one with a default"
                ));
            }
            if signature.named.iter().any(|p| p.name == name) {
                return Err(format!("'{spec}': duplicate parameter '{name}'"));
            }
            signature.named.push(Parameter {
                name: name.to_owned(),
                default,
            });
        }
        Ok(signature)
    }

    /// Binds `args`/`kwargs` as Python binds a call to `function`, or the
    /// `TypeError` text Python gives.
    pub fn bind(
        &self,
        function: &str,
        args: &[Value],
        kwargs: &Map<String, Value>,
    ) -> Result<Vec<Value>, String> {
        let named = &self.named;
        if args.len() > named.len() && self.var_args.is_none() {
            return Err(too_many_positional(function, named, args.len()));
        }
        let mut bound: Vec<Option<Value>> = named
            .iter()
            .enumerate()
            .map(|(i, _)| args.get(i).cloned())
            .collect();
        let extra_args: Vec<Value> = args.iter().skip(named.len()).cloned().collect();
        let mut extra_kwargs = Map::new();
        for (name, value) in kwargs {
            match named.iter().position(|parameter| &parameter.name == name) {
                Some(index) => match bound.get_mut(index) {
                    Some(Some(_)) => {
                        return Err(format!(
                            "{function}() got multiple values for argument '{name}'"
                        ));
                    }
                    Some(slot) => *slot = Some(value.clone()),
                    None => {}
                },
                None if self.var_kwargs.is_some() => {
                    extra_kwargs.insert(name.clone(), value.clone());
                }
                None => {
                    return Err(format!(
                        "{function}() got an unexpected keyword argument '{name}'"
                    ));
                }
            }
        }
        let missing: Vec<&str> = named
            .iter()
            .zip(&bound)
            .filter(|(parameter, value)| value.is_none() && parameter.default.is_none())
            .map(|(parameter, _)| parameter.name.as_str())
            .collect();
        if !missing.is_empty() {
            return Err(missing_positional(function, &missing));
        }
        let mut values: Vec<Value> = named
            .iter()
            .zip(bound)
            .map(|(parameter, value)| {
                value
                    .or_else(|| parameter.default.clone())
                    .unwrap_or(Value::Null)
            })
            .collect();
        if self.var_args.is_some() {
            values.push(Value::Array(extra_args));
        }
        if self.var_kwargs.is_some() {
            values.push(Value::Object(extra_kwargs));
        }
        Ok(values)
    }

    /// The parameters as Celery's `inspect registered` shows a signature.
    pub fn display(&self) -> String {
        let mut parts: Vec<String> = self
            .named
            .iter()
            .map(|p| match &p.default {
                Some(default) => format!("{}={}", p.name, crate::protocol::pyrepr::repr(default)),
                None => p.name.clone(),
            })
            .collect();
        if let Some(name) = &self.var_args {
            parts.push(format!("*{name}"));
        }
        if let Some(name) = &self.var_kwargs {
            parts.push(format!("**{name}"));
        }
        parts.join(", ")
    }
}

fn check_name(name: &str, spec: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let starts_well = chars.next().is_some_and(|c| c.is_alphabetic() || c == '_');
    if starts_well && chars.all(|c| c.is_alphanumeric() || c == '_') {
        Ok(())
    } else {
        Err(format!("'{spec}': '{name}' is not a Python parameter name"))
    }
}

/// `None`, `True`, `False`, `'text'` as Python writes them; anything else
/// as JSON.
fn python_literal(text: &str) -> Option<Value> {
    match text {
        "None" => return Some(Value::Null),
        "True" => return Some(Value::Bool(true)),
        "False" => return Some(Value::Bool(false)),
        _ => {}
    }
    if let Some(inner) = text.strip_prefix('\'').and_then(|t| t.strip_suffix('\''))
        && !inner.contains(['\'', '\\'])
    {
        return Some(Value::String(inner.to_owned()));
    }
    serde_json::from_str(text).ok()
}

/// Python 3's text for too many positional arguments.
fn too_many_positional(function: &str, named: &[Parameter], given: usize) -> String {
    let required = named.iter().filter(|p| p.default.is_none()).count();
    let takes = match (required, named.len()) {
        (low, high) if low == high => format!(
            "{high} positional argument{}",
            if high == 1 { "" } else { "s" }
        ),
        (low, high) => format!("from {low} to {high} positional arguments"),
    };
    let were = if given == 1 { "was" } else { "were" };
    format!("{function}() takes {takes} but {given} {were} given")
}

/// Python 3's text for missing arguments: `'a'`, `'a' and 'b'`,
/// `'a', 'b', and 'c'`.
fn missing_positional(function: &str, missing: &[&str]) -> String {
    let quoted: Vec<String> = missing.iter().map(|name| format!("'{name}'")).collect();
    let names = match quoted.as_slice() {
        [one] => one.clone(),
        [first, second] => format!("{first} and {second}"),
        [rest @ .., last] => format!("{}, and {last}", rest.join(", ")),
        [] => String::new(),
    };
    let plural = if missing.len() == 1 {
        "argument"
    } else {
        "arguments"
    };
    format!(
        "{function}() missing {} required positional {plural}: {names}",
        missing.len()
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn bind(specs: &[&str], args: Value, kwargs: Value) -> Result<Vec<Value>, String> {
        let signature = Signature::parse(specs).unwrap();
        signature.bind("f", args.as_array().unwrap(), kwargs.as_object().unwrap())
    }

    #[test]
    fn defaults_fill_what_the_call_leaves_out() {
        let add = ["x", "y", "z=None"];
        assert_eq!(
            bind(&add, json!([1, 2]), json!({})),
            Ok(vec![json!(1), json!(2), Value::Null])
        );
        assert_eq!(
            bind(&add, json!([1, 2, 3]), json!({})),
            Ok(vec![json!(1), json!(2), json!(3)])
        );
        assert_eq!(
            bind(&add, json!([1]), json!({"y": 2, "z": 3})),
            Ok(vec![json!(1), json!(2), json!(3)])
        );
        let echo = ["message", "redis_key='redis-echo'"];
        assert_eq!(
            bind(&echo, json!(["hi"]), json!({})),
            Ok(vec![json!("hi"), json!("redis-echo")])
        );
        let pause = ["numbers", "pause_time=1"];
        assert_eq!(
            bind(&pause, json!([[1]]), json!({})),
            Ok(vec![json!([1]), json!(1)])
        );
    }

    #[test]
    fn star_args_and_star_star_kwargs_take_the_rest() {
        assert_eq!(
            bind(&["*args"], json!([1, "a", null]), json!({})),
            Ok(vec![json!([1, "a", null])])
        );
        assert_eq!(
            bind(&["i", "**_"], json!([5]), json!({"extra": true})),
            Ok(vec![json!(5), json!({"extra": true})])
        );
        assert_eq!(
            bind(
                &["a", "*rest", "**options"],
                json!([1, 2, 3]),
                json!({"k": 4})
            ),
            Ok(vec![json!(1), json!([2, 3]), json!({"k": 4})])
        );
        assert_eq!(bind(&["*args"], json!([]), json!({})), Ok(vec![json!([])]));
    }

    #[test]
    fn wrong_calls_get_python_3s_own_type_errors() {
        let add = ["x", "y", "z=None"];
        assert_eq!(
            bind(&add, json!([1, 2, 3, 4]), json!({})),
            Err("f() takes from 2 to 3 positional arguments but 4 were given".into())
        );
        assert_eq!(
            bind(&["x"], json!([1, 2]), json!({})),
            Err("f() takes 1 positional argument but 2 were given".into())
        );
        assert_eq!(
            bind(&[], json!([1]), json!({})),
            Err("f() takes 0 positional arguments but 1 was given".into())
        );
        assert_eq!(
            bind(&["a", "b", "c"], json!([]), json!({})),
            Err("f() missing 3 required positional arguments: 'a', 'b', and 'c'".into())
        );
        assert_eq!(
            bind(&add, json!([]), json!({"z": 1})),
            Err("f() missing 2 required positional arguments: 'x' and 'y'".into())
        );
        assert_eq!(
            bind(&add, json!([1]), json!({"x": 1})),
            Err("f() got multiple values for argument 'x'".into())
        );
        assert_eq!(
            bind(&["*args"], json!([]), json!({"k": 1})),
            Err("f() got an unexpected keyword argument 'k'".into())
        );
    }

    #[test]
    fn a_signature_python_would_refuse_is_an_error() {
        for specs in [
            &["x=1", "y"][..],
            &["x", "x"],
            &["**kw", "x"],
            &["*a", "*b"],
            &["1x"],
            &["x=nope"],
            &["*args", "key=1"],
        ] {
            assert!(Signature::parse(specs).is_err(), "{specs:?}");
        }
    }

    #[test]
    fn defaults_read_as_python_writes_them() {
        let signature = Signature::parse(&[
            "a=None",
            "b=True",
            "c=False",
            "d=1.5",
            "e='text'",
            "f=[1, 2]",
            "g={\"k\": 1}",
            "h=\"json\"",
        ])
        .unwrap();
        let defaults: Vec<Value> = signature
            .named
            .iter()
            .map(|p| p.default.clone().unwrap())
            .collect();
        assert_eq!(
            defaults,
            [
                json!(null),
                json!(true),
                json!(false),
                json!(1.5),
                json!("text"),
                json!([1, 2]),
                json!({"k": 1}),
                json!("json")
            ]
        );
        assert_eq!(
            signature.display(),
            "a=None, b=True, c=False, d=1.5, e='text', f=[1, 2], g={'k': 1}, h='json'"
        );
    }
}
