"""What people look at: report.html, the findings page and figure, episode videos."""
