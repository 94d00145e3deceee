"""Stage one's commands: `emi extract`, `emi add-features`, `emi transcribe`, `emi embed-text`."""
