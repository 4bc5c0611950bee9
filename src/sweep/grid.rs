//! The grid a sweep runs: base config, `--set` overrides, and the axes (`--alpha`, `--seeds`,
//! `--grid KEY=V1,V2`) expanded into one config per run, each checked like any config.

use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};
use toml::Value;

use crate::config::Config;

/// One axis of the grid: a dotted config key and its values (TOML values).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Axis {
    pub key: String,
    pub values: Vec<serde_json::Value>,
}

/// One point of the grid: its label (also its directory name) and its axis values.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub name: String,
    pub values: Vec<(String, serde_json::Value)>,
    pub config: Config,
}

/// `KEY=V1,V2,...` as an axis; each value parsed as TOML (`0.1`, `true`, `"dpo"`; a bare
/// word is a string).
pub fn parse_axis(spec: &str) -> Result<Axis> {
    let (key, values) = spec
        .split_once('=')
        .with_context(|| format!("`{spec}`: expected KEY=V1,V2,..."))?;
    let values = values
        .split(',')
        .map(|v| to_json(parse_value(v.trim())))
        .collect::<Result<Vec<_>>>()?;
    ensure!(!values.is_empty(), "`{spec}`: no values");
    Ok(Axis {
        key: key.trim().to_string(),
        values,
    })
}

/// A TOML value from the command line; words that are not TOML are strings.
pub fn parse_value(v: &str) -> Value {
    toml::from_str::<toml::Table>(&format!("v = {v}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| Value::String(v.to_string()))
}

fn to_json(v: Value) -> Result<serde_json::Value> {
    serde_json::to_value(&v).context("a grid value")
}

/// Sets dotted `key` in `table` to `value`; the key's table must exist (no typos made into
/// new sections: the config check then names an unknown key).
pub fn set_key(table: &mut toml::Table, key: &str, value: Value) -> Result<()> {
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().filter(|k| !k.is_empty());
    let Some(last) = last else {
        bail!("`{key}` is not a config key (section.key)");
    };
    let mut t = table;
    for p in parts {
        t = t
            .entry(p)
            .or_insert_with(|| Value::Table(Default::default()))
            .as_table_mut()
            .with_context(|| format!("`{key}`: `{p}` is not a section"))?;
    }
    t.insert(last.to_string(), value);
    Ok(())
}

/// The value at dotted `key`, if there is one.
fn lookup<'a>(table: &'a toml::Table, key: &str) -> Option<&'a Value> {
    let (head, rest) = key.split_once('.')?;
    match table.get(head)? {
        Value::Table(t) => t.get(rest).or_else(|| lookup(t, rest)),
        _ => None,
    }
}

/// Every point of `axes` over `base` (with `sets` applied), last axis fastest. `out` is where
/// the point's run directories go.
pub fn expand(base: &toml::Table, axes: &[Axis], out: &std::path::Path) -> Result<Vec<Point>> {
    let mut points = vec![vec![]];
    for axis in axes {
        points = points
            .into_iter()
            .flat_map(|p: Vec<(String, serde_json::Value)>| {
                axis.values.iter().map(move |v| {
                    let mut p = p.clone();
                    p.push((axis.key.clone(), v.clone()));
                    p
                })
            })
            .collect();
    }
    points
        .into_iter()
        .map(|values| point(base, values, axes, out))
        .collect()
}

fn point(
    base: &toml::Table,
    values: Vec<(String, serde_json::Value)>,
    axes: &[Axis],
    out: &std::path::Path,
) -> Result<Point> {
    let name = label(&values, axes);
    let mut table = base.clone();
    for (key, v) in &values {
        let v: Value = serde_json::from_value(v.clone()).context("a grid value")?;
        let v = match (v, lookup(base, key)) {
            // `0` where the config holds a float (alpha = 0): the float.
            (Value::Integer(i), Some(Value::Float(_))) => Value::Float(i as f64),
            (v, _) => v,
        };
        set_key(&mut table, key, v)?;
    }
    set_key(&mut table, "run.name", Value::String("run".into()))?;
    let dir = out.join("runs").join(&name);
    set_key(
        &mut table,
        "run.out_dir",
        Value::String(dir.display().to_string()),
    )?;
    let text = toml::to_string(&table).context("writing a grid point's config")?;
    let config = Config::from_toml(&text, &format!("(grid point {name})"))?;
    Ok(Point {
        name,
        values,
        config,
    })
}

/// `alpha=0.001,seed=3`: each axis by its last key segment (the full key when two share it).
fn label(values: &[(String, serde_json::Value)], axes: &[Axis]) -> String {
    let short = |key: &str| -> String {
        let tail = key.rsplit('.').next().unwrap_or(key);
        let shared = axes
            .iter()
            .filter(|a| a.key.rsplit('.').next() == Some(tail))
            .count();
        if shared > 1 { key.into() } else { tail.into() }
    };
    values
        .iter()
        .map(|(k, v)| format!("{}={}", short(k), display(v).replace(['/', ' '], "_")))
        .collect::<Vec<_>>()
        .join(",")
}

/// A grid value as a person writes it: `0` and `0.0001` for floats, strings unquoted.
pub fn display(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) if n.is_f64() => n.as_f64().unwrap_or_default().to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> toml::Table {
        toml::from_str(crate::config::DEFAULT_TOML).unwrap()
    }

    #[test]
    fn axes_expand_in_order_with_labels() {
        let axes = [
            parse_axis("train.alpha=0,1e-3").unwrap(),
            parse_axis("run.seed=0,1,2").unwrap(),
        ];
        let points = expand(&base(), &axes, std::path::Path::new("/s")).unwrap();
        let names: Vec<&str> = points.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "alpha=0,seed=0",
                "alpha=0,seed=1",
                "alpha=0,seed=2",
                "alpha=0.001,seed=0",
                "alpha=0.001,seed=1",
                "alpha=0.001,seed=2"
            ]
        );
        assert_eq!(points[4].config.train.alpha, 1e-3);
        assert_eq!(points[4].config.run.seed, 1);
        assert_eq!(
            points[4].config.run.out_dir,
            std::path::Path::new("/s/runs/alpha=0.001,seed=1")
        );
    }

    #[test]
    fn bad_keys_and_values_are_named() {
        let err = |spec: &str| {
            let axes = [parse_axis(spec).unwrap()];
            format!(
                "{:#}",
                expand(&base(), &axes, std::path::Path::new("/s")).unwrap_err()
            )
        };
        assert!(err("train.alhpa=1").contains("alhpa"));
        assert!(err("train.beta=big").contains("beta"));
        assert!(err("train.objective=ppo").contains("objective"));
        assert!(parse_axis("train.alpha").is_err());
        assert_eq!(parse_value("dpo"), Value::String("dpo".into()));
        assert_eq!(parse_value("0.5"), Value::Float(0.5));
        assert_eq!(parse_value("false"), Value::Boolean(false));
    }
}
