"""`tuner report`: an HTML file with the pictures of a search (convergence, before/after, knobs) and its
evidence, from a search journal and/or a profile."""

from tuner.report.data import ReportData, read_journal, report_data
from tuner.report.html import render_html

__all__ = ["ReportData", "read_journal", "render_html", "report_data"]
