"""Pure view logic for the pages: data frames for charts, chart specs, download bytes, run control."""
