"""The bottom layer: errors, settings, time parsing, the type model, the parameter model and the
format registry. Imports nothing of the project."""
