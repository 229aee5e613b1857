-- staging.ranked_orders (a view): valid orders with each customer's order number in
-- time (1 = first order; ties on the same second broken by order_id). A customer's
-- first order makes them a new customer of that day, month and cohort: month is the
-- order's calendar month, cohort_month the month of the customer's first order (the
-- same whatever later orders a query leaves out by date).
select
    *,
    row_number() over (
        partition by store_id, customer_id order by created_at, order_id
    ) as order_number,
    date_trunc('month', order_date)::date as month,
    min(date_trunc('month', order_date)::date) over (
        partition by store_id, customer_id
    ) as cohort_month
from staging.valid_orders
