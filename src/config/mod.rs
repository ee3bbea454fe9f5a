//! Configuration: load `salesbatch.toml` in two stages (serde with
//! `deny_unknown_fields`, then `validate`), reporting every problem at once
//! with the file, line and key path it concerns.

mod model;
mod spans;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

pub use model::*;
pub use spans::{display_path, Seg};

/// One configuration problem, located in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if self.key.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": `{}`: {}", self.key, self.message)
        }
    }
}

/// Every problem found in a config file; nothing runs when this is returned.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        writeln!(
            f,
            "invalid configuration ({n} problem{}):",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            writeln!(f, "  {p}")?;
        }
        Ok(())
    }
}

/// A validated configuration together with where it came from.
#[derive(Debug, Clone)]
pub struct Settings {
    pub config: Config,
    /// the config file itself
    pub path: PathBuf,
    /// the config file's folder: relative paths in the file are resolved here
    pub base_dir: PathBuf,
    pub tz: chrono_tz::Tz,
}

/// Today's date in `tz`: what as-of dates and retention count from.
pub fn today_in(tz: chrono_tz::Tz) -> chrono::NaiveDate {
    chrono::Utc::now().with_timezone(&tz).date_naive()
}

impl Settings {
    /// Today's date in the configured `timezone`.
    pub fn today(&self) -> chrono::NaiveDate {
        today_in(self.tz)
    }

    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    pub fn output_dir(&self) -> PathBuf {
        self.resolve(&self.config.output_dir)
    }

    pub fn templates_dir(&self) -> PathBuf {
        self.resolve(&self.config.templates_dir)
    }

    pub fn job(&self, name: &str) -> Option<&JobConfig> {
        self.config.jobs.iter().find(|j| j.name == name)
    }

    /// The warehouse URL, read from the environment when `url_env` is set.
    /// Relative SQLite paths are resolved against the config folder.
    pub fn warehouse_url(&self) -> Result<String, String> {
        let wh = &self.config.warehouse;
        let url = match (&wh.url_env, &wh.url) {
            (Some(var), _) => std::env::var(var).map_err(|_| {
                format!("environment variable `{var}` (warehouse.url_env) is not set")
            })?,
            (None, Some(url)) => url.clone(),
            (None, None) => "sqlite://data/warehouse.db".into(),
        };
        Ok(self.resolve_sqlite_url(&url))
    }

    pub fn resolve_sqlite_url(&self, url: &str) -> String {
        match url.strip_prefix("sqlite://") {
            Some(rest) if !rest.starts_with('/') && !rest.starts_with(":memory:") => {
                format!("sqlite://{}", self.base_dir.join(rest).display())
            }
            _ => url.to_string(),
        }
    }
}

/// Reads and validates a config file. I/O and parse failures are reported as
/// one problem each; otherwise every validation problem is returned at once.
pub fn load(path: &Path) -> Result<Settings, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        problems: vec![Problem {
            file: path.to_path_buf(),
            line: None,
            key: String::new(),
            message: format!("cannot read config file: {e}"),
        }],
    })?;
    load_str(path, &text)
}

pub fn load_str(path: &Path, text: &str) -> Result<Settings, ConfigError> {
    let mut parsed = validate::parse(path, text);
    let mut problems = std::mem::take(&mut parsed.problems);
    let Some(config) = parsed.config.take() else {
        problems.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
        return Err(ConfigError { problems });
    };
    let base_dir = path
        .parent()
        .map_or(Path::new("."), |p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .to_path_buf();
    let (tz, more) = validate::validate(path, text, &config);
    problems.extend(
        more.into_iter()
            .filter(|p| !parsed.follows_from_stand_in(p)),
    );
    if !problems.is_empty() {
        problems.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
        return Err(ConfigError { problems });
    }
    Ok(Settings {
        config,
        path: path.to_path_buf(),
        base_dir,
        tz: tz.unwrap_or(chrono_tz::Asia::Shanghai),
    })
}
