"""Measurement and explanation: metrics, probabilities, CKA, the doctor, study statistics, the figures (viz) and the
numbers the teaching views show."""
