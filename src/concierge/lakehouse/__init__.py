"""The lakehouse: agent events in Apache Iceberg (bronze, silver, gold), maintenance and SQL."""
