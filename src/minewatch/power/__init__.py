"""Electricity-meter analysis: find mining as a flat, constant, 24/7 step in a load curve.

ingest.py   readers (long/wide CSV, Parquet) -> canonical meter readings, into a workspace
quality.py  bad-input checks, counted per meter
features.py per meter-day aggregates in SQL (DuckDB; portable SQL where possible)
model.py    change detection on the daily base load, flat-step tests, verdicts
equipment.py miner hardware catalogue and the seized-equipment calculator
cli.py      typer apps `meters_app` and `equipment_app`
"""
