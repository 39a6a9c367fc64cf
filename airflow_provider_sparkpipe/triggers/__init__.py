"""Triggers polling submitted pipeline runs from the Airflow triggerer."""
