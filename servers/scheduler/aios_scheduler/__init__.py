"""AIOS scheduler server: credit-weighted fair scheduling, supervision, durable steps."""
