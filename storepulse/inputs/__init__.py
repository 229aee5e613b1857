"""What each model reads from the warehouse: one loader per model, used by its
assets and by the benchmarks alike, so a benchmark runs the production queries.

Orders come from `staging.valid_orders` (sql/staging/valid_orders.sql), the one
definition of an order that counts. No Dagster here.
"""
