"""Call personalisation: call records (real-time and batch, v1 and v2), their validation and delivery."""
