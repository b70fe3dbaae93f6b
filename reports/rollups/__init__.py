"""The daily rollups: one rule (`definition`), the SQL derived from it (`sql`)."""
