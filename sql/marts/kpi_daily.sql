-- marts.kpi_daily: one row per store x day x channel, up to the day before as_of.
-- Orders are attributed to their own channel (UTM last click), ad spend to its
-- platform, sessions to the analytics channel: the three share one vocabulary.
with ranked_orders as (
    select
        store_id,
        order_id,
        customer_id,
        order_date,
        created_at,
        channel,
        total_usd,
        coalesce(refunded_amount_usd, 0) as refunded_amount_usd,
        order_number = 1 as is_first_order
    from staging.ranked_orders
    where order_date < getvariable('as_of')
),

order_days as (
    select
        store_id,
        order_date as date,
        channel,
        sum(total_usd) as gmv_usd,
        sum(total_usd - refunded_amount_usd) as net_revenue_usd,
        count(*) as orders,
        count(distinct case when is_first_order then customer_id end) as new_customers,
        count(distinct case when not is_first_order then customer_id end) as returning_customers
    from ranked_orders
    group by store_id, order_date, channel
),

spend_days as (
    select
        store_id,
        date,
        platform as channel,
        sum(spend_usd) as ad_spend_usd
    from staging.ad_spend
    where date < getvariable('as_of')
    group by store_id, date, platform
),

session_days as (
    select
        store_id,
        date,
        channel,
        sum(sessions) as sessions,
        sum(add_to_cart) as add_to_cart,
        sum(checkout_started) as checkout_started,
        sum(orders) as session_orders
    from staging.sessions
    where date < getvariable('as_of')
    group by store_id, date, channel
),

day_channel_keys as (
    select store_id, date, channel from order_days
    union
    select store_id, date, channel from spend_days
    union
    select store_id, date, channel from session_days
)

select
    k.store_id,
    k.date,
    k.channel,
    coalesce(o.gmv_usd, 0) as gmv_usd,
    coalesce(o.net_revenue_usd, 0) as net_revenue_usd,
    coalesce(o.orders, 0) as orders,
    coalesce(o.new_customers, 0) as new_customers,
    coalesce(o.returning_customers, 0) as returning_customers,
    o.gmv_usd / nullif(o.orders, 0) as aov_usd,
    coalesce(a.ad_spend_usd, 0) as ad_spend_usd,
    coalesce(s.sessions, 0) as sessions,
    coalesce(s.add_to_cart, 0) as add_to_cart,
    coalesce(s.checkout_started, 0) as checkout_started,
    s.session_orders / nullif(s.sessions, 0) as conversion_rate
from day_channel_keys as k
left join order_days as o using (store_id, date, channel)
left join spend_days as a using (store_id, date, channel)
left join session_days as s using (store_id, date, channel)
order by k.store_id, k.date, k.channel
