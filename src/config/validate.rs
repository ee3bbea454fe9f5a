//! Stage two of config loading: the rules that serde cannot express (weights
//! that sum to 1, ordered tiers, valid bands, cron syntax, unique names, keys
//! that fit their source's kind). Every problem is collected, none short-cuts.

use std::collections::HashSet;
use std::path::Path;

use super::model::{Config, Dataset, RankBands, SourceConfig, SourceKind, ValueBands};
use super::spans::{display_path, line_of_offset, Seg, SpanIndex};
use super::Problem;

/// Deserializes `text`. A problem serde finds at a key does not stop the
/// parse: it is reported, the key is cut out of a scratch copy of the text,
/// and parsing resumes, so that one run of `check` lists every unknown key
/// and refused value (`locale = "fr"`, `port = "587"`) together with the
/// validation problems. A refused value's key is returned among the keys
/// `blanked`: a value of the wanted type stood in for it, or the entry was
/// cut (then a required one stops the parse: its `missing field` is already
/// reported as the refused value), so what stage two says of it is not the
/// user's problem ([`Parsed::follows_from_stand_in`]).
pub fn parse(path: &Path, text: &str) -> Parsed {
    let mut parsed = Parsed::default();
    let mut scratch = text.to_string();
    for _ in 0..100 {
        let err = match toml::from_str::<Config>(&scratch) {
            Ok(config) => {
                parsed.config = Some(config);
                return parsed;
            }
            Err(err) => err,
        };
        let index = SpanIndex::new(&scratch);
        let span = err.span();
        let mut key_path = span
            .as_ref()
            .map(|s| index.path_at(s.start))
            .unwrap_or_default();
        let message = err.message().trim().to_string();
        if let Some(field) = missing_field(&message) {
            if parsed
                .blanked
                .iter()
                .any(|b| b.rsplit('.').next() == Some(field))
            {
                return parsed;
            }
        }
        parsed.problems.push(Problem {
            file: path.to_path_buf(),
            line: span.as_ref().map(|s| line_of_offset(&scratch, s.start)),
            key: display_path(&key_path),
            message: message.clone(),
        });
        let refused_value = !message.starts_with("unknown field");
        // a refused array element stands for its whole array
        while matches!(key_path.last(), Some(Seg::Index(_))) {
            key_path.pop();
        }
        // the value of the type serde wanted stands in for a refused one, so
        // that a required key does not stop the parse
        if let (true, Some(span), Some(stand_in)) = (refused_value, &span, stand_in(&message)) {
            if !key_path.is_empty() && !scratch[span.clone()].contains(['\n', '=']) {
                parsed.blanked.push(display_path(&key_path));
                scratch.replace_range(span.clone(), &stand_in);
                continue;
            }
        }
        let Some((start, end)) = index.entry_range(&key_path) else {
            return parsed;
        };
        if refused_value {
            parsed.blanked.push(display_path(&key_path));
        }
        blank(&mut scratch, start, end);
    }
    parsed
}

/// A TOML value of the kind serde's message says it expected (its first
/// variant for an enum), or `None` when the message names no such kind.
fn stand_in(message: &str) -> Option<String> {
    let expected = message.rsplit_once("expected ")?.1.trim();
    if let Some(rest) = expected
        .strip_prefix("one of `")
        .or_else(|| expected.strip_prefix('`'))
    {
        let variant = rest.split('`').next()?;
        return Some(format!("{variant:?}"));
    }
    let stand_in = match expected {
        "f32" | "f64" | "a float" => "0.0",
        "u8" | "u16" | "u32" | "u64" | "usize" | "i8" | "i16" | "i32" | "i64" | "isize"
        | "an integer" => "0",
        "a boolean" => "false",
        "a string" => "\"\"",
        "a sequence" | "an array" => "[]",
        _ => return None,
    };
    Some(stand_in.to_string())
}

/// What [`parse`] made of a config file.
#[derive(Default)]
pub struct Parsed {
    /// `None` when a problem left nothing to deserialize.
    pub config: Option<Config>,
    pub problems: Vec<Problem>,
    /// Keys whose refused values were cut out (defaults stand in for them).
    pub blanked: Vec<String>,
}

impl Parsed {
    /// Whether stage two says `problem` only because a stand-in took a
    /// refused value's place: of that key, of the table it sits in (weights
    /// that no longer sum to 1) or, for a source's `dataset` and `kind`,
    /// which the rules of its other keys depend on, of the whole source.
    pub fn follows_from_stand_in(&self, problem: &Problem) -> bool {
        let within = |key: &str, of: &str| {
            key == of || key.starts_with(&format!("{of}.")) || key.starts_with(&format!("{of}["))
        };
        self.blanked.iter().any(|b| {
            within(&problem.key, b)
                || b.rsplit_once('.').is_some_and(|(table, key)| {
                    problem.key == table
                        || (matches!(key, "dataset" | "kind") && within(&problem.key, table))
                })
        })
    }
}

/// The field of serde's "missing field `x`".
fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.split('`').next()
}

/// Replaces the whole lines covering `start..end` with spaces, keeping line
/// numbers of everything else intact. A table header takes its body with it.
fn blank(text: &mut String, start: usize, end: usize) {
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let mut line_end = text[end..].find('\n').map_or(text.len(), |i| end + i);
    if text[line_start..].trim_start().starts_with('[') {
        // skip to the next header
        let mut pos = line_end;
        while pos < text.len() {
            let next = text[pos + 1..]
                .find('\n')
                .map_or(text.len(), |i| pos + 1 + i);
            if text[pos + 1..next].trim_start().starts_with('[') {
                break;
            }
            pos = next;
        }
        line_end = pos;
    }
    let replaced: String = text[line_start..line_end]
        .chars()
        .map(|c| if c == '\n' { '\n' } else { ' ' })
        .collect();
    text.replace_range(line_start..line_end, &replaced);
}

struct Checker<'a> {
    file: &'a Path,
    index: SpanIndex<'a>,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    fn err(&mut self, path: &[Seg], message: impl Into<String>) {
        self.problems.push(Problem {
            file: self.file.to_path_buf(),
            line: self.index.line(path),
            key: display_path(path),
            message: message.into(),
        });
    }
}

fn k(parts: &[&str]) -> Vec<Seg> {
    parts.iter().map(|p| Seg::key(p)).collect()
}

pub fn validate(file: &Path, text: &str, config: &Config) -> (Option<chrono_tz::Tz>, Vec<Problem>) {
    let mut c = Checker {
        file,
        index: SpanIndex::new(text),
        problems: Vec::new(),
    };

    let tz = config.timezone.parse::<chrono_tz::Tz>().ok();
    if tz.is_none() {
        c.err(
            &k(&["timezone"]),
            format!("`{}` is not an IANA time zone name", config.timezone),
        );
    }

    check_warehouse(&mut c, config);
    check_sources(&mut c, config);

    if !(0.0..=1.0).contains(&config.ingest.max_reject_ratio) {
        c.err(
            &k(&["ingest", "max_reject_ratio"]),
            "must be between 0 and 1",
        );
    }
    if config.ingest.max_file_mb == 0 {
        c.err(&k(&["ingest", "max_file_mb"]), "must be at least 1");
    }
    if config.ingest.sql_timeout_secs == 0 {
        c.err(&k(&["ingest", "sql_timeout_secs"]), "must be at least 1");
    }

    check_tiering(&mut c, config);

    if config.visits.counted_types.is_empty() {
        c.err(
            &k(&["visits", "counted_types"]),
            "must list at least one visit type",
        );
    }
    if config.visits.max_per_customer_per_day == 0 {
        c.err(
            &k(&["visits", "max_per_customer_per_day"]),
            "must be at least 1",
        );
    }
    let w = &config.scorecard.weights;
    check_weights(
        &mut c,
        &["scorecard", "weights"],
        &[
            ("sales", w.sales),
            ("new_customers", w.new_customers),
            ("visits", w.visits),
            ("satisfaction", w.satisfaction),
        ],
    );

    check_jobs(&mut c, config, tz);
    check_recipients(&mut c, config);
    (tz, c.problems)
}

fn check_warehouse(c: &mut Checker<'_>, config: &Config) {
    let wh = &config.warehouse;
    if wh.keep_snapshots_days == Some(0) {
        c.err(
            &k(&["warehouse", "keep_snapshots_days"]),
            "must be at least 1 (leave it out to keep every snapshot)",
        );
    }
    if wh.url.is_some() && wh.url_env.is_some() {
        c.err(
            &k(&["warehouse"]),
            "set either `url` or `url_env`, not both",
        );
    }
    if let Some(url) = &wh.url {
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            c.err(
                &k(&["warehouse", "url"]),
                "must start with `sqlite:` or `postgres://`",
            );
        }
        if url_has_password(url) {
            c.err(&k(&["warehouse", "url"]), "contains a password: put the URL in an environment variable and name it with `url_env`");
        }
    }
}

fn url_has_password(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    authority
        .split_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

fn check_sources(c: &mut Checker<'_>, config: &Config) {
    let mut names = HashSet::new();
    for (i, s) in config.sources.iter().enumerate() {
        let at = |key: &str| vec![Seg::key("sources"), Seg::Index(i), Seg::key(key)];
        if !names.insert(s.name.as_str()) {
            c.err(&at("name"), format!("duplicate source name `{}`", s.name));
        }
        if s.name.trim().is_empty() {
            c.err(&at("name"), "must not be empty");
        }
        for (key, fits) in kind_fit(s) {
            if !fits {
                c.err(
                    &at(key),
                    format!("does not apply to {} source", a_kind(s.kind)),
                );
            }
        }
        match s.kind {
            SourceKind::Excel | SourceKind::Csv => {
                if s.path.as_deref().is_none_or(|p| p.trim().is_empty()) {
                    c.err(
                        &at("path"),
                        format!("{} source needs `path`", a_kind(s.kind)),
                    );
                } else if let Some(p) = &s.path {
                    if let Err(e) = glob::Pattern::new(p) {
                        c.err(&at("path"), format!("invalid glob: {e}"));
                    }
                }
            }
            SourceKind::Sql => {
                if s.url_env.is_none() {
                    c.err(
                        &at("url_env"),
                        "a `sql` source needs `url_env` (the URL is read from the environment)",
                    );
                }
                if s.query.as_deref().is_none_or(|q| q.trim().is_empty()) {
                    c.err(&at("query"), "a `sql` source needs `query`");
                }
            }
        }
        if s.header_row == Some(0) {
            c.err(&at("header_row"), "is 1-based: must be at least 1");
        }
        if let Some(fmt) = &s.date_format {
            if chrono::format::StrftimeItems::new(fmt)
                .any(|i| matches!(i, chrono::format::Item::Error))
            {
                c.err(
                    &at("date_format"),
                    format!("`{fmt}` is not a valid strftime format"),
                );
            }
        }
        let fields = s.dataset.fields();
        for field in s.columns.keys() {
            if !fields.iter().any(|(f, _)| f == field) {
                c.err(
                    &[
                        Seg::key("sources"),
                        Seg::Index(i),
                        Seg::key("columns"),
                        Seg::key(field),
                    ],
                    format!(
                        "`{field}` is not a field of `{}`; expected one of {}",
                        s.dataset.name(),
                        crate::text::backticked(fields.iter().map(|(f, _)| f))
                    ),
                );
            }
        }
        for (field, required) in fields {
            if *required && !s.columns.contains_key(*field) {
                c.err(
                    &at("columns"),
                    format!(
                        "required field `{field}` of `{}` is not mapped",
                        s.dataset.name()
                    ),
                );
            }
        }
    }
}

fn kind_name(kind: SourceKind) -> &'static str {
    match kind {
        SourceKind::Excel => "excel",
        SourceKind::Csv => "csv",
        SourceKind::Sql => "sql",
    }
}

/// "an `excel`", "a `csv`": the kind with its article.
fn a_kind(kind: SourceKind) -> String {
    let name = kind_name(kind);
    let article = if name.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} `{name}`")
}

fn kind_fit(s: &SourceConfig) -> Vec<(&'static str, bool)> {
    let file = matches!(s.kind, SourceKind::Excel | SourceKind::Csv);
    let sql = s.kind == SourceKind::Sql;
    let mut out = Vec::new();
    let mut check = |key, present: bool, fits: bool| {
        if present {
            out.push((key, fits));
        }
    };
    check("path", s.path.is_some(), file);
    check("sheet", s.sheet.is_some(), s.kind == SourceKind::Excel);
    check("header_row", s.header_row.is_some(), file);
    check("encoding", s.encoding.is_some(), s.kind == SourceKind::Csv);
    check(
        "delimiter",
        s.delimiter.is_some(),
        s.kind == SourceKind::Csv,
    );
    check("url_env", s.url_env.is_some(), sql);
    check(
        "lookback_days",
        s.lookback_days.is_some(),
        sql && s.dataset == Dataset::Sales,
    );
    check("query", s.query.is_some(), sql);
    out
}

fn check_weights(c: &mut Checker<'_>, path: &[&str], weights: &[(&str, f64)]) {
    let mut sum = 0.0;
    for (name, w) in weights {
        if !(0.0..=1.0).contains(w) {
            let mut p = path.to_vec();
            p.push(name);
            c.err(&k(&p), format!("weight {w} must be between 0 and 1"));
        }
        sum += w;
    }
    if (sum - 1.0).abs() > 1e-6 {
        c.err(
            &k(path),
            format!(
                "weights sum to {}, they must sum to 1.0",
                (sum * 1e9).round() / 1e9
            ),
        );
    }
}

fn check_tiering(c: &mut Checker<'_>, config: &Config) {
    let t = &config.tiering;
    if t.window_months < 2 || t.window_months > 60 {
        c.err(
            &k(&["tiering", "window_months"]),
            "must be between 2 and 60",
        );
    }
    let w = &t.weights;
    check_weights(
        c,
        &["tiering", "weights"],
        &[
            ("sales", w.sales),
            ("growth", w.growth),
            ("coverage", w.coverage),
            ("loyalty", w.loyalty),
            ("prospect", w.prospect),
        ],
    );
    check_rank_bands(c, "sales", &t.sales);
    check_rank_bands(c, "coverage", &t.coverage);
    check_value_bands(c, &t.growth);
    if !(0.0..=100.0).contains(&t.prospect.blank) {
        c.err(
            &k(&["tiering", "prospect", "blank"]),
            "points must be between 0 and 100",
        );
    }
    if t.tiers.is_empty() {
        c.err(&k(&["tiering", "tiers"]), "at least one tier is needed");
    }
    let mut names = HashSet::new();
    for (i, tier) in t.tiers.iter().enumerate() {
        let at = |key: &str| {
            vec![
                Seg::key("tiering"),
                Seg::key("tiers"),
                Seg::Index(i),
                Seg::key(key),
            ]
        };
        if !names.insert(tier.name.as_str()) {
            c.err(&at("name"), format!("duplicate tier name `{}`", tier.name));
        }
        if i > 0 && tier.min_score >= t.tiers[i - 1].min_score {
            c.err(
                &at("min_score"),
                format!(
                    "tiers must be ordered high to low: `{}` has min_score {} after `{}` with {}",
                    tier.name,
                    tier.min_score,
                    t.tiers[i - 1].name,
                    t.tiers[i - 1].min_score
                ),
            );
        }
        if !(0.0..=100.0).contains(&tier.min_score) {
            c.err(&at("min_score"), "must be between 0 and 100");
        }
    }
}

fn check_rank_bands(c: &mut Checker<'_>, name: &str, bands: &RankBands) {
    let base = ["tiering", name, "bands"];
    if bands.bands.is_empty() {
        c.err(&k(&base), "at least one band is needed");
        return;
    }
    let mut prev = 0.0;
    for (i, b) in bands.bands.iter().enumerate() {
        let at = |key: &str| {
            let mut p = k(&base);
            p.extend([Seg::Index(i), Seg::key(key)]);
            p
        };
        if !(b.top > prev && b.top <= 1.0) {
            c.err(
                &at("top"),
                format!(
                    "`top` values must increase strictly within (0, 1]; got {} after {prev}",
                    b.top
                ),
            );
        }
        if !(0.0..=100.0).contains(&b.points) {
            c.err(&at("points"), "points must be between 0 and 100");
        }
        prev = b.top;
    }
    if (prev - 1.0).abs() > 1e-12 {
        c.err(
            &k(&base),
            format!("the last band's `top` must be 1.0, not {prev}"),
        );
    }
}

fn check_value_bands(c: &mut Checker<'_>, bands: &ValueBands) {
    let base = ["tiering", "growth", "bands"];
    if bands.bands.is_empty() {
        c.err(&k(&base), "at least one band is needed");
    }
    for (i, b) in bands.bands.iter().enumerate() {
        let at = |key: &str| {
            let mut p = k(&base);
            p.extend([Seg::Index(i), Seg::key(key)]);
            p
        };
        if i > 0 && b.min >= bands.bands[i - 1].min {
            c.err(
                &at("min"),
                format!(
                    "`min` values must decrease strictly; got {} after {}",
                    b.min,
                    bands.bands[i - 1].min
                ),
            );
        }
        if !(0.0..=100.0).contains(&b.points) {
            c.err(&at("points"), "points must be between 0 and 100");
        }
    }
}

fn check_jobs(c: &mut Checker<'_>, config: &Config, tz: Option<chrono_tz::Tz>) {
    let mut names = HashSet::new();
    for (i, job) in config.jobs.iter().enumerate() {
        let at = |key: &str| vec![Seg::key("jobs"), Seg::Index(i), Seg::key(key)];
        if !names.insert(job.name.as_str()) {
            c.err(&at("name"), format!("duplicate job name `{}`", job.name));
        }
        if job.name == crate::jobs::INGEST_TURN {
            c.err(
                &at("name"),
                format!(
                    "`{}` is reserved for the lock ingest steps take turns on; name the job otherwise",
                    job.name
                ),
            );
        } else if crate::report::file_stem(&job.name) != job.name {
            // the job's reports go to `<output_dir>/<as-of>/<job>/`: a `/`
            // or `..` would write them elsewhere
            c.err(
                &at("name"),
                format!(
                    "`{}` cannot name the job's report folder: leave out / \\ : * ? \" < > |, control characters, and dots or spaces at either end",
                    job.name
                        .chars()
                        .map(|ch| if ch.is_control() {
                            ch.escape_default().to_string()
                        } else {
                            ch.to_string()
                        })
                        .collect::<String>()
                ),
            );
        }
        if let Err(e) = crate::schedule::parse_cron(&job.cron, tz.unwrap_or(chrono_tz::UTC)) {
            c.err(&at("cron"), e);
        }
        if job.steps.is_empty() {
            c.err(&at("steps"), "must list at least one step");
        }
        if job.keep_reports_days == Some(0) {
            c.err(
                &at("keep_reports_days"),
                "must be at least 1 (leave it out to keep every report)",
            );
        }
    }
}

fn check_recipients(c: &mut Checker<'_>, config: &Config) {
    for (i, r) in config.recipients.iter().enumerate() {
        let at = |key: &str| vec![Seg::key("recipients"), Seg::Index(i), Seg::key(key)];
        if r.email.parse::<lettre::Address>().is_err() {
            c.err(
                &at("email"),
                format!("`{}` is not an email address", r.email),
            );
        }
        if r.regions.is_empty() || r.regions.iter().any(|x| x.trim().is_empty()) {
            c.err(
                &at("regions"),
                "must list at least one region (or \"*\" for the national report)",
            );
        }
    }
    if let Some(smtp) = &config.smtp {
        let at = |key: &str| vec![Seg::key("smtp"), Seg::key(key)];
        if smtp.from.parse::<lettre::message::Mailbox>().is_err() {
            c.err(
                &at("from"),
                format!("`{}` is not a mailbox (`Name <addr@host>`)", smtp.from),
            );
        }
        if smtp.security == super::Security::None && !is_loopback(&smtp.host) {
            c.err(
                &at("security"),
                "`none` is only allowed for a loopback host",
            );
        }
        if smtp.username_env.is_some() != smtp.password_env.is_some() {
            c.err(
                &at("username_env"),
                "set both `username_env` and `password_env`, or neither",
            );
        }
    }
}

pub fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
