//! A task's parameters as Python declares them, and binding a message's
//! `args`/`kwargs` to them as Python binds a call — with Python's own
//! `TypeError` texts when the call does not fit.
//!
//! ```python
//! def add(x, y, z=None): …          # ["x", "y", "z=None"]
//! def fail(*args): …                # ["*args"]
//! def sleeping(i, **_): …           # ["i", "**_"]
//! def redis_echo(message, redis_key='redis-echo'): …
//! def replace_with_chain(*args, link_msg=None): …  # ["*args", "link_msg=None"]
//! def retry_unpickleable(foo, bar, *, retry_kwargs): …  # [.., "*", "retry_kwargs"]
//! ```
//!
//! A default is written after `=` as Python writes it for the values JSON
//! has (`None`, `True`, `1.5`, `'text'`) or as JSON (`[1, 2]`, `{"a": 1}`).
//! What the body gets is one value per named parameter (a default filled
//! in), then the extra positional arguments as a list if there is a
//! `*args`, then one value per keyword-only parameter (those after `*args`
//! or a bare `*`), then the extra keyword arguments as an object if there
//! is a `**kwargs`: Python's own order.

use serde_json::{Map, Value};

/// One parameter of a task's signature.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Parameter {
    pub name: String,
    /// `None`: required.
    pub default: Option<Value>,
}

/// A task's signature: named parameters, then `*args` (or a bare `*`),
/// then keyword-only parameters, then `**kwargs`.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Signature {
    pub named: Vec<Parameter>,
    /// The name after `*`, if the task takes extra positional arguments.
    pub var_args: Option<String>,
    /// A `*args` or a bare `*` was seen: what follows is keyword-only.
    star: bool,
    /// The parameters after the star: given by keyword only.
    pub keyword_only: Vec<Parameter>,
    /// The name after `**`, if the task takes extra keyword arguments.
    pub var_kwargs: Option<String>,
}

/// One value the body gets, in order: see [`Signature::slots`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Slot<'a> {
    Named(&'a Parameter),
    VarArgs,
    KeywordOnly(&'a Parameter),
    VarKwargs,
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
                if signature.star {
                    return Err(format!("'{spec}': only one *args (or bare *) parameter"));
                }
                signature.star = true;
                if !name.is_empty() {
                    check_name(name, spec)?;
                    signature.var_args = Some(name.to_owned());
                }
                continue;
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
            if signature.parameter(name).is_some() || signature.var_args.as_deref() == Some(name) {
                return Err(format!("'{spec}': duplicate parameter '{name}'"));
            }
            let parameter = Parameter {
                name: name.to_owned(),
                default,
            };
            // Keyword-only parameters may have defaults in any order.
            if signature.star {
                signature.keyword_only.push(parameter);
                continue;
            }
            let after_default = signature.named.last().is_some_and(|p| p.default.is_some());
            if parameter.default.is_none() && after_default {
                return Err(format!(
                    "'{spec}': a parameter without a default follows one with a default"
                ));
            }
            signature.named.push(parameter);
        }
        if signature.star && signature.var_args.is_none() && signature.keyword_only.is_empty() {
            return Err("'*': named arguments must follow bare *".to_owned());
        }
        Ok(signature)
    }

    /// The named or keyword-only parameter called `name`.
    fn parameter(&self, name: &str) -> Option<&Parameter> {
        self.named
            .iter()
            .chain(&self.keyword_only)
            .find(|parameter| parameter.name == name)
    }

    /// What the body gets, in order.
    pub fn slots(&self) -> Vec<Slot<'_>> {
        let mut slots: Vec<Slot<'_>> = self.named.iter().map(Slot::Named).collect();
        if self.var_args.is_some() {
            slots.push(Slot::VarArgs);
        }
        slots.extend(self.keyword_only.iter().map(Slot::KeywordOnly));
        if self.var_kwargs.is_some() {
            slots.push(Slot::VarKwargs);
        }
        slots
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
            let keyword_only = self
                .keyword_only
                .iter()
                .filter(|parameter| kwargs.contains_key(&parameter.name))
                .count();
            return Err(too_many_positional(
                function,
                named,
                args.len(),
                keyword_only,
            ));
        }
        let mut bound: Vec<Option<Value>> = named
            .iter()
            .enumerate()
            .map(|(i, _)| args.get(i).cloned())
            .collect();
        let extra_args: Vec<Value> = args.iter().skip(named.len()).cloned().collect();
        let mut keyword_only: Vec<Option<Value>> = vec![None; self.keyword_only.len()];
        let mut extra_kwargs = Map::new();
        for (name, value) in kwargs {
            let only = self
                .keyword_only
                .iter()
                .position(|parameter| &parameter.name == name);
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
                None if only.is_some() => {
                    if let Some(slot) = only.and_then(|index| keyword_only.get_mut(index)) {
                        *slot = Some(value.clone());
                    }
                }
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
            return Err(missing_arguments(function, "positional", &missing));
        }
        let missing: Vec<&str> = self
            .keyword_only
            .iter()
            .zip(&keyword_only)
            .filter(|(parameter, value)| value.is_none() && parameter.default.is_none())
            .map(|(parameter, _)| parameter.name.as_str())
            .collect();
        if !missing.is_empty() {
            return Err(missing_arguments(function, "keyword-only", &missing));
        }
        let given_or_default = |(parameter, value): (&Parameter, Option<Value>)| {
            value
                .or_else(|| parameter.default.clone())
                .unwrap_or(Value::Null)
        };
        let mut values: Vec<Value> = named.iter().zip(bound).map(given_or_default).collect();
        if self.var_args.is_some() {
            values.push(Value::Array(extra_args));
        }
        values.extend(
            self.keyword_only
                .iter()
                .zip(keyword_only)
                .map(given_or_default),
        );
        if self.var_kwargs.is_some() {
            values.push(Value::Object(extra_kwargs));
        }
        Ok(values)
    }

    /// The parameters as Celery's `inspect registered` shows a signature.
    pub fn display(&self) -> String {
        let shown = |p: &Parameter| match &p.default {
            Some(default) => format!("{}={}", p.name, crate::protocol::pyrepr::repr(default)),
            None => p.name.clone(),
        };
        let mut parts: Vec<String> = self.named.iter().map(shown).collect();
        match &self.var_args {
            Some(name) => parts.push(format!("*{name}")),
            None if self.star => parts.push("*".to_owned()),
            None => {}
        }
        parts.extend(self.keyword_only.iter().map(shown));
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

/// Python 3's text for too many positional arguments (`keyword_only`: how
/// many keyword-only arguments the call gave too).
fn too_many_positional(
    function: &str,
    named: &[Parameter],
    given: usize,
    keyword_only: usize,
) -> String {
    let required = named.iter().filter(|p| p.default.is_none()).count();
    let takes = match (required, named.len()) {
        (low, high) if low == high => format!(
            "{high} positional argument{}",
            if high == 1 { "" } else { "s" }
        ),
        (low, high) => format!("from {low} to {high} positional arguments"),
    };
    let were = if given == 1 { "was" } else { "were" };
    if keyword_only > 0 {
        let plural = |count: usize| if count == 1 { "" } else { "s" };
        return format!(
            "{function}() takes {takes} but {given} positional argument{} (and {keyword_only} keyword-only argument{}) were given",
            plural(given),
            plural(keyword_only)
        );
    }
    format!("{function}() takes {takes} but {given} {were} given")
}

/// Python 3's text for missing arguments (`kind`: `positional` or
/// `keyword-only`): `'a'`, `'a' and 'b'`, `'a', 'b', and 'c'`.
fn missing_arguments(function: &str, kind: &str, missing: &[&str]) -> String {
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
        "{function}() missing {} required {kind} {plural}: {names}",
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
    fn keyword_only_parameters_come_after_star_args_by_name_only() {
        // def replace_with_chain(self, *args, link_msg=None)
        let replace = ["*args", "link_msg=None"];
        assert_eq!(
            bind(&replace, json!([1, 2]), json!({})),
            Ok(vec![json!([1, 2]), Value::Null])
        );
        assert_eq!(
            bind(&replace, json!([1]), json!({"link_msg": "hi"})),
            Ok(vec![json!([1]), json!("hi")])
        );
        // def retry_unpickleable(self, foo, bar, *, retry_kwargs)
        let bare = ["foo", "bar", "*", "retry_kwargs", "**rest"];
        assert_eq!(
            bind(&bare, json!([1, 2]), json!({"retry_kwargs": {}, "x": 3})),
            Ok(vec![json!(1), json!(2), json!({}), json!({"x": 3})])
        );
        assert_eq!(
            bind(&bare, json!([1, 2]), json!({})),
            Err("f() missing 1 required keyword-only argument: 'retry_kwargs'".into())
        );
        assert_eq!(
            bind(&bare, json!([1, 2, 3]), json!({"retry_kwargs": {}})),
            Err("f() takes 2 positional arguments but 3 positional arguments (and 1 keyword-only argument) were given".into())
        );
        assert_eq!(
            bind(&bare, json!([1, 2, 3]), json!({})),
            Err("f() takes 2 positional arguments but 3 were given".into())
        );
        let signature = Signature::parse(&bare).unwrap();
        assert_eq!(signature.display(), "foo, bar, *, retry_kwargs, **rest");
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
            &["x", "*"],
            &["*", "*args", "k"],
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
