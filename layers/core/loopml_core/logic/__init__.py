"""Business logic: plain Python over the adapter interfaces. No boto3 here."""
