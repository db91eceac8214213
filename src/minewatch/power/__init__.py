"""Electricity-meter analysis: find mining as a flat, constant, 24/7 step in a load curve.

ingest.py   readers (long/wide CSV, Parquet) -> canonical meter readings, into a workspace
quality.py  bad-input checks, counted per meter
features.py readings -> hourly blocks of meters (one DuckDB pass per block) and daily aggregates
model.py    vectorised step search on the daily base, hourly tests (onset, ramp, restart dips), verdicts
equipment.py miner hardware catalogue and the seized-equipment calculator
cli.py      typer apps `meters_app` and `equipment_app`
"""
