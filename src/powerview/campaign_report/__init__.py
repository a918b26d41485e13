"""Campaign reports: figures computed in InfluxDB, drawn as HTML, PDF, XLSX and CSV."""
