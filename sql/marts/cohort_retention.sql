-- marts.cohort_retention: customers grouped by the month of their first order
-- (cohort_month); for each later month k = 0, 1, ... up to the month before as_of:
--   customers_ordering_again = customers with a repeat order (not their first) in month k
--   retention_rate           = customers_ordering_again / cohort_size
--   cumulative_net_revenue_per_customer_usd = observed LTV of the cohort by the end of month k
-- Month k = 0 counts second orders in the acquisition month itself.
-- is_complete_month = false for the month that contains as_of (still filling up).
with ranked_orders as (
    select
        store_id,
        customer_id,
        total_usd - coalesce(refunded_amount_usd, 0) as net_usd,
        month,
        order_number,
        cohort_month
    from staging.ranked_orders
    where order_date < getvariable('as_of')
),

cohorts as (
    select store_id, cohort_month, count(distinct customer_id) as cohort_size
    from ranked_orders
    group by store_id, cohort_month
),

-- Every (cohort, month k) up to the month of the last day before as_of.
cohort_months as (
    select
        c.store_id,
        c.cohort_month,
        c.cohort_size,
        unnest(
            generate_series(
                c.cohort_month,
                date_trunc('month', getvariable('as_of') - interval 1 day)::date,
                interval 1 month
            )
        )::date as month
    from cohorts as c
),

activity as (
    select
        store_id,
        cohort_month,
        month,
        count(distinct case when order_number > 1 then customer_id end)
            as customers_ordering_again,
        count(*) filter (where order_number > 1) as repeat_orders,
        sum(net_usd) as net_revenue_usd
    from ranked_orders
    group by store_id, cohort_month, month
)

select
    m.store_id,
    m.cohort_month,
    m.month,
    (
        (year(m.month) - year(m.cohort_month)) * 12 + month(m.month) - month(m.cohort_month)
    )::integer as months_since_first_order,
    (m.month + interval 1 month)::date <= getvariable('as_of') as is_complete_month,
    m.cohort_size,
    coalesce(a.customers_ordering_again, 0) as customers_ordering_again,
    coalesce(a.repeat_orders, 0) as repeat_orders,
    coalesce(a.customers_ordering_again, 0) / m.cohort_size as retention_rate,
    coalesce(a.net_revenue_usd, 0) as net_revenue_usd,
    sum(coalesce(a.net_revenue_usd, 0)) over (
        partition by m.store_id, m.cohort_month order by m.month
    ) / m.cohort_size as cumulative_net_revenue_per_customer_usd
from cohort_months as m
left join activity as a using (store_id, cohort_month, month)
order by m.store_id, m.cohort_month, m.month
