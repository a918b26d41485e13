"""The campaign report (issue 13): figures an energy auditor hands to a client.

`figures.build_report` asks InfluxDB for the aggregates of one campaign and returns
a `model.CampaignReport`; `outputs.WRITERS` draws it as HTML, PDF, XLSX or CSV.
"""
