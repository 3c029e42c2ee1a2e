"""What the site decides and reviews: the alerting policy (``site_config``) and the
committee's report (``report``)."""
