//! Application configs: one TOML file per application in `apps/configs/`, embedded in its
//! binary as the defaults, with the groups `run`, `training` and `model`. A user file given with
//! `--config` is merged over the defaults (so a partial file works, and a run's resolved
//! `config.toml` reproduces that run), then `--set group.key=value` overrides are applied.
//! Unknown keys and wrong types are errors that name the key.
//!
//! A group's keys may belong to several parts: the harness takes the [`RunHeader`] keys of
//! `[run]` (and an application may take a shared part, such as the image keys of applications
//! 2 and 3) before the application's own config reads the rest, so that each part is one
//! struct and every part still refuses unknown keys.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::de::{DeserializeOwned, Visitor};
use toml::{Table, Value};

use flowcore::ArchitectureConfig;
use flowcore::train::TrainingConfig;

use super::{AppInfo, RunHeader, TrainOptions};

/// Merge `over` into `base`, recursing into tables. A table whose `kind` `over` changes is
/// replaced, not merged: the old kind's keys (an affine transform's `scale`) are not the new
/// kind's.
pub fn merge(base: &mut Table, over: Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(Value::Table(b)), Value::Table(o)) if !changes_kind(b, &o) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

fn changes_kind(base: &Table, over: &Table) -> bool {
    matches!((base.get("kind"), over.get("kind")), (Some(a), Some(b)) if a != b)
}

/// Parse the value of a `--set`: any TOML value (`256`, `1e-3`, `true`, `[64, 64]`,
/// `"text"`), or else the bare text as a string (`--set run.dataset=moons`).
fn parse_value(text: &str) -> Value {
    match format!("v = {text}").parse::<Table>() {
        Ok(mut t) => t.remove("v").unwrap_or_else(|| Value::String(text.into())),
        Err(_) => Value::String(text.to_string()),
    }
}

/// Apply one `group.key=value` (any depth of dotted keys) to `table`.
pub fn apply_set(table: &mut Table, assignment: &str) -> Result<()> {
    let Some((path, value)) = assignment.split_once('=') else {
        bail!("--set `{assignment}`: expected KEY=VALUE, for example training.batch_size=256");
    };
    let keys: Vec<&str> = path.trim().split('.').collect();
    if keys.iter().any(|k| k.is_empty()) {
        bail!("--set `{assignment}`: `{path}` is not a dotted key like training.batch_size");
    }
    let value = parse_value(value.trim());
    let mut cursor = table;
    for (i, key) in keys[..keys.len() - 1].iter().enumerate() {
        let entry = cursor
            .entry(key.to_string())
            .or_insert_with(|| Value::Table(Table::new()));
        cursor = match entry {
            Value::Table(t) => t,
            _ => bail!(
                "--set `{assignment}`: `{}` is a value, not a group",
                keys[..=i].join(".")
            ),
        };
    }
    let last = keys[keys.len() - 1];
    if last == "kind" && keys.len() > 1 && cursor.get("kind").is_some_and(|k| *k != value) {
        // Another variant: the keys the table had belong to the old one.
        cursor.clear();
    }
    cursor.insert(last.to_string(), value);
    Ok(())
}

/// The config table: `defaults`, merged with `file` when given, then the `sets`. A `[model]`
/// of another kind than the default's is what the file and the sets give, alone: the default's
/// other model keys belong to its own kind (`--set model.kind=nsf` works without unsetting
/// them).
pub fn resolve_table(defaults: &str, file: Option<&Path>, sets: &[String]) -> Result<Table> {
    let mut table: Table = defaults
        .parse()
        .context("the embedded default config does not parse")?;
    let user: Option<Table> = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config {}", path.display()))?;
            Some(
                text.parse()
                    .with_context(|| format!("config {} is not valid TOML", path.display()))?,
            )
        }
        None => None,
    };
    let default_kind = model_kind(&table);
    if let Some(user) = &user {
        merge(&mut table, user.clone());
    }
    // A set that changes a table's kind clears that table, so it goes before the sets of keys.
    let sets: Vec<&String> = sets
        .iter()
        .filter(|s| is_kind_set(s))
        .chain(sets.iter().filter(|s| !is_kind_set(s)))
        .collect();
    for s in &sets {
        apply_set(&mut table, s)?;
    }
    if model_kind(&table) != default_kind {
        let mut own = Table::new();
        if let Some(model) = user.as_ref().and_then(|u| u.get("model")) {
            own.insert("model".into(), model.clone());
        }
        for s in &sets {
            let key = s.split_once('=').map_or(s.as_str(), |(k, _)| k).trim();
            if key == "model" || key.starts_with("model.") {
                apply_set(&mut own, s)?;
            }
        }
        if let Some(model) = own.remove("model") {
            table.insert("model".into(), model);
        }
    }
    Ok(table)
}

fn is_kind_set(assignment: &str) -> bool {
    assignment
        .split_once('=')
        .is_some_and(|(k, _)| k.trim() == "kind" || k.trim().ends_with(".kind"))
}

fn model_kind(table: &Table) -> Option<String> {
    table
        .get("model")?
        .get("kind")?
        .as_str()
        .map(str::to_string)
}

/// Deserialize a config table, the group `prefix` ("" for the whole config); errors name the
/// key (`config: key `training.batch_size`: invalid type ...`).
pub fn from_table<T: DeserializeOwned>(table: &Table, origin: &str, prefix: &str) -> Result<T> {
    let value = Value::Table(table.clone());
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let key = match (prefix.is_empty(), path == "." || path.is_empty()) {
            (true, true) => String::new(),
            (true, false) => path,
            (false, true) => prefix.to_string(),
            (false, false) => format!("{prefix}.{path}"),
        };
        if key.is_empty() {
            anyhow::anyhow!("{origin}: {inner}")
        } else {
            anyhow::anyhow!("{origin}: key `{key}`: {inner}")
        }
    })
}

/// The table of a run's options over `defaults` (the resumed run's `config.toml` or the
/// `--config` file, then the `--set`s), and a name of where it came from for messages.
pub fn resolve_options(defaults: &str, opts: &TrainOptions) -> Result<(Table, String)> {
    let file = match &opts.resume {
        Some(dir) => Some(dir.join("config.toml")),
        None => opts.config.clone(),
    };
    let table = resolve_table(defaults, file.as_deref(), &opts.sets)?;
    let origin = file.as_ref().map_or_else(
        || "config".to_string(),
        |f| format!("config {}", f.display()),
    );
    Ok((table, origin))
}

/// What the user gave, without the defaults: the `--config` file (or the resumed run's
/// `config.toml`) and the `--set`s. An application whose group has variants with keys of their
/// own (as `[model]` has kinds) drops the defaults' keys of another variant than the user's.
pub fn user_table(opts: &TrainOptions) -> Result<Table> {
    resolve_options("", opts).map(|(table, _)| table)
}

/// A run's resolved config: the application, the whole table (saved beside the run as
/// `config.toml`), where it came from, the parts every application has ([`RunHeader`],
/// `[training]`, `[model]`), and the keys no part has taken yet. An application takes its own
/// parts with [`ResolvedConfig::take`] and [`ResolvedConfig::group`], then
/// [`ResolvedConfig::finish`] refuses whatever is left.
#[derive(Clone, Debug)]
pub struct ResolvedConfig {
    /// The application it configures.
    pub app: &'static AppInfo,
    /// The whole resolved table.
    pub table: Table,
    /// Where it came from, for messages (`config`, or `config FILE`).
    pub origin: String,
    /// The `[run]` keys every application has.
    pub header: RunHeader,
    /// The `[training]` group.
    pub training: TrainingConfig,
    /// The `[model]` group; the sizes it leaves to the data are filled in by the application.
    pub model: ArchitectureConfig,
    rest: Table,
    groups: Vec<String>,
}

impl ResolvedConfig {
    /// The config of `opts` for `app`, with the parts every application has taken; first of
    /// all, a check that `app` can run as `opts` asks.
    pub fn new(app: &'static AppInfo, opts: &TrainOptions) -> Result<Self> {
        opts.check_for(app)?;
        if let Some(dir) = &opts.resume {
            // Before its config is read: another application's would fail on keys, obscurely.
            super::folder::check_resumable(dir, app)?;
        }
        let (table, origin) = resolve_options(app.default_config, opts)?;
        let mut rest = table.clone();
        let header = take(&mut rest, "run", &origin)?;
        let training: TrainingConfig = take_group(&mut rest, "training", &origin)?;
        // Checked here, before any folder or tracking run exists.
        training
            .validate()
            .map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
        let model = take_group(&mut rest, "model", &origin)?;
        Ok(Self {
            app,
            table,
            origin,
            header,
            training,
            model,
            rest,
            groups: ["run", "training", "model"].map(String::from).to_vec(),
        })
    }

    /// Take the keys of the struct `T` out of the group `group` and deserialize them.
    pub fn take<T: DeserializeOwned>(&mut self, group: &str) -> Result<T> {
        self.groups.push(group.to_string());
        take(&mut self.rest, group, &self.origin)
    }

    /// Take what is left of the group `group` (absent: empty) as `T`; unknown keys are errors.
    pub fn group<T: DeserializeOwned>(&mut self, group: &str) -> Result<T> {
        self.groups.push(group.to_string());
        take_group(&mut self.rest, group, &self.origin)
    }

    /// Whether the user's config or `--set`s gave `group.key` (the defaults included).
    pub fn gives(&self, group: &str, key: &str) -> bool {
        self.table.get(group).and_then(|g| g.get(key)).is_some()
    }

    /// Refuse the groups no part took (a misspelt group, say), naming them.
    pub fn finish(&self) -> Result<()> {
        let left: Vec<&String> = self
            .rest
            .iter()
            .filter(|(_, v)| !matches!(v, Value::Table(t) if t.is_empty()))
            .map(|(k, _)| k)
            .collect();
        if let Some(key) = left.first() {
            bail!(
                "{}: key `{key}`: unknown group, expected one of {}",
                self.origin,
                self.groups
                    .iter()
                    .map(|g| format!("`{g}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        Ok(())
    }
}

/// Remove the group `group` from `table` and deserialize it (absent: an empty group).
fn take_group<T: DeserializeOwned>(table: &mut Table, group: &str, origin: &str) -> Result<T> {
    let part = match table.remove(group) {
        Some(Value::Table(t)) => t,
        Some(other) => bail!("{origin}: `{group}` must be a group of keys, got {other}"),
        None => Table::new(),
    };
    from_table(&part, origin, group)
}

/// Remove the keys of `T` from the group `group` of `table` and deserialize them; errors name
/// the key as `group.key`.
pub fn take<T: DeserializeOwned>(table: &mut Table, group: &str, origin: &str) -> Result<T> {
    let mut part = Table::new();
    if let Some(Value::Table(g)) = table.get_mut(group) {
        for name in field_names::<T>() {
            if let Some(v) = g.remove(*name) {
                part.insert(name.to_string(), v);
            }
        }
    }
    from_table(&part, origin, group)
}

/// The field names of a struct that derives `Deserialize`, as serde gives them to a
/// deserializer (aliases not included).
pub fn field_names<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Fields(Option<&'static [&'static str]>);
    impl<'de> serde::Deserializer<'de> for &mut Fields {
        type Error = serde::de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
            Err(serde::de::Error::custom("not a struct"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            self.0 = Some(fields);
            Err(serde::de::Error::custom("fields read"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }
    let mut fields = Fields(None);
    let _ = T::deserialize(&mut fields);
    fields.0.unwrap_or(&[])
}

/// Turn a config table into flat `group.key` = value pairs, for tracking params.
pub fn flatten(table: &Table) -> Vec<(String, String)> {
    fn walk(prefix: &str, t: &Table, out: &mut Vec<(String, String)>) {
        for (k, v) in t {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                Value::Table(inner) => walk(&key, inner, out),
                Value::String(s) => out.push((key, s.clone())),
                other => out.push((key, other.to_string())),
            }
        }
    }
    let mut out = Vec::new();
    walk("", table, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_parse_toml_values_and_fall_back_to_strings() {
        let mut t: Table = "[training]\nbatch_size = 128\n".parse().unwrap();
        apply_set(&mut t, "training.batch_size=256").unwrap();
        apply_set(&mut t, "model.hidden_units=[64, 64]").unwrap();
        apply_set(&mut t, "run.dataset=moons:0.05").unwrap();
        assert_eq!(t["training"]["batch_size"].as_integer(), Some(256));
        assert_eq!(t["model"]["hidden_units"].as_array().unwrap().len(), 2);
        assert_eq!(t["run"]["dataset"].as_str(), Some("moons:0.05"));
        let err = apply_set(&mut t, "training.batch_size.x=1").unwrap_err();
        assert!(err.to_string().contains("training.batch_size"), "{err}");
        assert!(apply_set(&mut t, "nokey").is_err());
    }

    #[test]
    fn a_part_takes_its_keys_and_the_rest_refuses_unknown_ones() {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Part {
            a: i64,
        }
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Rest {
            run: RestRun,
        }
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct RestRun {
            b: i64,
        }
        assert_eq!(field_names::<Part>(), ["a"]);
        let mut t: Table = "[run]\na = 1\nb = 2\n".parse().unwrap();
        let part: Part = take(&mut t, "run", "config").unwrap();
        assert_eq!(part.a, 1);
        let rest: Rest = from_table(&t, "config", "").unwrap();
        assert_eq!(rest.run.b, 2);
        let mut t: Table = "[run]\na = \"x\"\nc = 3\n".parse().unwrap();
        let e = format!("{:#}", take::<Part>(&mut t, "run", "config").err().unwrap());
        assert!(e.contains("key `run.a`"), "{e}");
        let e = format!("{:#}", from_table::<Rest>(&t, "config", "").err().unwrap());
        assert!(e.contains("unknown field `c`"), "{e}");
    }

    #[test]
    fn a_model_of_another_kind_drops_the_default_model_keys() {
        let defaults = "[model]\nkind = \"real_nvp_dense\"\nactnorm = true\nnum_layers = 12\n";
        let sets: Vec<String> = ["model.num_layers=4", "model.kind=nsf"]
            .map(String::from)
            .to_vec();
        let t = resolve_table(defaults, None, &sets).unwrap();
        let model = t["model"].as_table().unwrap();
        assert_eq!(model.get("kind").and_then(|v| v.as_str()), Some("nsf"));
        assert_eq!(
            model.get("num_layers").and_then(|v| v.as_integer()),
            Some(4)
        );
        assert!(model.get("actnorm").is_none(), "{model:?}");
        // The same kind keeps the defaults.
        let t = resolve_table(defaults, None, &["model.num_layers=4".into()]).unwrap();
        assert_eq!(t["model"]["actnorm"].as_bool(), Some(true));
    }

    #[test]
    fn a_nested_table_of_another_kind_replaces_the_defaults() {
        let defaults = "[model]\nkind = \"lattice\"\ncouplings = 8\n\
                        [model.transform]\nkind = \"affine\"\nscale = { kind = \"tanh\" }\n";
        let dir = std::env::temp_dir().join(format!("flowmodels-kind-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("spline.toml");
        std::fs::write(
            &file,
            "[model.transform]\nkind = \"rational_quadratic\"\nbins = 6\n",
        )
        .unwrap();
        let t = resolve_table(defaults, Some(&file), &[]).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let spline = "kind = \"rational_quadratic\"\nbins = 6\n"
            .parse::<Table>()
            .unwrap();
        assert_eq!(t["model"]["transform"].as_table(), Some(&spline));
        assert_eq!(t["model"]["couplings"].as_integer(), Some(8));
        // By sets, in either order: the kind goes first and clears the old variant's keys.
        for sets in [
            [
                "model.transform.bins=6",
                "model.transform.kind=rational_quadratic",
            ],
            [
                "model.transform.kind=rational_quadratic",
                "model.transform.bins=6",
            ],
        ] {
            let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
            let t = resolve_table(defaults, None, &sets).unwrap();
            assert_eq!(
                t["model"]["transform"].as_table(),
                Some(&spline),
                "{sets:?}"
            );
        }
        // The same kind keeps the defaults' keys.
        let sets = vec!["model.transform.kind=affine".to_string()];
        let t = resolve_table(defaults, None, &sets).unwrap();
        assert!(t["model"]["transform"].get("scale").is_some());
    }

    #[test]
    fn merge_keeps_defaults_not_overridden() {
        let mut base: Table = "[a]\nx = 1\ny = 2\n".parse().unwrap();
        merge(&mut base, "[a]\ny = 3\n".parse().unwrap());
        assert_eq!(base["a"]["x"].as_integer(), Some(1));
        assert_eq!(base["a"]["y"].as_integer(), Some(3));
    }
}
