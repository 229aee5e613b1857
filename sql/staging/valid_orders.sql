-- staging.valid_orders (a view): the orders every mart and model counts.
-- A cancelled order (cancelled_at set, or status voided / cancelled) never happened
-- for revenue, customers or demand; refunds stay in (they are their own number).
select *
from staging.orders
where not is_cancelled
