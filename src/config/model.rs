//! Serde model of `salesbatch.toml` (SPEC §3). Parsing only: every rule that
//! spans several keys lives in `validate.rs`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_timezone")]
    pub timezone: String,
    #[serde(default)]
    pub locale: Locale,
    #[serde(default = "default_output_dir")]
    pub output_dir: PathBuf,
    #[serde(default = "default_templates_dir")]
    pub templates_dir: PathBuf,
    #[serde(default)]
    pub warehouse: WarehouseConfig,
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    #[serde(default)]
    pub ingest: IngestConfig,
    #[serde(default)]
    pub customers: CustomersConfig,
    #[serde(default)]
    pub tiering: TieringConfig,
    #[serde(default)]
    pub visits: VisitsConfig,
    #[serde(default)]
    pub scorecard: ScorecardConfig,
    #[serde(default)]
    pub development: DevelopmentConfig,
    #[serde(default)]
    pub jobs: Vec<JobConfig>,
    #[serde(default)]
    pub recipients: Vec<Recipient>,
    pub smtp: Option<SmtpConfig>,
}

fn default_timezone() -> String {
    "Asia/Shanghai".into()
}
fn default_output_dir() -> PathBuf {
    "out".into()
}
fn default_templates_dir() -> PathBuf {
    "report-templates".into()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum Locale {
    #[default]
    #[serde(rename = "zh-CN")]
    ZhCn,
    #[serde(rename = "en")]
    En,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WarehouseConfig {
    pub url: Option<String>,
    pub url_env: Option<String>,
    /// after each run, the snapshots (computed tiers and tables, about 100
    /// MB a run at 200,000 customers) of runs dated more than this many days
    /// before today are removed; unset keeps them all. A run's snapshots
    /// superseded by a later run of its job and date go in any case.
    #[serde(default)]
    pub keep_snapshots_days: Option<u32>,
}

impl Default for WarehouseConfig {
    fn default() -> Self {
        Self {
            url: Some("sqlite://data/warehouse.db".into()),
            url_env: None,
            keep_snapshots_days: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dataset {
    Reps,
    Customers,
    Sales,
    Visits,
    Targets,
    Satisfaction,
}

impl Dataset {
    /// SPEC §4 load order: masters first, reps before customers.
    pub const LOAD_ORDER: [Dataset; 6] = [
        Dataset::Reps,
        Dataset::Customers,
        Dataset::Sales,
        Dataset::Visits,
        Dataset::Targets,
        Dataset::Satisfaction,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Dataset::Reps => "reps",
            Dataset::Customers => "customers",
            Dataset::Sales => "sales",
            Dataset::Visits => "visits",
            Dataset::Targets => "targets",
            Dataset::Satisfaction => "satisfaction",
        }
    }

    /// Canonical fields in the table order of SPEC §4 (which is also the order
    /// in which a row's fields are checked), with whether each is required.
    pub fn fields(self) -> &'static [(&'static str, bool)] {
        match self {
            Dataset::Sales => &[
                ("invoice_date", true),
                ("customer_id", true),
                ("product_id", true),
                ("amount", true),
                ("quantity", false),
                ("invoice_no", false),
                ("line_no", false),
                ("rep_id", false),
            ],
            Dataset::Customers => &[
                ("customer_id", true),
                ("name", true),
                ("region", true),
                ("rep_id", true),
                ("customer_type", false),
                ("first_contact_date", false),
                ("signed_date", false),
                ("prospect_score", false),
                ("coverage_score", false),
                ("status", false),
            ],
            Dataset::Visits => &[
                ("visit_date", true),
                ("rep_id", true),
                ("customer_id", true),
                ("visit_type", false),
                ("outcome", false),
            ],
            Dataset::Reps => &[
                ("rep_id", true),
                ("name", true),
                ("region", true),
                ("hire_date", false),
                ("email", false),
            ],
            Dataset::Targets => &[
                ("rep_id", true),
                ("month", true),
                ("sales_target", false),
                ("new_customer_target", false),
            ],
            Dataset::Satisfaction => &[("customer_id", true), ("date", true), ("score", true)],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    Excel,
    Csv,
    Sql,
}

/// A `csv` source's `encoding`. Read in any letter case and under the
/// other labels users write for GBK (`gb2312`, `cp936`: the WHATWG Encoding
/// Standard, which encoding_rs follows, decodes them as GBK, a superset of
/// GB2312).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub enum Encoding {
    #[default]
    #[serde(rename = "utf-8")]
    Utf8,
    #[serde(rename = "gbk")]
    Gbk,
    #[serde(rename = "gb18030")]
    Gb18030,
}

impl<'de> Deserialize<'de> for Encoding {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let label = String::deserialize(deserializer)?;
        match label.to_ascii_lowercase().as_str() {
            "utf-8" | "utf8" => Ok(Self::Utf8),
            "gbk" | "gb2312" | "cp936" => Ok(Self::Gbk),
            "gb18030" => Ok(Self::Gb18030),
            _ => Err(serde::de::Error::unknown_variant(
                &label,
                &["utf-8", "gbk", "gb18030"],
            )),
        }
    }
}

/// The field separator of a `csv` source (`delimiter`, an addition to
/// SPEC §3): Excel's "Unicode Text" and many ERP exports are tab-separated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Delimiter {
    #[default]
    Comma,
    Tab,
    Semicolon,
    Pipe,
}

impl Delimiter {
    pub fn byte(self) -> u8 {
        match self {
            Self::Comma => b',',
            Self::Tab => b'\t',
            Self::Semicolon => b';',
            Self::Pipe => b'|',
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    pub name: String,
    pub dataset: Dataset,
    pub kind: SourceKind,
    pub path: Option<String>,
    pub sheet: Option<String>,
    pub header_row: Option<u32>,
    pub encoding: Option<Encoding>,
    pub delimiter: Option<Delimiter>,
    pub date_format: Option<String>,
    pub url_env: Option<String>,
    pub lookback_days: Option<u32>,
    pub query: Option<String>,
    /// canonical field → header text in the file (or column name in the query)
    #[serde(default)]
    pub columns: BTreeMap<String, String>,
}

impl SourceConfig {
    pub fn lookback_days(&self) -> u32 {
        self.lookback_days.unwrap_or(35)
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    #[serde(default = "default_reject_ratio")]
    pub max_reject_ratio: f64,
    #[serde(default = "default_max_file_mb")]
    pub max_file_mb: u64,
    /// seconds a `sql` source may take, connecting and reading included;
    /// beyond it the source is refused and the run goes on (not in SPEC:
    /// a hung ERP query would otherwise hold the job, and every later fire
    /// of it, for ever)
    #[serde(default = "default_sql_timeout_secs")]
    pub sql_timeout_secs: u64,
}

fn default_reject_ratio() -> f64 {
    0.05
}
fn default_max_file_mb() -> u64 {
    512
}
fn default_sql_timeout_secs() -> u64 {
    3600
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            max_reject_ratio: default_reject_ratio(),
            max_file_mb: default_max_file_mb(),
            sql_timeout_secs: default_sql_timeout_secs(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CustomersConfig {
    #[serde(default = "default_inactive")]
    pub inactive_values: Vec<String>,
}

fn default_inactive() -> Vec<String> {
    ["inactive", "停用", "无效", "注销"]
        .map(String::from)
        .to_vec()
}

impl Default for CustomersConfig {
    fn default() -> Self {
        Self {
            inactive_values: default_inactive(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TieringConfig {
    #[serde(default = "default_window")]
    pub window_months: u32,
    #[serde(default)]
    pub weights: TierWeights,
    #[serde(default = "default_rank_bands")]
    pub sales: RankBands,
    #[serde(default = "default_growth_bands")]
    pub growth: ValueBands,
    #[serde(default = "default_rank_bands")]
    pub coverage: RankBands,
    #[serde(default)]
    pub prospect: ProspectConfig,
    #[serde(default = "default_tiers")]
    pub tiers: Vec<TierRule>,
}

fn default_window() -> u32 {
    12
}

impl Default for TieringConfig {
    fn default() -> Self {
        Self {
            window_months: default_window(),
            weights: TierWeights::default(),
            sales: default_rank_bands(),
            growth: default_growth_bands(),
            coverage: default_rank_bands(),
            prospect: ProspectConfig::default(),
            tiers: default_tiers(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TierWeights {
    pub sales: f64,
    pub growth: f64,
    pub coverage: f64,
    pub loyalty: f64,
    pub prospect: f64,
}

impl Default for TierWeights {
    fn default() -> Self {
        Self {
            sales: 0.5,
            growth: 0.2,
            coverage: 0.1,
            loyalty: 0.1,
            prospect: 0.1,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RankBands {
    pub bands: Vec<RankBand>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RankBand {
    pub top: f64,
    pub points: f64,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ValueBands {
    pub bands: Vec<ValueBand>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ValueBand {
    pub min: f64,
    pub points: f64,
}

fn default_rank_bands() -> RankBands {
    RankBands {
        bands: [(0.10, 100.0), (0.30, 85.0), (0.60, 70.0), (1.0, 50.0)]
            .map(|(top, points)| RankBand { top, points })
            .to_vec(),
    }
}

fn default_growth_bands() -> ValueBands {
    ValueBands {
        bands: [
            (0.20, 100.0),
            (0.05, 85.0),
            (-0.05, 70.0),
            (-0.20, 50.0),
            (-1e9, 20.0),
        ]
        .map(|(min, points)| ValueBand { min, points })
        .to_vec(),
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProspectConfig {
    #[serde(default)]
    pub blank: f64,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TierRule {
    pub name: String,
    #[serde(default)]
    pub label: String,
    pub min_score: f64,
    pub monthly_visits: u32,
}

fn default_tiers() -> Vec<TierRule> {
    [
        ("A", "VIP客户", 90.0, 4),
        ("B", "骨干客户", 75.0, 3),
        ("C", "有效客户", 60.0, 2),
        ("D", "休眠客户", 50.0, 1),
        ("E", "潜在客户", 0.0, 0),
    ]
    .map(|(name, label, min_score, monthly_visits)| TierRule {
        name: name.into(),
        label: label.into(),
        min_score,
        monthly_visits,
    })
    .to_vec()
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VisitsConfig {
    #[serde(default = "default_counted")]
    pub counted_types: Vec<String>,
    #[serde(default = "default_visit_type")]
    pub default_type: String,
    #[serde(default = "one")]
    pub max_per_customer_per_day: u32,
}

fn default_counted() -> Vec<String> {
    vec!["face_to_face".into()]
}
fn default_visit_type() -> String {
    "face_to_face".into()
}
fn one() -> u32 {
    1
}

impl Default for VisitsConfig {
    fn default() -> Self {
        Self {
            counted_types: default_counted(),
            default_type: default_visit_type(),
            max_per_customer_per_day: 1,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScorecardConfig {
    #[serde(default)]
    pub weights: ScorecardWeights,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScorecardWeights {
    pub sales: f64,
    pub new_customers: f64,
    pub visits: f64,
    pub satisfaction: f64,
}

impl Default for ScorecardWeights {
    fn default() -> Self {
        Self {
            sales: 0.5,
            new_customers: 0.2,
            visits: 0.2,
            satisfaction: 0.1,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DevelopmentConfig {
    #[serde(default)]
    pub event: DevelopmentEvent,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DevelopmentEvent {
    #[default]
    FirstPurchase,
    Signed,
    FirstContact,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    #[default]
    Mtd,
    PreviousMonth,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Ingest,
    Compute,
    Report,
    Deliver,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JobConfig {
    pub name: String,
    pub cron: String,
    #[serde(default)]
    pub period: Period,
    #[serde(default = "all_steps")]
    pub steps: Vec<Step>,
    #[serde(default)]
    pub catch_up: bool,
    /// after each run, this job's report folders (`out/<as-of>/<job>/`,
    /// and dry runs') dated more than this many days before today are
    /// removed; unset keeps them all
    #[serde(default)]
    pub keep_reports_days: Option<u32>,
}

fn all_steps() -> Vec<Step> {
    vec![Step::Ingest, Step::Compute, Step::Report, Step::Deliver]
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Recipient {
    pub email: String,
    #[serde(default)]
    pub name: String,
    pub regions: Vec<String>,
}

impl Recipient {
    pub fn is_national(&self) -> bool {
        self.regions.iter().any(|r| r == "*")
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Security {
    #[default]
    Starttls,
    Tls,
    None,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    #[serde(default)]
    pub security: Security,
    pub username_env: Option<String>,
    pub password_env: Option<String>,
    pub from: String,
    /// seconds for one whole send (connect + conversation)
    #[serde(default = "default_smtp_timeout")]
    pub timeout_secs: u64,
}

fn default_smtp_port() -> u16 {
    587
}
fn default_smtp_timeout() -> u64 {
    60
}
