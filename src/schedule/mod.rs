//! Scheduler daemon (`serve`): fires jobs on their cron schedules.

/// Parses a 6-field cron expression with the same parser the scheduler uses.
pub fn parse_cron(expr: &str, tz: chrono_tz::Tz) -> Result<(), String> {
    let fields = expr.split_whitespace().count();
    if fields != 6 {
        return Err(format!(
            "`{expr}` has {fields} fields; expected 6 (sec min hour day month weekday)"
        ));
    }
    tokio_cron_scheduler::Job::new_async_tz(expr, tz, |_, _| Box::pin(async {}))
        .map(|_| ())
        .map_err(|_| format!("`{expr}` is not a valid cron expression"))
}

use std::sync::Arc;

use tracing::{error, info, warn};

use crate::config::Settings;
use crate::jobs::{self, RunOptions};

/// Runs jobs on their cron schedules until Ctrl-C. Each fire computes
/// yesterday in the configured timezone and calls the same `run_job` as a
/// manual run. A job never overlaps itself: the warehouse lock is taken
/// before running and a fire that finds it held is skipped.
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    let settings = Arc::new(settings);
    let mut sched = tokio_cron_scheduler::JobScheduler::new().await?;
    for job in settings.config.jobs.clone() {
        let s = settings.clone();
        let cron = job.cron.clone();
        let entry = tokio_cron_scheduler::Job::new_async_tz(
            cron.as_str(),
            settings.tz,
            move |_, _| {
                let s = s.clone();
                let job = job.clone();
                Box::pin(async move {
                    let as_of = chrono::Utc::now()
                        .with_timezone(&s.tz)
                        .date_naive()
                        .pred_opt()
                        .unwrap_or_default();
                    let store = match crate::cli::open_store(&s).await {
                        Ok(st) => st,
                        Err(e) => {
                            error!(job = %job.name, error = %format!("{e:#}"), "cannot open the warehouse");
                            return;
                        }
                    };
                    match jobs::run_locked(&s, store.as_ref(), &job, as_of, &RunOptions::default())
                        .await
                    {
                        Ok(_) => {}
                        Err(e) if e.is::<jobs::JobLocked>() => {
                            warn!(job = %job.name, "previous fire still running; this one is skipped");
                        }
                        Err(e) => error!(job = %job.name, error = %format!("{e:#}"), "job failed"),
                    }
                })
            },
        )?;
        sched.add(entry).await?;
        info!(cron = %cron, "job scheduled");
    }
    sched.start().await?;
    tokio::signal::ctrl_c().await?;
    info!("shutting down");
    sched.shutdown().await?;
    Ok(())
}
