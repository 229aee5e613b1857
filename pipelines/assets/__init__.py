"""Assets by domain: ingest, marts, segments, churn, demand, ad_roi, publish."""
