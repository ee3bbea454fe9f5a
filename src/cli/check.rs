//! `check`: the config validated, then the warehouse, the mail server,
//! the templates and every source opened, each problem printed.

use super::summary::counted;
use super::{error_chain, open_store, yesterday, ExitCode};
use crate::config::{self, Settings};

/// Money columns whose mapped header names a unit of 万 or 千元: SPEC §4
/// reads amounts and targets as CNY, so such a column would load 10,000
/// or 1,000 times too small, every value parsing fine. A note, not a
/// problem: the header may mislead (`金额(元，含税万元以上)`), and `check`
/// cannot see the values' scale.
fn scaled_money_columns(source: &config::SourceConfig) -> Vec<String> {
    source
        .columns
        .iter()
        .filter(|(field, _)| matches!(field.as_str(), "amount" | "sales_target"))
        .filter_map(|(field, header)| {
            let unit = if header.contains('万') {
                "万 (×10,000)"
            } else if header.contains("千元") {
                "千元 (×1,000)"
            } else {
                return None;
            };
            Some(format!(
                "`{field}` is read from `{header}`, and amounts load as CNY (SPEC §4): a \
                 column in {unit} loads that many times too small; convert it to 元 first"
            ))
        })
        .collect()
}

/// A `previous_month` job fired on the 1st: its as-of date is the last
/// day of the month just ended, and SPEC §5's previous month is the one
/// before the as-of's month, so the report sent on 1 December covers
/// October. A note, not a problem: that may be what is wanted.
fn previous_month_on_a_first(settings: &Settings, job: &config::JobConfig) -> Option<String> {
    if job.period != config::Period::PreviousMonth {
        return None;
    }
    let at = crate::schedule::next_fire_on_a_first(&job.cron, settings.tz, chrono::Utc::now())?;
    let as_of = crate::schedule::as_of_for(at, settings.tz);
    let fired = at.with_timezone(&settings.tz).date_naive();
    let reported = crate::metrics::YearMonth::of(
        crate::metrics::PeriodRange::new(as_of, config::Period::PreviousMonth).start,
    );
    Some(format!(
        "it fires on the 1st, and a `previous_month` run reports the month before its \
         as-of date's: the fire of {fired} computes as of {as_of} and reports {reported}, \
         not the month just ended; for that, fire it on the 2nd or later, or use \
         `period = \"mtd\"` on the 1st"
    ))
}

pub(super) async fn check(settings: &Settings) -> anyhow::Result<ExitCode> {
    let mut problems = 0;
    outln!(
        "config {}: ok ({}, {}, {})",
        settings.path.display(),
        counted(settings.config.sources.len(), "source", "sources"),
        counted(settings.config.jobs.len(), "job", "jobs"),
        counted(settings.config.recipients.len(), "recipient", "recipients"),
    );
    let store = match open_store(settings).await {
        Ok(s) => {
            outln!("warehouse: ok");
            Some(s)
        }
        Err(e) => {
            problems += 1;
            outln!("warehouse: {}", error_chain(e.as_ref()));
            None
        }
    };
    match crate::deliver::check_smtp(settings).await {
        Ok(None) => outln!(
            "smtp: none: emails are written to `{}`",
            settings.output_dir().join("outbox").display()
        ),
        Ok(Some(ok)) => outln!("smtp: ok: {ok}"),
        Err(e) => {
            problems += 1;
            outln!("smtp: {e}");
        }
    }
    // a job's period only changes the period line; any job will do
    let period = settings
        .config
        .jobs
        .first()
        .map_or(config::Period::Mtd, |job| job.period);
    let rules = crate::jobs::rules_for(settings, period);
    match crate::report::check_templates(settings, &rules, yesterday(settings.tz)) {
        Ok(custom) if custom.is_empty() => outln!("templates: built-in"),
        Ok(custom) => outln!(
            "templates: ok ({})",
            custom
                .iter()
                .map(|p| format!("`{}`", p.display()))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Err(e) => {
            problems += 1;
            outln!("templates: {}", error_chain(e.as_ref()));
        }
    }
    for job in &settings.config.jobs {
        if let Some(note) = previous_month_on_a_first(settings, job) {
            outln!("job `{}`: note: {note}", job.name);
        }
    }
    for s in &settings.config.sources {
        for note in scaled_money_columns(s) {
            outln!("source `{}`: note: {note}", s.name);
        }
        match s.kind {
            config::SourceKind::Sql => {
                let var = s.url_env.as_deref().unwrap_or_default();
                match std::env::var(var) {
                    Ok(url) => match crate::ingest::check_query(s, &url).await {
                        Ok(refused) => {
                            outln!("source `{}`: sql via `{var}`: connected", s.name);
                            if let Some(refused) = refused {
                                problems += 1;
                                outln!("source {refused}");
                            }
                        }
                        Err(e) => {
                            problems += 1;
                            // the URL may hold a password: name the variable only
                            outln!("source `{}`: cannot connect via `{var}`: {e}", s.name);
                        }
                    },
                    Err(_) => {
                        problems += 1;
                        outln!(
                            "source `{}`: environment variable `{var}` is not set",
                            s.name
                        );
                    }
                }
            }
            _ => {
                let found = crate::ingest::source_files(settings, s);
                outln!(
                    "source `{}`: {} `{}`",
                    s.name,
                    counted(found.files.len(), "file matches", "files match"),
                    s.path.as_deref().unwrap_or("")
                );
                for u in &found.unreadable {
                    problems += 1;
                    let what = if u.directory { "directory" } else { "file" };
                    outln!(
                        "source `{}`: cannot read {what} `{}`: {}",
                        s.name,
                        u.path,
                        u.error
                    );
                }
                let checked = crate::ingest::check_files(settings, s, &found.files);
                for (copy, earlier) in checked.copies {
                    problems += 1;
                    outln!(
                        "source `{}`: `{copy}` has the same content as `{earlier}`; \
                         a run loads only one of them",
                        s.name
                    );
                }
                for refused in checked.refused {
                    problems += 1;
                    outln!("source {refused}");
                }
                // a note, as for money in 万: reading the first sheet only
                // may be what the user wants
                for (file, message) in checked.unread_sheets {
                    outln!("source `{}`: file `{file}`: note: {message}", s.name);
                }
            }
        }
    }
    if let Some(store) = store {
        let regions = store.regions().await?;
        if regions.is_empty() {
            // before the first run every region would be named as missing, a
            // false alarm on the day a config is written
            if !settings.config.recipients.is_empty() {
                outln!(
                    "recipients: regions not checked: the warehouse holds no customer or rep \
                     yet (the first run loads them)"
                );
            }
        } else {
            for r in &settings.config.recipients {
                for region in r.regions.iter().filter(|x| *x != "*") {
                    if !regions.contains(region) {
                        outln!("recipient {}: region `{region}` has no master row", r.email);
                    }
                }
            }
        }
    }
    Ok(if problems > 0 {
        ExitCode::Failure
    } else {
        ExitCode::Success
    })
}
