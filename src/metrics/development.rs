//! Customer development (客户开发量), SPEC §5: new customers by the configured
//! event per rep and region against targets; conversion, retention, churn.

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::calendar::{within_last_months, PeriodRange};
use super::sales::SalesSummary;
use super::{ratio, Customer, PurchaseSpan, Rep, Target};
use crate::config::DevelopmentEvent;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepDevelopment {
    pub rep_id: String,
    pub name: String,
    pub region: String,
    pub new_customers: u32,
    pub new_customer_target: Option<f64>,
    pub achievement: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct AreaDevelopment {
    pub new_customers: u32,
    pub new_customer_target: Option<f64>,
    pub achievement: Option<f64>,
    /// customers first contacted in the last 12 months up to D
    pub contacted: u32,
    pub converted: u32,
    pub conversion: Option<f64>,
    /// customers buying (net > 0) over months M−6..M−4
    pub retention_base: u32,
    pub retained: u32,
    pub retention: Option<f64>,
    pub churn: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DevelopmentReport {
    pub by_rep: Vec<RepDevelopment>,
    pub by_region: BTreeMap<String, AreaDevelopment>,
    pub company: AreaDevelopment,
}

/// The date of a customer's development event, if it happened on or before D.
pub fn event_date(
    c: &Customer,
    event: DevelopmentEvent,
    purchases: &HashMap<String, PurchaseSpan>,
    as_of: NaiveDate,
) -> Option<NaiveDate> {
    let d = match event {
        DevelopmentEvent::FirstPurchase => purchases.get(&c.customer_id).map(|p| p.first),
        DevelopmentEvent::Signed => c.signed_date,
        DevelopmentEvent::FirstContact => c.first_contact_date,
    }?;
    (d <= as_of).then_some(d)
}

/// A rep's targets summed over the months of P; a field is `None` when no
/// month of P sets it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PeriodTarget {
    pub sales: Option<f64>,
    pub new_customers: Option<f64>,
}

/// Indexes targets by rep once, so per-rep lookups do not rescan them.
pub fn period_targets<'a>(
    targets: &'a [Target],
    period: &PeriodRange,
) -> HashMap<&'a str, PeriodTarget> {
    let add = |acc: Option<f64>, v: Option<f64>| v.map(|v| acc.unwrap_or(0.0) + v).or(acc);
    let months = period.months();
    let mut out: HashMap<&str, PeriodTarget> = HashMap::new();
    for t in targets.iter().filter(|t| months.contains(&t.month)) {
        let e = out.entry(t.rep_id.as_str()).or_default();
        e.sales = add(e.sales, t.sales_target);
        e.new_customers = add(e.new_customers, t.new_customer_target);
    }
    out
}

#[allow(clippy::too_many_arguments)]
pub fn compute(
    customers: &[Customer],
    reps: &[Rep],
    purchases: &HashMap<String, PurchaseSpan>,
    sales: &SalesSummary,
    targets: &[Target],
    event: DevelopmentEvent,
    period: &PeriodRange,
    as_of: NaiveDate,
) -> DevelopmentReport {
    let mut new_by_rep: HashMap<&str, u32> = HashMap::new();
    let mut by_region: BTreeMap<String, AreaDevelopment> = BTreeMap::new();
    let mut company = AreaDevelopment::default();

    for c in customers {
        let area = by_region.entry(c.region.clone()).or_default();
        if event_date(c, event, purchases, as_of).is_some_and(|d| period.contains(d)) {
            *new_by_rep.entry(c.rep_id.as_str()).or_default() += 1;
            area.new_customers += 1;
            company.new_customers += 1;
        }
        if c.first_contact_date
            .is_some_and(|d| within_last_months(d, as_of, 12))
        {
            let converted = purchases
                .get(&c.customer_id)
                .is_some_and(|p| p.first <= as_of);
            for a in [&mut *area, &mut company] {
                a.contacted += 1;
                a.converted += u32::from(converted);
            }
        }
        let customer_sales = sales.customers.get(c.customer_id.as_str());
        if customer_sales.is_some_and(|s| s.retention_before > 0.0) {
            let retained = customer_sales.is_some_and(|s| s.retention_after > 0.0);
            for a in [&mut *area, &mut company] {
                a.retention_base += 1;
                a.retained += u32::from(retained);
            }
        }
    }

    let by_rep_target = period_targets(targets, period);
    let mut by_rep = Vec::with_capacity(reps.len());
    for r in reps {
        let target = by_rep_target
            .get(r.rep_id.as_str())
            .and_then(|t| t.new_customers);
        let new_customers = new_by_rep.get(r.rep_id.as_str()).copied().unwrap_or(0);
        if let Some(t) = target {
            for a in [by_region.entry(r.region.clone()).or_default(), &mut company] {
                a.new_customer_target = Some(a.new_customer_target.unwrap_or(0.0) + t);
            }
        }
        by_rep.push(RepDevelopment {
            rep_id: r.rep_id.clone(),
            name: r.name.clone(),
            region: r.region.clone(),
            new_customers,
            new_customer_target: target,
            achievement: target.and_then(|t| ratio(f64::from(new_customers), t)),
        });
    }
    by_rep.sort_by(|a, b| a.region.cmp(&b.region).then(a.rep_id.cmp(&b.rep_id)));
    for a in by_region.values_mut().chain(std::iter::once(&mut company)) {
        finish(a);
    }
    DevelopmentReport {
        by_rep,
        by_region,
        company,
    }
}

fn finish(a: &mut AreaDevelopment) {
    a.achievement = a
        .new_customer_target
        .and_then(|t| ratio(f64::from(a.new_customers), t));
    a.conversion = ratio(f64::from(a.converted), f64::from(a.contacted));
    a.retention = ratio(f64::from(a.retained), f64::from(a.retention_base));
    a.churn = a.retention.map(|r| 1.0 - r);
}
