-- staging.ranked_orders (a view): valid orders with each customer's order number in
-- time (1 = first order; ties on the same second broken by order_id). A customer's
-- first order makes them a new customer of that day, month and cohort.
select
    *,
    row_number() over (
        partition by store_id, customer_id order by created_at, order_id
    ) as order_number
from staging.valid_orders
