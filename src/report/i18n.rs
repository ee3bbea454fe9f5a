//! Report language: every label in workbooks, pages and emails, in Chinese
//! (default) and English.

use crate::config::Locale;
use crate::ingest::record::Reason;

/// (key, zh-CN, en)
const LABELS: &[(&str, &str, &str)] = &[
    ("summary", "概览", "Summary"),
    ("tiers", "客户分级", "Customer tiers"),
    ("changes", "分级变动", "Tier changes"),
    ("visits", "拜访缺口", "Visit gaps"),
    ("scorecard", "业绩考核", "Rep scorecard"),
    ("development", "客户开发", "Development"),
    ("quality", "数据质量", "Data quality"),
    ("national", "全国", "National"),
    ("report_title", "销售日报", "Sales report"),
    ("report_title_month", "销售月报", "Monthly sales report"),
    // Excel's footer codes: &P the page, &N the pages
    ("page_of", "第 &P 页，共 &N 页", "Page &P of &N"),
    ("as_of", "数据截至", "As of"),
    ("period", "考核期间", "Period"),
    ("region", "大区", "Region"),
    ("customer_id", "客户编码", "Customer id"),
    ("customer", "客户名称", "Customer"),
    ("rep_id", "代表编码", "Rep id"),
    ("rep", "代表", "Rep"),
    ("avg_monthly_sales", "月均销售额", "Avg monthly sales"),
    ("growth", "增长率", "Growth"),
    ("breadth", "品种覆盖", "Breadth"),
    ("loyalty", "忠诚度", "Loyalty"),
    ("prospect", "潜力", "Prospect"),
    ("sales_score", "销售得分", "Sales score"),
    ("growth_score", "增长得分", "Growth score"),
    ("coverage_score", "覆盖得分", "Coverage score"),
    ("loyalty_score", "忠诚得分", "Loyalty score"),
    ("prospect_score", "潜力得分", "Prospect score"),
    ("score", "综合得分", "Score"),
    ("tier", "等级", "Tier"),
    ("lifecycle", "客户分型", "Lifecycle"),
    ("near_boundary", "临界", "Near boundary"),
    ("from_tier", "原等级", "From"),
    ("to_tier", "新等级", "To"),
    ("previous_score", "原得分", "Previous score"),
    ("delta", "变动", "Delta"),
    ("driver", "主要因素", "Main driver"),
    ("target", "目标拜访", "Target visits"),
    ("actual", "实际拜访", "Actual visits"),
    ("gap", "缺口", "Gap"),
    ("sales", "销售额", "Sales"),
    ("sales_target", "销售目标", "Sales target"),
    ("expected_sales", "时间进度目标", "Expected sales"),
    ("sales_achievement", "销售达成率", "Sales achievement"),
    ("active_customers", "活跃客户", "Active customers"),
    ("new_customers", "新开发客户", "New customers"),
    ("new_customer_target", "开发目标", "New-customer target"),
    ("achievement", "开发达成率", "Achievement"),
    ("visit_attainment", "拜访达成率", "Visit attainment"),
    ("visit_coverage", "拜访覆盖率", "Visit coverage"),
    ("visit_pace", "拜访进度", "Visit pace"),
    ("avg_satisfaction", "满意度", "Satisfaction"),
    ("kpi", "KPI", "KPI"),
    ("rank", "排名", "Rank"),
    ("conversion", "转化率", "Conversion"),
    ("retention", "留存率", "Retention"),
    ("churn", "流失率", "Churn"),
    ("customers_scored", "参与分级客户数", "Customers scored"),
    ("upgrades", "升级", "Upgrades"),
    ("downgrades", "降级", "Downgrades"),
    (
        "worst_gaps",
        "重点客户拜访缺口",
        "Worst visit gaps on top tiers",
    ),
    ("ranking", "代表排名", "Rep ranking"),
    ("regions", "大区概览", "Regions"),
    ("no_gaps", "无拜访缺口", "No visit gaps"),
    (
        "no_changes",
        "与上期快照相比无等级变动",
        "No tier changes since the previous snapshot",
    ),
    (
        "changes_not_compared",
        "上期快照的等级已不在当前分级规则中（等级的名称和个数都改了），本期不比较等级变动",
        "The earlier snapshot's tiers are not in the current tier rules (their names and number changed); tier changes are not compared this time",
    ),
    (
        "changes_partly_compared",
        "部分客户的上期等级已不在当前分级规则中（等级的名称和个数都改了），未比较这些客户的等级变动",
        "Some customers' earlier tiers are not in the current tier rules (their names and number changed); their tier changes are not compared",
    ),
    (
        "workbooks_not_attached",
        "本邮件未附工作簿：附上后邮件共 {size} MB，超过邮件服务器允许的大小。工作簿 {files} 已生成，请向运维索取。",
        "The workbooks are not attached: with them this email is {size} MB, more than the mail server accepts. {files} were written; ask operations for them.",
    ),
    (
        "no_snapshot",
        "首次计算：尚无上期快照可比较",
        "First computation: no earlier snapshot to compare with",
    ),
    ("no_reps", "无代表", "No reps"),
    ("no_rows", "无数据", "No data"),
    (
        "rows_shown",
        "显示前 {shown} 行，共 {total} 行；完整列表见 Excel 工作簿",
        "Showing {shown} of {total} rows; the Excel workbook has them all",
    ),
    (
        "rows_cut",
        "此表共 {total} 行，超过 Excel 工作表的行数上限；这里列出前 {shown} 行，全部数据请用 salesbatch export 导出",
        "This table has {total} rows, more than an Excel sheet holds; the first {shown} are listed here, and `salesbatch export` gives them all",
    ),
    (
        "rows_unlisted",
        "该文件另有 {count} 行被拒收，只计数、未逐行列出：每个文件只列出前 {listed} 行",
        "{count} more rejected rows of this file are counted, not listed: a file lists its first {listed}",
    ),
    ("tier_distribution", "客户等级分布", "Customers by tier"),
    ("top_reps", "综合得分最高的代表", "Reps with the highest KPI"),
    ("count", "数量", "Count"),
    ("source", "数据源", "Source"),
    ("file", "文件", "File"),
    ("sheet", "工作表", "Sheet"),
    ("row", "行", "Row"),
    ("cell", "单元格", "Cell"),
    ("column", "列", "Column"),
    ("value", "值", "Value"),
    ("reason", "原因", "Reason"),
    ("detail", "说明", "Detail"),
    // a data-quality sheet: what the run said of files that loaded
    ("notes", "文件提示", "File notes"),
    ("note", "提示", "Note"),
    // rejected rows cannot all be placed in a region (an unknown customer
    // has none): the count is national on every page, and says so
    ("rejections", "拒收行数（全国）", "Rejected rows (national)"),
    ("rules", "计算规则", "Rules"),
    // a run without an ingest step shows the data quality of the latest
    // run that had one, and names it
    ("quality_from", "数据质量取自", "Data quality from"),
    (
        "quality_run",
        "运行 #{run}（作业 {job}，数据截至 {as_of}，开始于 {started}）",
        "run #{run} (job {job}, as of {as_of}, started {started})",
    ),
    ("weights", "权重", "Weights"),
    ("thresholds", "等级门槛", "Tier thresholds"),
    ("monthly_visits", "每月拜访", "Monthly visits"),
    (
        "quality_note",
        "明细见全国报表的数据质量工作簿",
        "Details are in the national data-quality workbook",
    ),
    // keyed by SPEC §4's reason codes, which logs, `export rejections` and
    // the English workbook show; the Chinese workbook names the reason in
    // Chinese and keeps the code beside it, to match the two
    (
        "missing required field",
        "缺少必填字段（missing required field）",
        "missing required field",
    ),
    (
        "unparsable date",
        "日期无法识别（unparsable date）",
        "unparsable date",
    ),
    (
        "unparsable number",
        "数字无法识别（unparsable number）",
        "unparsable number",
    ),
    (
        "unknown customer id",
        "未知客户编码（unknown customer id）",
        "unknown customer id",
    ),
    (
        "unknown rep id",
        "未知代表编码（unknown rep id）",
        "unknown rep id",
    ),
    (
        "reject ratio exceeded",
        "拒收比例超限，整个文件未加载（reject ratio exceeded）",
        "reject ratio exceeded",
    ),
    (
        "cannot open file",
        "文件无法打开（cannot open file）",
        "cannot open file",
    ),
    (
        "missing column",
        "缺少映射列（missing column）",
        "missing column",
    ),
    // a tier change no sub-score explains: the thresholds or weights moved
    ("rules_changed", "计算规则变更", "rules changed"),
    ("upgrade", "升级", "upgrade"),
    ("downgrade", "降级", "downgrade"),
    ("yes", "是", "yes"),
    ("company", "公司合计", "Company"),
    ("potential", "潜在", "potential"),
    ("new", "新客户", "new"),
    ("dormant", "休眠", "dormant"),
    ("existing", "存量", "existing"),
];

#[derive(Debug, Clone, Copy)]
pub struct Labels(pub Locale);

/// SPEC §3's default tier labels, as an English report names them: a
/// config that sets no tiers (or copies SPEC's) would otherwise show
/// Chinese labels in an English report.
const DEFAULT_TIER_LABELS: [(&str, &str); 5] = [
    ("VIP客户", "VIP"),
    ("骨干客户", "Key accounts"),
    ("有效客户", "Active"),
    ("休眠客户", "Dormant"),
    ("潜在客户", "Prospects"),
];

impl Labels {
    /// A tier's configured label as the report shows it: SPEC's default
    /// labels in the report's language, any other label as written.
    pub fn tier_label<'a>(&self, label: &'a str) -> &'a str {
        match DEFAULT_TIER_LABELS.iter().find(|(zh, _)| *zh == label) {
            Some((_, en)) if self.0 == Locale::En => en,
            _ => label,
        }
    }

    /// The label of `key`; empty for a key the table lacks, which a debug
    /// build (every test) refuses, so that a new column or section cannot
    /// ship with a blank header.
    pub fn get(&self, key: &str) -> &'static str {
        let found = LABELS.iter().find(|(k, _, _)| *k == key);
        debug_assert!(found.is_some(), "no label for `{key}` in `i18n::LABELS`");
        found.map_or("", |(_, zh, en)| if self.0 == Locale::En { en } else { zh })
    }

    /// A rejection's reason as the data-quality sheet shows it.
    pub fn reason(&self, reason: Reason) -> &'static str {
        self.get(reason.as_str())
    }

    /// All labels as a map for templates.
    pub fn all(&self) -> std::collections::BTreeMap<&'static str, &'static str> {
        LABELS.iter().map(|(k, _, _)| (*k, self.get(k))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::{Labels, Locale, Reason};

    /// SPEC's default tier labels read in English in an English report;
    /// a label the config chose, and every label in Chinese, as written.
    #[test]
    fn default_tier_labels_follow_the_locale() {
        let (en, zh) = (Labels(Locale::En), Labels(Locale::ZhCn));
        assert_eq!(en.tier_label("VIP客户"), "VIP");
        assert_eq!(en.tier_label("潜在客户"), "Prospects");
        assert_eq!(en.tier_label("重点医院"), "重点医院");
        assert_eq!(zh.tier_label("VIP客户"), "VIP客户");
    }

    /// English shows SPEC §4's code as it is; Chinese names the reason and
    /// keeps the code beside it, so a row matches the log and the export.
    #[test]
    fn every_reason_has_its_code_in_both_languages() {
        for reason in Reason::ALL {
            assert_eq!(Labels(Locale::En).reason(reason), reason.as_str());
            let zh = Labels(Locale::ZhCn).reason(reason);
            assert!(zh.ends_with(&format!("（{}）", reason.as_str())), "{zh}");
            assert!(!zh.starts_with('（'), "{zh}");
        }
    }
}
