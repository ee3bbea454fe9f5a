use std::path::Path;

use salesbatch::config;

#[test]
fn example_config_parses() {
    let s = config::load(Path::new("config/salesbatch.toml")).expect("example config is valid");
    assert_eq!(s.config.tiering.tiers.len(), 5);
    assert_eq!(s.config.tiering.tiers[1].name, "B");
    assert_eq!(s.config.sources.len(), 3);
    assert_eq!(s.config.ingest.sql_timeout_secs, 3600);
}

#[test]
fn ingest_limits_must_be_usable() {
    let text = "[ingest]\nmax_reject_ratio = 1.5\nmax_file_mb = 0\nsql_timeout_secs = 0\n";
    let err = config::load_str(Path::new("i.toml"), text).expect_err("invalid");
    let lines: Vec<String> = err.problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        vec![
            "i.toml:2: `ingest.max_reject_ratio`: must be between 0 and 1",
            "i.toml:3: `ingest.max_file_mb`: must be at least 1",
            "i.toml:4: `ingest.sql_timeout_secs`: must be at least 1",
        ]
    );
}

#[test]
fn every_problem_is_reported_with_its_line() {
    let text = "timezone = \"Asia/Shanghai\"\ncolour = \"blue\"\n\n[tiering.weights]\nsales = 0.5\ngrowth = 0.1\ncoverage = 0.1\nloyalty = 0.1\nprospect = 0.1\n";
    let err = config::load_str(Path::new("bad.toml"), text).expect_err("invalid");
    let lines: Vec<String> = err.problems.iter().map(ToString::to_string).collect();
    assert_eq!(err.problems.len(), 2, "{lines:?}");
    assert!(
        lines[0].starts_with("bad.toml:2: `colour`: unknown field `colour`"),
        "{}",
        lines[0]
    );
    assert_eq!(
        lines[1],
        "bad.toml:4: `tiering.weights`: weights sum to 0.9, they must sum to 1.0"
    );
}

/// SPEC §3: every problem at once. A value serde refuses (an enum
/// variant, a number written as text, in a required key or an optional
/// one, in an array) is reported and the parse goes on with a value of the
/// wanted type in its place, so the unknown keys and stage-two problems
/// after it are reported too; what follows from the stand-in (weights that
/// no longer sum to 1; a source judged as the stand-in dataset, so its
/// `sheet` waits for the next `check`) is not.
#[test]
fn values_serde_refuses_do_not_hide_the_other_problems() {
    let text = "locale = \"fr\"\n\
        [[sources]]\nname = \"s\"\ndataset = \"sale\"\nkind = \"csv\"\npath = \"in/*\"\n\
        sheet = \"x\"\ncolumns = { invoice_date = \"d\", customer_id = \"c\", product_id = \"p\", amount = \"a\" }\n\
        [[jobs]]\nname = \"n\"\ncron = \"0 30 2 * *\"\nsteps = [\"ingest\", \"mail\"]\n\
        [tiering.weights]\nsales = 0.6\ngrowth = 0.2\ncoverage = 0.1\nloyalty = 0.1\nprospect = \"0.1\"\n\
        [smtp]\nhost = \"h\"\nport = \"587\"\nfrom = \"x <a@b.c>\"\npasword_env = \"P\"\n";
    let err = config::load_str(Path::new("v.toml"), text).expect_err("invalid");
    let lines: Vec<String> = err.problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "v.toml:1: `locale`: unknown variant `fr`, expected `zh-CN` or `en`",
            "v.toml:4: `sources[0].dataset`: unknown variant `sale`, expected one of \
             `reps`, `customers`, `sales`, `visits`, `targets`, `satisfaction`",
            "v.toml:11: `jobs[0].cron`: `0 30 2 * *` has 5 fields; expected 6 (sec min hour day month weekday)",
            "v.toml:12: `jobs[0].steps[1]`: unknown variant `mail`, expected one of \
             `ingest`, `compute`, `report`, `deliver`",
            "v.toml:18: `tiering.weights.prospect`: invalid type: string \"0.1\", expected f64",
            "v.toml:21: `smtp.port`: invalid type: string \"587\", expected u16",
            "v.toml:23: `smtp.pasword_env`: unknown field `pasword_env`, expected one of \
             `host`, `port`, `security`, `username_env`, `password_env`, `from`, `timeout_secs`",
        ]
    );
}

/// `encoding` takes the labels users write for SPEC §3's three encodings:
/// upper case, and `gb2312`/`cp936` for GBK (which is what decodes them).
#[test]
fn encoding_takes_the_labels_users_write() {
    let source = |encoding: &str| {
        format!(
            "[[sources]]\nname = \"s\"\ndataset = \"sales\"\nkind = \"csv\"\npath = \"in/*\"\n\
             encoding = \"{encoding}\"\ncolumns = {{ invoice_date = \"d\", customer_id = \"c\", \
             product_id = \"p\", amount = \"a\" }}\n"
        )
    };
    for (label, encoding) in [
        ("utf-8", config::Encoding::Utf8),
        ("UTF-8", config::Encoding::Utf8),
        ("utf8", config::Encoding::Utf8),
        ("gbk", config::Encoding::Gbk),
        ("GBK", config::Encoding::Gbk),
        ("gb2312", config::Encoding::Gbk),
        ("GB2312", config::Encoding::Gbk),
        ("cp936", config::Encoding::Gbk),
        ("gb18030", config::Encoding::Gb18030),
        ("GB18030", config::Encoding::Gb18030),
    ] {
        let loaded = config::load_str(Path::new("e.toml"), &source(label)).expect(label);
        assert_eq!(loaded.config.sources[0].encoding, Some(encoding), "{label}");
    }
    let err = config::load_str(Path::new("e.toml"), &source("big5")).expect_err("big5");
    assert!(
        err.to_string().contains(
            "e.toml:6: `sources[0].encoding`: unknown variant `big5`, expected one of \
             `utf-8`, `gbk`, `gb18030`"
        ),
        "{err}"
    );
}

#[test]
fn tiers_out_of_order_and_bad_cron_are_both_reported() {
    let text = "[[tiering.tiers]]\nname = \"A\"\nmin_score = 50\nmonthly_visits = 1\n[[tiering.tiers]]\nname = \"B\"\nmin_score = 60\nmonthly_visits = 1\n\n[[jobs]]\nname = \"n\"\ncron = \"0 30 2 * *\"\n";
    let err = config::load_str(Path::new("c.toml"), text).expect_err("invalid");
    let all = err.to_string();
    assert!(
        all.contains("c.toml:7: `tiering.tiers[1].min_score`: tiers must be ordered high to low"),
        "{all}"
    );
    assert!(
        all.contains("c.toml:12: `jobs[0].cron`: `0 30 2 * *` has 5 fields"),
        "{all}"
    );
}

/// `keep_reports_days` (an addition to SPEC §3) is a job's; 0 would keep
/// nothing but the night's own reports, and is refused with the way to
/// keep them all.
#[test]
fn keep_reports_days_is_at_least_one() {
    let job = |days: u32| {
        format!("[[jobs]]\nname = \"n\"\ncron = \"0 30 2 * * *\"\nkeep_reports_days = {days}\n")
    };
    let ok = config::load_str(Path::new("k.toml"), &job(90)).expect("valid");
    assert_eq!(ok.config.jobs[0].keep_reports_days, Some(90));
    let err = config::load_str(Path::new("k.toml"), &job(0)).expect_err("0");
    let lines: Vec<String> = err.problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        ["k.toml:4: `jobs[0].keep_reports_days`: must be at least 1 (leave it out to keep every report)"]
    );
}

/// A job's name is its reports' folder (`out/<as-of>/<job>/`): a name
/// that would write them elsewhere, or that no folder can have, is
/// refused, and so is `(ingest)`, the name of the lock ingest steps take
/// turns on. Chinese names, spaces and parentheses inside are fine.
#[test]
fn a_job_name_must_be_a_folder_name() {
    let jobs = |names: &[&str]| {
        names
            .iter()
            .map(|n| format!("[[jobs]]\nname = \"{n}\"\ncron = \"0 30 2 * * *\"\n"))
            .collect::<String>()
    };
    let ok =
        config::load_str(Path::new("j.toml"), &jobs(&["夜间 日报", "月报(上月)"])).expect("valid");
    assert_eq!(ok.config.jobs.len(), 2);
    let bad = ["../../etc", "a/b", "", " nightly", "x\\t", "(ingest)", "ok"];
    let err = config::load_str(Path::new("j.toml"), &jobs(&bad)).expect_err("bad names");
    let lines: Vec<String> = err.problems.iter().map(ToString::to_string).collect();
    let folder = "cannot name the job's report folder: leave out / \\ : * ? \" < > |, control characters, and dots or spaces at either end";
    assert_eq!(
        lines,
        [
            format!("j.toml:2: `jobs[0].name`: `../../etc` {folder}"),
            format!("j.toml:5: `jobs[1].name`: `a/b` {folder}"),
            format!("j.toml:8: `jobs[2].name`: `` {folder}"),
            format!("j.toml:11: `jobs[3].name`: ` nightly` {folder}"),
            format!("j.toml:14: `jobs[4].name`: `x\\t` {folder}"),
            "j.toml:17: `jobs[5].name`: `(ingest)` is reserved for the lock ingest steps take turns on; name the job otherwise".to_string(),
        ]
    );
}

/// `[warehouse] keep_snapshots_days` (an addition to SPEC §3): 0 is refused
/// with the way to keep every snapshot.
#[test]
fn keep_snapshots_days_is_at_least_one() {
    let warehouse = |days: u32| {
        format!("[warehouse]\nurl = \"sqlite://data/w.db\"\nkeep_snapshots_days = {days}\n")
    };
    let ok = config::load_str(Path::new("k.toml"), &warehouse(400)).expect("valid");
    assert_eq!(ok.config.warehouse.keep_snapshots_days, Some(400));
    let err = config::load_str(Path::new("k.toml"), &warehouse(0)).expect_err("0");
    let lines: Vec<String> = err.problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        ["k.toml:3: `warehouse.keep_snapshots_days`: must be at least 1 (leave it out to keep every snapshot)"]
    );
}

/// `delimiter` (an addition to SPEC §3) belongs to `csv` sources and takes
/// a name, not a character: a tab is hard to see in a TOML file.
#[test]
fn delimiter_is_a_csv_key_with_named_values() {
    let source = |kind: &str, delimiter: &str| {
        format!(
            "[[sources]]\nname = \"s\"\ndataset = \"sales\"\nkind = \"{kind}\"\npath = \"in/*\"\n\
             delimiter = \"{delimiter}\"\ncolumns = {{ invoice_date = \"d\", customer_id = \"c\", \
             product_id = \"p\", amount = \"a\" }}\n"
        )
    };
    let ok = config::load_str(Path::new("d.toml"), &source("csv", "tab")).expect("valid");
    assert_eq!(ok.config.sources[0].delimiter, Some(config::Delimiter::Tab));
    assert_eq!(config::Delimiter::Tab.byte(), b'\t');
    let err = config::load_str(Path::new("d.toml"), &source("excel", "tab")).expect_err("excel");
    let lines: Vec<String> = err.problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        ["d.toml:6: `sources[0].delimiter`: does not apply to an `excel` source"]
    );
    let err =
        config::load_str(Path::new("d.toml"), &source("csv", "\\t")).expect_err("a character");
    let all = err.to_string();
    assert!(
        all.contains(
            "d.toml:6: `sources[0].delimiter`: unknown variant `\t`, expected one of \
                      `comma`, `tab`, `semicolon`, `pipe`"
        ),
        "{all}"
    );
}
