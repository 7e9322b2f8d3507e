"""Tables (Markdown, LaTeX, CSV), figures and report directories: pure functions of stored result files.

Entry points: :func:`reports.load.load_results` (read and merge run directories) and
:func:`reports.report.write_report` (write everything); ``mibench report`` calls both.
"""
