"""Extra links shown on sparkpipe tasks in the Airflow UI."""
