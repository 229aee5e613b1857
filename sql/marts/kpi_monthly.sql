-- marts.kpi_monthly: one row per store x calendar month, up to the day before as_of.
-- The month that contains as_of is partial (is_complete_month = false).
-- Definitions:
--   net_revenue_usd      = GMV (order totals) minus refunds, cancelled orders excluded
--   new_customers        = customers whose first order falls in the month
--   repeat_purchase_rate = share of customers acquired up to the month's end who have
--                          ordered at least twice by then (cumulative)
--   conversion_rate      = orders / sessions from the sessions file (null without sessions)
--   cac_usd              = ad spend / new customers; blended_roas = GMV / ad spend
--   cohort_ltv_to_date_usd = net revenue per customer of this month's acquisition cohort,
--                          observed up to as_of; ltv_cac_ratio = that / cac_usd
with ranked_orders as (
    select
        store_id,
        order_id,
        customer_id,
        order_date,
        created_at,
        total_usd,
        coalesce(refunded_amount_usd, 0) as refunded_amount_usd,
        month,
        order_number,
        cohort_month
    from staging.ranked_orders
    where order_date < getvariable('as_of')
),

order_months as (
    select
        store_id,
        month,
        sum(total_usd) as gmv_usd,
        sum(total_usd - refunded_amount_usd) as net_revenue_usd,
        sum(refunded_amount_usd) as refunds_usd,
        count(*) as orders,
        count(distinct customer_id) as customers,
        count(distinct case when order_number = 1 then customer_id end) as new_customers,
        count(distinct case when cohort_month < month then customer_id end) as returning_customers
    from ranked_orders
    group by store_id, month
),

first_and_second_orders as (
    select
        store_id,
        customer_id,
        min(case when order_number = 1 then month end) as first_month,
        min(case when order_number = 2 then month end) as second_month
    from ranked_orders
    group by store_id, customer_id
),

cohort_value as (
    select
        store_id,
        cohort_month as month,
        count(distinct customer_id) as cohort_size,
        sum(total_usd - refunded_amount_usd) as cohort_net_revenue_usd
    from ranked_orders
    group by store_id, cohort_month
),

spend_months as (
    select
        store_id,
        date_trunc('month', date)::date as month,
        sum(spend_usd) as ad_spend_usd
    from staging.ad_spend
    where date < getvariable('as_of')
    group by 1, 2
),

session_months as (
    select
        store_id,
        date_trunc('month', date)::date as month,
        sum(sessions) as sessions,
        sum(add_to_cart) as add_to_cart,
        sum(checkout_started) as checkout_started,
        sum(orders) as session_orders
    from staging.sessions
    where date < getvariable('as_of')
    group by 1, 2
),

activity_months as (
    select store_id, month from order_months
    union
    select store_id, month from spend_months
    union
    select store_id, month from session_months
),

-- Every month between a store's first activity and the month before as_of's end,
-- so a month without orders shows zeros instead of disappearing.
store_ranges as (
    select store_id, min(month) as first_month, max(month) as last_month
    from activity_months
    group by store_id
),

month_grid as (
    select
        r.store_id,
        unnest(generate_series(r.first_month, r.last_month, interval 1 month))::date as month
    from store_ranges as r
),

repeat_rates as (
    select
        g.store_id,
        g.month,
        count(f.customer_id) as customers_to_date,
        count(f.second_month) filter (where f.second_month <= g.month) as repeat_customers_to_date
    from month_grid as g
    left join first_and_second_orders as f
        on f.store_id = g.store_id and f.first_month <= g.month
    group by g.store_id, g.month
)

select
    g.store_id,
    g.month,
    (g.month + interval 1 month)::date <= getvariable('as_of') as is_complete_month,
    coalesce(o.gmv_usd, 0) as gmv_usd,
    coalesce(o.net_revenue_usd, 0) as net_revenue_usd,
    coalesce(o.refunds_usd, 0) as refunds_usd,
    coalesce(o.orders, 0) as orders,
    o.gmv_usd / nullif(o.orders, 0) as aov_usd,
    coalesce(o.customers, 0) as customers,
    coalesce(o.new_customers, 0) as new_customers,
    coalesce(o.returning_customers, 0) as returning_customers,
    r.repeat_customers_to_date / nullif(r.customers_to_date, 0) as repeat_purchase_rate,
    s.sessions,
    s.add_to_cart / nullif(s.sessions, 0) as add_to_cart_rate,
    s.checkout_started / nullif(s.sessions, 0) as checkout_rate,
    s.session_orders / nullif(s.sessions, 0) as conversion_rate,
    coalesce(a.ad_spend_usd, 0) as ad_spend_usd,
    a.ad_spend_usd / nullif(o.new_customers, 0) as cac_usd,
    o.gmv_usd / nullif(a.ad_spend_usd, 0) as blended_roas,
    c.cohort_size,
    c.cohort_net_revenue_usd / nullif(c.cohort_size, 0) as cohort_ltv_to_date_usd,
    (c.cohort_net_revenue_usd / nullif(c.cohort_size, 0))
        / nullif(a.ad_spend_usd / nullif(o.new_customers, 0), 0) as ltv_cac_ratio
from month_grid as g
left join order_months as o using (store_id, month)
left join spend_months as a using (store_id, month)
left join session_months as s using (store_id, month)
left join cohort_value as c using (store_id, month)
left join repeat_rates as r using (store_id, month)
order by g.store_id, g.month
